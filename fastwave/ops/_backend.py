"""Which implementation an op runs: the Triton kernel or its plain-torch reference.

``"auto"`` (the default) runs the Triton kernels on CUDA tensors when Triton is installed and the
torch reference everywhere else. ``"triton"`` forces the kernels, also on CPU tensors, which Triton
can only run in its interpreter (``TRITON_INTERPRET=1`` set before triton is first imported): that
is how the kernels are tested on machines without a GPU. ``"torch"`` forces the reference. (For
attention, "the reference" in fp16 / bf16 / fp32 without dropout is torch's own CPU flash
attention, the written-out formulas otherwise: ``causal_attention``'s docstring.)

float64 always runs the reference (the kernels are written for fp16 / bf16 / fp32; fp64 is there
for gradcheck). The choice is read when an op runs, not when it is traced, so it also applies inside
``torch.compile``d code (the ops are opaque custom ops there).
"""
from __future__ import annotations

import contextlib
import importlib.util
import os

import torch

BACKENDS = ("auto", "triton", "torch")
_backend = "auto"
# Looked up once: a constant is free to read inside torch.compile'd code, an import lookup is not.
_TRITON_INSTALLED = importlib.util.find_spec("triton") is not None


def set_backend(name: str) -> None:
    """Choose the implementation for every fastwave op: "auto", "triton" or "torch"."""
    global _backend
    if name not in BACKENDS:
        raise ValueError(f"ops backend must be one of {BACKENDS}, got {name!r}")
    _backend = name


def get_backend() -> str:
    return _backend


@contextlib.contextmanager
def backend(name: str):
    """``with fastwave.ops.backend("triton"): ...`` runs the block with that backend, then restores."""
    previous = _backend
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def triton_available() -> bool:
    return _TRITON_INSTALLED


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def use_triton(x: torch.Tensor) -> bool:
    """Whether an op on ``x`` runs its Triton kernel under the current backend (raises when forced
    to and impossible)."""
    if _backend == "torch" or x.dtype == torch.float64:
        return False
    if _backend == "auto":
        return x.is_cuda and triton_available()
    if not triton_available():
        raise RuntimeError("ops backend 'triton' was forced but triton is not installed")
    if not x.is_cuda and not interpreting():
        raise RuntimeError("ops backend 'triton' on CPU tensors needs Triton's interpreter: set "
                           "TRITON_INTERPRET=1 before triton is first imported")
    if not x.is_cuda and x.dtype == torch.bfloat16:
        raise RuntimeError("Triton's interpreter has no bfloat16: test bf16 kernels on a GPU")
    return True


def dot_precision(dtype: torch.dtype) -> str:
    """tl.dot input precision for fp32 operands, following torch's own switch for CUDA matmuls
    (``torch.set_float32_matmul_precision`` / ``torch.backends.cuda.matmul``): exact fp32 unless TF32
    is allowed. Reads the per-backend setting, which torch answers whichever API set it."""
    if dtype != torch.float32:
        return "ieee"
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", None)
    if precision is None:  # torch before the fp32_precision API
        return "tf32" if matmul.allow_tf32 else "ieee"
    if precision == "none":  # not set for CUDA matmuls: the global default decides
        precision = getattr(torch.backends, "fp32_precision", "ieee")
    return "tf32" if precision == "tf32" else "ieee"
