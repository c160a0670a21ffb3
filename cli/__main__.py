"""`python -m cli`: the same front door as the `polycrate` console script."""

from cli import main

main()
