"""``python -m batcher``: the same as the ``batcher`` command."""

import sys

from .cli import main

sys.exit(main())
