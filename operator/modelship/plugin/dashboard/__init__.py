"""`kubectl modelship dashboard`: a web page on 127.0.0.1 that shows every rollout the caller may
see, live, and steers them with the caller's own credentials (docs/dashboard.md); or, with
--in-cluster, the same page installed by the chart behind an auth proxy.

`rules` (what to show, pure), `guard` (who may ask, pure), `incluster` (the person behind the proxy
and what they may do, pure), `server` (the HTTP shell), and `static/` (the page: plain HTML, CSS
and JavaScript, hand-drawn SVG charts, no third-party code).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from typing import Any

from modelship.kube.storage import Storage
from modelship.plugin import view
from modelship.plugin.dashboard.incluster import InCluster

_INCLUSTER_FLAGS = {  # flag: its attribute, for "given without --in-cluster"
    "--public-host": "public_host",
    "--actions": "actions",
    "--user-header": "user_header",
    "--groups-header": "groups_header",
    "--user-prefix": "user_prefix",
    "--groups-prefix": "groups_prefix",
}


class BadFlags(ValueError):
    """The dashboard's flags do not fit together (the message names the flag)."""


def mode_of(a: argparse.Namespace) -> InCluster | None:
    """The in-cluster mode the flags ask for, or None on a laptop; BadFlags naming the flag."""
    if not a.in_cluster:
        given = [flag for flag, attr in _INCLUSTER_FLAGS.items() if getattr(a, attr)]
        if given:
            raise BadFlags(f"{given[0]} needs --in-cluster")
        return None
    mode = InCluster(
        hosts=tuple(a.public_host),
        actions=a.actions,
        user_header=a.user_header or None,
        groups_header=a.groups_header or None,
        user_prefix=a.user_prefix,
        groups_prefix=a.groups_prefix,
    )
    problem = mode.problem()
    if problem is not None:
        raise BadFlags(problem)
    return mode


def serve(
    kube: Storage,
    namespace: str,
    all_namespaces: bool,
    port: int,
    prometheus: str | None,
    mode: InCluster | None = None,
    listen: tuple[str, int] = ("127.0.0.1", 0),
) -> int:
    """Serve until Ctrl-C (in a pod: until SIGTERM); the exit code. `listen` is in-cluster's."""
    from modelship.plugin.dashboard.server import start

    host, port = listen if mode is not None else ("127.0.0.1", port)
    flag = "--listen" if mode is not None else "--port"
    try:
        running = start(kube, namespace, all_namespaces, port, prometheus, mode, host)
    except OSError as err:  # the port is taken, or not ours to bind
        print(f"error: {flag}: cannot listen on {host}:{port}: {err.strerror or err}", file=sys.stderr)
        return view.ERROR
    if mode is None:
        print(f"modelship dashboard: {running.url}\n(Ctrl-C stops it)", flush=True)
    else:
        actions = "actions as the proxy's user" if mode.actions else "read-only"
        print(
            f"modelship dashboard: listening on http://{host}:{running.port} for "
            f"{', '.join(mode.hosts)} ({actions})",
            flush=True,
        )
    signal.signal(signal.SIGTERM, _interrupt)  # a pod's stop; PID 1 ignores an unhandled SIGTERM
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return view.OK


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt
