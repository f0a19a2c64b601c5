"""`python -m reconciler` runs the CLI (the test suite starts the controller this way)."""

from reconciler.cli import main

main()
