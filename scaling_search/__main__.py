"""``python -m scaling_search`` is the ``scaling-search`` command."""

from scaling_search.cli import console

console()
