"""Kernels for sample-level audio models, usable in any model: Triton on CUDA, torch elsewhere.

Each op is a ``torch.library`` custom op (``torch.ops.fastwave.*``) with autograd and a fake
implementation, so it trains and works under ``torch.compile``; each file holds its plain-torch
reference (``*_reference``), the definition its kernel is tested against. ``backend`` chooses
between kernel and reference (see ``_backend.py``).
"""
from ._backend import BACKENDS, backend, get_backend, set_backend
from .causal_attention import causal_attention, causal_attention_reference, flash_attn_func
from .decode_attention import decode_attention, decode_attention_reference
from .depthwise_conv1d import causal_conv1d_update, depthwise_causal_conv1d_reference
from .dilated_causal_conv1d import DilatedCausalConv1d, dilated_causal_conv1d, dilated_causal_conv1d_reference
from .wavenet_block import wavenet_block, wavenet_block_reference

__all__ = ["BACKENDS", "DilatedCausalConv1d", "backend", "causal_attention", "causal_attention_reference",
           "causal_conv1d_update", "depthwise_causal_conv1d_reference",
           "decode_attention", "decode_attention_reference", "dilated_causal_conv1d", "flash_attn_func",
           "dilated_causal_conv1d_reference", "get_backend", "set_backend", "wavenet_block",
           "wavenet_block_reference"]
