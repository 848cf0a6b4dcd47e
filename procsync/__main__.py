"""`python -m procsync`: the procsync command."""

from .cli import main

if __name__ == "__main__":
    main()
