import sys

from mlupdate.cli import main

sys.exit(main())
