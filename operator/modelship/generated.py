"""Files generated from code and committed (the CRD, the PodSpec schema): write one, or check
that the committed copy is still what its generator makes."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(output: Path, text: str, check: bool, command: str) -> int:
    """With `check`: 0 when `output` holds `text`, else 1 and how to regenerate it (`command`).
    Without: write it. The exit code of the generator's command line."""
    if check:
        current = output.read_text() if output.exists() else ""
        if current != text:
            print(f"{output} is out of date: run `{command}`", file=sys.stderr)
            return 1
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text)
    print(f"wrote {output}")
    return 0
