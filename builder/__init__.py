"""mlbuild: small, reproducible GPU/CPU container images for ML frameworks, from a recipe."""

__version__ = "0.1.0"
