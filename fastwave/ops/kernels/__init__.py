"""Triton kernels behind ``fastwave.ops``. Imported only when a kernel runs, so that ``fastwave.ops``
works (with its torch references) where Triton is not installed."""
