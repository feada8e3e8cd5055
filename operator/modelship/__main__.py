"""`python -m modelship ...` is the `modelship` command."""

import sys

from modelship.cli import main

sys.exit(main())
