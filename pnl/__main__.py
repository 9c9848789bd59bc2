"""`python -m pnl`: the same command line as the `pnl` script.

The one place in pnl/ that touches cli.py: it is the program's entry point,
not library code (nothing in pnl/ imports it).
"""

from cli import main

main()
