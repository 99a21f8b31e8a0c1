"""``python -m mlupdate``: the ``mlupdate`` command."""

import sys

from mlupdate.cli import main

sys.exit(main())
