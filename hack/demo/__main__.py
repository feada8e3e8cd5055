"""`python -m demo` (PYTHONPATH=hack), or `make demo`. Knobs: DEMO_* (demo.settings)."""

from __future__ import annotations

import os
import sys
from functools import partial

from demo.run import run
from demo.settings import SettingsError, from_env


def main() -> int:
    try:
        settings = from_env(os.environ)
    except SettingsError as err:
        print(f"demo: {err}", file=sys.stderr)
        return 2
    return run(settings, out=partial(print, flush=True))


if __name__ == "__main__":
    sys.exit(main())
