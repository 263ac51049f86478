"""mlbuild's version, in a module of its own: the package's __init__ is the Python API (a
floor above the library), so the library reads the version from here."""

__version__ = "0.1.0"
