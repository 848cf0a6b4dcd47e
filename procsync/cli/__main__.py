"""`python -m procsync.cli`: the procsync command."""

from .main import main

if __name__ == "__main__":
    main()
