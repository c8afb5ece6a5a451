"""`python -m fastwave.cli ...` (as torchrun runs it): the `fastwave` command."""
import sys

from .entry_point import main

sys.exit(main())
