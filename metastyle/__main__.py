"""`python -m metastyle ...` is the `metastyle` command (what `torchrun -m metastyle` starts)."""

from .cli import main

main()
