"""`python -m bot ...` is `clusterbot ...`."""

import sys

from bot.cli import main

sys.exit(main())
