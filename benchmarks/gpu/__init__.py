"""The GPU benchmark: ``python -m benchmarks.gpu`` (see :mod:`benchmarks.gpu.run` and README.md here)."""
