"""`python -m builder` is the same program as `mlbuild`."""

from builder.cli import main

if __name__ == "__main__":
    main()
