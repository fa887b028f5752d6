"""`python -m prunelab ...` is the `prunelab` command."""

import sys

from prunelab.cli import main

sys.exit(main())
