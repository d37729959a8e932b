"""`python -m IMNRiskLib` is the `imnrisk` command."""

import sys

from IMNRiskLib.app.cli import main

sys.exit(main())
