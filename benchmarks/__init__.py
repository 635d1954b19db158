"""Measurement scripts (not installed with the package); run them from the repository root as
``python -m benchmarks.<group>.<script>``: see benchmarks/README.md."""
