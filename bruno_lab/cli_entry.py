"""``python -m bruno_lab.cli_entry``: the console command without the installed script."""

from bruno_lab.cli import main

if __name__ == "__main__":
    main()
