"""Command groups that live in their own modules; cli.py registers each one listed here.

A module here defines click commands and a `register(main)` function. Keep imports of heavy
libraries inside the command functions so that `mlbuild --help` stays fast.
"""

MODULES: tuple[str, ...] = ("share", "matrix_cmd", "init_cmd", "repro", "many")
