"""fastwave: fast generation and kernels for sample-level audio models."""
__version__ = "0.1.0"
