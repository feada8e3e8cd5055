"""`status`: the view once, or (`--watch`) redrawn at each change the watch brings until the rollout
is done, or (`--timeout`) a wait for it that exits like a CI gate should."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TextIO

from modelship import api
from modelship.kube.storage import Storage
from modelship.plugin import view
from modelship.plugin.verbs import get
from modelship.plugin.watch import follow

# ANSI: cursor home; erase to the end of the line; erase below; clear the screen (first draw only).
HOME, ERASE_LINE, ERASE_BELOW, CLEAR = "\033[H", "\033[K", "\033[J", "\033[2J"


class Screen:
    """Where the views go. On a terminal each view overwrites the last in place (line by line, then
    erase what is below: no clear-screen per draw, which terminals like tmux push into the
    scrollback); elsewhere (a CI log, a pipe) each view is appended, a blank line between."""

    def __init__(self, out: TextIO, redraw: bool) -> None:
        self.out, self.redraw, self.drawn = out, redraw, 0

    def draw(self, text: str) -> None:
        if not self.redraw:
            self.out.write(("\n" if self.drawn else "") + text + "\n")
        else:
            rows = shutil.get_terminal_size().lines
            lines = text.split("\n")[: max(rows - 1, 1)]  # taller than the screen would scroll it
            start = HOME if self.drawn else HOME + CLEAR
            self.out.write(start + "".join(line + ERASE_LINE + "\n" for line in lines) + ERASE_BELOW)
        self.out.flush()
        self.drawn += 1


def status(
    kube: Storage,
    namespace: str,
    name: str,
    watch: bool,
    timeout: timedelta | None,
    out: TextIO | None = None,
    err: Callable[[str], None] = lambda line: print(line, file=sys.stderr),
) -> int:
    """Print the view; with `watch` or `timeout`, wait for the rollout to be done and return its
    verdict's exit code (view.OK, view.FAILED), or view.TIMEOUT."""
    out = out or sys.stdout  # looked up now: a caller may have redirected it
    if not watch and timeout is None:
        obj = get(kube, namespace, name)
        out.write(view.render(obj, kube.events_of(namespace, obj["metadata"]["uid"])) + "\n")
        return view.OK
    deadline = None if timeout is None else time.monotonic() + timeout.total_seconds()
    screen = Screen(out, redraw=watch and out.isatty())
    last: dict[str, Any] | None = None
    for obj in follow(kube, namespace, name, deadline):
        last = obj
        if watch:
            screen.draw(view.render(obj, kube.events_of(namespace, obj["metadata"]["uid"])))
        found = view.verdict(obj)
        if found is not None:
            if not watch:
                screen.draw(view.render(obj, kube.events_of(namespace, obj["metadata"]["uid"])))
            if found.code == view.OK:
                out.write(found.reason + "\n")
            else:
                err(found.reason)
            return found.code
    if last is not None and not watch:
        screen.draw(view.render(last, kube.events_of(namespace, last["metadata"]["uid"])))
    phase = ((last or {}).get("status") or {}).get("phase") or "Unknown"
    err(f"timed out after {api.format_duration(timeout or timedelta())}: {name} is still {phase}")
    return view.TIMEOUT
