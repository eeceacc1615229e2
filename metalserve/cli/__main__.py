"""``python -m metalserve.cli``: the same command as the ``metalserve`` script."""

from metalserve.cli import main

main()
