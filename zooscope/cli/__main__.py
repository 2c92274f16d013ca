from zooscope.cli import main

main()
