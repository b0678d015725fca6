from clustcontrol.cli import main

main()
