"""`python -m IMNRiskLib` is the `imnrisk` command."""

import sys

from .cli import main

sys.exit(main())
