"""Run the whole test suite as two pytest sessions side by side: `make test`'s runner.

Most of the suite's time is spent waiting (for rollouts' steps, scrapes, pods), not computing, so
sessions side by side on two cores finish in about the time of the longest. The tests marked `e2e`
hold the machine's one real node (their session's cluster runs it, wherever the test file is);
every other test goes to a second session, whose control plane needs no real node (the image
tests, which need no cluster, run in the first: the second is the longer one without them). The
second spreads its test files over `OTHERS_WORKERS` processes (pytest-xdist, `--dist loadfile`:
a file's tests stay together, with their module fixtures), each with a control plane of its own
once it runs a test that needs one: alone it took twice as long as the first. Each session's lines
are printed as they come, prefixed with its name; the exit status is the first failing session's
(a session that selected no test fails the run only if the other did not select any either).
A failing session's summary of failures is printed again at the end, so the run's last lines say
what failed even when the other session finished later (CI shows only an output's tail).

    python hack/testrun.py [pytest args...]   # e.g. -x, -k name (passed to both sessions; not -m)

Ctrl-C (or SIGTERM) is passed to both sessions, whose fixtures then stop their clusters.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REAL_NODE = "e2e"  # the marker of the tests that run on the real node
IMAGES = "images"  # the marker of the image tests (podman builds and containers, no cluster)
NO_TESTS = 5  # pytest's exit status when no test was selected


# The second session yields the CPU to the first: the real node's tests send live traffic through
# a gateway, a kubelet and an API server on this machine and count every failed request, and on two
# busy cores their reactions lag by seconds (the gateway sees a pod's endpoint late: 503s); the
# other tests only wait longer.
OTHERS_NICENESS = 10
# The second session's processes: its tests wait far more than they compute, as the first's do.
OTHERS_WORKERS = 2


def sessions() -> dict[str, list[str]]:
    """The two sessions' pytest arguments: the `e2e` tests with the image tests (which need no
    cluster: they even out the sessions' lengths), and every other test, on `OTHERS_WORKERS`
    processes."""
    first = f"{REAL_NODE} or {IMAGES}"
    spread = ["-n", str(OTHERS_WORKERS), "--dist", "loadfile"]
    return {REAL_NODE: ["-m", first], "others": ["-m", f"not ({first})", *spread]}


def command(name: str, pytest: str) -> list[str]:
    """How session `name` is started: the others at a lower priority (`OTHERS_NICENESS`)."""
    return [pytest] if name == REAL_NODE else ["nice", "-n", str(OTHERS_NICENESS), pytest]


def failures(lines: list[str]) -> list[str]:
    """pytest's summary of what failed, from its "short test summary info" header to its closing
    counts line (empty when it printed none)."""
    start = next((i for i, line in enumerate(lines) if "short test summary info" in line), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines) - 1)
    return lines[start : end + 1]


def _relay(name: str, proc: subprocess.Popen[str], width: int, lock: threading.Lock, kept: list[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        kept.append(line)
        with lock:
            sys.stdout.write(f"[{name:<{width}}] {line}")
            sys.stdout.flush()


def main(args: list[str]) -> int:
    pytest = str(Path(sys.executable).parent / "pytest")
    lock = threading.Lock()
    width = max(len(n) for n in sessions())
    procs: dict[str, subprocess.Popen[str]] = {}
    output: dict[str, list[str]] = {name: [] for name in sessions()}
    relays = []
    started = time.monotonic()

    def forward(signum: int, _frame: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # pytest tears its fixtures down on SIGINT

    # Before the sessions start: a handler of ours becomes the default in them, where an ignored
    # SIGINT (a background job's) would stay ignored and pytest could not be interrupted.
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for name, selection in sessions().items():
        # A session of its own: a signal to `make` must reach pytest once, through `forward`.
        proc = subprocess.Popen(
            [*command(name, pytest), *selection, *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        procs[name] = proc
        relay = threading.Thread(target=_relay, args=(name, proc, width, lock, output[name]), daemon=True)
        relay.start()
        relays.append(relay)

    codes = {name: proc.wait() for name, proc in procs.items()}
    for relay in relays:
        relay.join()
    for name, code in codes.items():
        if code not in (0, NO_TESTS):
            for line in failures(output[name]):
                sys.stdout.write(f"[{name:<{width}}] {line}")
    minutes = (time.monotonic() - started) / 60
    summary = ", ".join(f"{name}: {'passed' if c == 0 else f'exit {c}'}" for name, c in codes.items())
    print(f"test sessions ({minutes:.1f} min): {summary}", flush=True)
    # pytest's 5 is "no test selected": fine for one session (`-k` naming e2e tests only), not both.
    ran = [c for c in codes.values() if c != NO_TESTS] or [NO_TESTS]
    return next((c for c in ran if c != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
