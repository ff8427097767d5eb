"""``python -m unseg_extract`` is the ``unseg-extract`` command."""

import sys

from .cli import main

sys.exit(main())
