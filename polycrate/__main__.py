from polycrate.cli import main

main()
