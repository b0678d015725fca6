"""`python -m clustcontrol`: the same command-line interface as the `clustcontrol` script."""

from clustcontrol.cli import main

main()
