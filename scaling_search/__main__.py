"""``python -m scaling_search`` is the ``scaling-search`` command."""

import sys

from scaling_search.cli import main

sys.exit(main())
