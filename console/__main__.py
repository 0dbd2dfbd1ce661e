"""``python -m console``: the same as the ``safelab`` command."""

from console.cli import main

main()
