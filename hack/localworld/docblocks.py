"""The steps of a docs page that tests run as written: every ```sh block right after a
`<!-- test: run -->` line (docs/quickstart.md on the real node, the README's install section on
the local control plane)."""

from __future__ import annotations

import re
from pathlib import Path

MARKED = re.compile(r"<!-- test: run -->\n```sh\n(.*?)```", re.S)


def runnable_blocks(page: Path) -> list[str]:
    """The marked blocks of `page`, in order."""
    return MARKED.findall(page.read_text())


def script(page: Path) -> str:
    """The marked blocks as one bash script that stops at the first failing command."""
    return "set -euo pipefail\n" + "\n".join(runnable_blocks(page))
