"""``python -m worker.cli``: the same command line as ``vexora-checkout``."""

from worker.cli import main

main()
