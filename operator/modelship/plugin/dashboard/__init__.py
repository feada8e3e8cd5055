"""`kubectl modelship dashboard`: a web page on 127.0.0.1 that shows every rollout the caller may
see, live, and steers them with the caller's own credentials (docs/dashboard.md).

`rules` (what to show, pure), `guard` (who may ask, pure), `server` (the HTTP shell), and
`static/` (the page: plain HTML, CSS and JavaScript, hand-drawn SVG charts, no third-party code).
"""

from __future__ import annotations

import sys
import threading

from modelship.kube.storage import Storage
from modelship.plugin import view


def serve(kube: Storage, namespace: str, all_namespaces: bool, port: int, prometheus: str | None) -> int:
    """Serve until Ctrl-C; the exit code."""
    from modelship.plugin.dashboard.server import start

    try:
        running = start(kube, namespace, all_namespaces, port, prometheus)
    except OSError as err:  # the port is taken, or not ours to bind
        print(
            f"error: --port {port}: cannot listen on 127.0.0.1:{port}: {err.strerror or err}", file=sys.stderr
        )
        return view.ERROR
    print(f"modelship dashboard: {running.url}\n(Ctrl-C stops it)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        running.stop()
    return view.OK
