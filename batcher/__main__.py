"""``python -m batcher``: the same as the ``batcher`` command."""

import sys

from .cli.main import main

sys.exit(main())
