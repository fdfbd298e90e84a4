"""`python -m edgemnist ...`: the same command line as `edgemnist ...`."""
import sys

from edgemnist.cli import main

sys.exit(main())
