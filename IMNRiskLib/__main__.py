"""`python -m IMNRiskLib` is the `imnrisk` command."""

import sys

from IMNRiskLib.app.cli import forget_caught_interrupt, main

code = main()
forget_caught_interrupt()
sys.exit(code)
