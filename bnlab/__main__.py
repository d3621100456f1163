from bnlab.cli import main

main()
