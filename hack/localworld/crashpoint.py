"""Kill the operator hard after its k-th write of one reconcile pass: the fault suite's targeted
crashes, with the real operator process (`localworld.faults`).

The in-process crash tests (tests/integration/test_crash_points.py) stop a pass after write k with
`Storage(crash_after=k)`; this does the same to a running `python -m modelship run`, with a
SIGKILL the process sends itself, so nothing of it survives (no `finally`, no flush). The operator's
code is not changed: an operator started with `crashhook/` on its PYTHONPATH and `ENV` naming an
arm file loads this module at start-up (Python's `sitecustomize`), which wraps the reconciler's
pass and the storage's requests. A write counts as `Storage` counts it: a request other than GET
that succeeded.

The test arms a crash by writing the arm file (`arm`): the first pass of ModelDeployment
`namespace/name` at `generation` or later that writes anything is the one; after its `after`-th
write the process writes what happened (`outcome`) and kills itself. A pass that ends with fewer
writes is recorded as completed, with its count: every crash point of that pass has been tried.
Either way the arm file is removed, so the operator started again runs normally.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Any

ENV = "MODELSHIP_CRASHPOINT"  # the arm file's path
HOOK_DIR = Path(__file__).resolve().parent / "crashhook"  # holds the sitecustomize that installs it


def arm(path: Path, namespace: str, name: str, generation: int, after: int) -> None:
    done_path(path).unlink(missing_ok=True)
    path.write_text(
        json.dumps({"namespace": namespace, "name": name, "generation": generation, "after": after})
    )


def done_path(path: Path) -> Path:
    return path.with_name(path.name + ".done")


def outcome(path: Path) -> dict[str, Any] | None:
    """What the armed pass did: {"crashed": bool, "writes": n, "last": "METHOD path"}, or None yet."""
    try:
        found: dict[str, Any] = json.loads(done_path(path).read_text())
        return found
    except (OSError, ValueError):
        return None


def hook_env(env: dict[str, str], path: Path) -> dict[str, str]:
    """`env` for an operator that loads the hook and obeys the arm file at `path`."""
    hack = str(Path(__file__).resolve().parent.parent)
    paths = [str(HOOK_DIR), hack, *filter(None, [env.get("PYTHONPATH")])]
    return {**env, ENV: str(path), "PYTHONPATH": os.pathsep.join(paths)}


def _armed(path: Path, body: dict[str, Any]) -> int | None:
    try:
        wanted = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    meta = body["metadata"]
    same = (meta["namespace"], meta["name"]) == (wanted["namespace"], wanted["name"])
    return int(wanted["after"]) if same and meta.get("generation", 1) >= wanted["generation"] else None


def _finish(path: Path, what: dict[str, Any]) -> None:
    done_path(path).write_text(json.dumps(what))
    path.unlink(missing_ok=True)


def install(path: Path) -> None:
    """Wrap `Reconciler._pass` and `Storage.request` in this process (see the module's docstring)."""
    from modelship.kube import reconciler, storage

    local = threading.local()
    original_pass = reconciler.Reconciler._pass
    original_request = storage.Storage.request

    def counted_pass(
        self: reconciler.Reconciler, body: dict[str, Any], logger: Any, cached: bool
    ) -> tuple[float | None, bool]:
        after = _armed(path, body)
        if after is None:
            return original_pass(self, body, logger, cached)
        local.after, local.writes = after, []
        try:
            return original_pass(self, body, logger, cached)
        finally:
            writes, local.after = local.writes, None
            if writes:  # a pass whose status write lost a race wrote nothing: the next one is it
                _finish(path, {"crashed": False, "writes": len(writes), "log": writes})

    def counted_request(self: storage.Storage, method: str, where: str, **kwargs: Any) -> Any:
        data = original_request(self, method, where, **kwargs)
        after = getattr(local, "after", None)
        if method != "GET" and after is not None:
            local.writes.append(f"{method} {where}")
            if len(local.writes) >= after:
                _finish(path, {"crashed": True, "writes": len(local.writes), "log": local.writes})
                os.kill(os.getpid(), signal.SIGKILL)
        return data

    setattr(reconciler.Reconciler, "_pass", counted_pass)  # noqa: B010 - the wrap is the point
    setattr(storage.Storage, "request", counted_request)  # noqa: B010


def install_from_env() -> None:
    if ENV in os.environ:
        install(Path(os.environ[ENV]))
