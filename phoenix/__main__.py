"""`python -m phoenix` runs the CLI, like the `phoenix` console script."""

from phoenix.cli import main

main()
