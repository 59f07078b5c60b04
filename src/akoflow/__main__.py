from akoflow.cli.main import main

main()
