"""Command line for the local control plane.

PYTHONPATH=hack python -m devcluster up [--cpu-nodes 3] [--coral-nodes 1]
PYTHONPATH=hack python -m devcluster down STATE_DIR
PYTHONPATH=hack python -m devcluster reap
PYTHONPATH=hack python -m devcluster build
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from devcluster import build, nodes, procs, reap
from devcluster.cluster import ClusterError, LocalCluster


def up(args: argparse.Namespace) -> int:
    cluster = LocalCluster.create(
        fake_nodes=nodes.default_nodes(cpu=args.cpu_nodes, coral=args.coral_nodes),
        keep_state=args.keep,
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster.start()
    except ClusterError as err:
        print(f"devcluster: could not start the cluster: {err}", file=sys.stderr)
        return 1
    # `down` signals this process, so components stop in order and this one exits too.
    (cluster.state_dir / "launcher.pid").write_text(str(os.getpid()))
    print(f"cluster up: {cluster.server}")
    print(f"export KUBECONFIG={cluster.kubeconfig}")
    print(f"export PATH={cluster.bin_dir}:$PATH")
    print(f"state and logs: {cluster.state_dir}  (tear down from elsewhere: python -m devcluster down DIR)")
    print("Ctrl-C tears it down.", flush=True)
    stop.wait()
    cluster.stop()
    print("cluster stopped")
    return 0


def down(args: argparse.Namespace) -> int:
    state = Path(args.state_dir)
    launcher = state / "launcher.pid"
    if launcher.exists():
        pid = int(launcher.read_text())
        try:
            os.kill(pid, signal.SIGTERM)
            print(f"asked the launcher (pid {pid}) to stop the cluster")
            return 0
        except ProcessLookupError:
            pass  # the launcher died; reap what it left
    if not procs.is_stale(state):
        print(f"devcluster: {state} is not a stopped run's state directory", file=sys.stderr)
        return 1
    print(reap.reap_run(state).line())
    return 0


def reap_command(args: argparse.Namespace) -> int:
    reaped, machine = reap.reap()
    for run in reaped:
        print(run.line())
    print(f"{len(reaped)} stale run(s) reaped; {machine}")
    containers = reap.reap_containers()
    print(f"{len(containers)} test container(s) of gone runs removed")
    return 1 if any(not r.removed for r in reaped) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="devcluster", description="modelship's local control plane")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start a cluster and keep it up until Ctrl-C")
    p_up.add_argument("--cpu-nodes", type=int, default=3)
    p_up.add_argument("--coral-nodes", type=int, default=1)
    p_up.add_argument("--keep", action="store_true", help="keep the state dir (logs, certs) after stopping")
    p_up.set_defaults(func=up)
    p_down = sub.add_parser("down", help="stop a cluster started by `up`, by its process ids")
    p_down.add_argument("state_dir")
    p_down.set_defaults(func=down)
    p_reap = sub.add_parser(
        "reap",
        help="remove what killed runs left: their processes, containers, mounts, state dirs and "
        "the real node's machine-wide changes (never a live run's)",
    )
    p_reap.set_defaults(func=reap_command)
    p_build = sub.add_parser("build", help="build or find the cached binaries; print their dir")
    p_build.set_defaults(func=lambda _: print(build.build()) or 0)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main())
