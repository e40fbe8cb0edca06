"""``python -m phonotheca.cli``."""

import sys

from phonotheca.cli import main

sys.exit(main())
