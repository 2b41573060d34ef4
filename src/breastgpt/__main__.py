from breastgpt.cli import main

main()
