"""Philox4x32-10 (Salmon et al., 2011) on int64 tensors holding uint32 words: the counter-based RNG
behind the sampling contract (``fastwave.engines.sampling``, ``csrc/common/philox.h``) and the
attention kernels' dropout (Triton's ``tl.philox`` computes the same words), written once.

    words = philox_rounds((c0, c1, c2, c3), (key_low, key_high))   # each a tensor or an int
"""
from __future__ import annotations

from torch import Tensor

MASK32 = 0xFFFFFFFF
MULTIPLIERS = (0xD2511F53, 0xCD9E8D57)
WEYL_INCREMENTS = (0x9E3779B9, 0xBB67AE85)
ROUNDS = 10


def mulhilo(a: int, b: Tensor | int) -> tuple[Tensor | int, Tensor | int]:
    """Exact (high, low) 32-bit words of a * b, for a 32-bit constant a and uint32 values b in int64.

    a * b reaches 2**64, past int64 (torch has no unsigned 32x32->64 multiply), so b is split into
    16-bit halves: each partial product stays below 2**48 and the words are reassembled exactly.
    """
    low_product = a * (b & 0xFFFF)
    high_product = a * (b >> 16)  # a * b == high_product * 2**16 + low_product
    low = (low_product + ((high_product & 0xFFFF) << 16)) & MASK32
    high = (high_product + (low_product >> 16)) >> 16
    return high, low


def philox_rounds(counter: tuple, key: tuple) -> tuple:
    """Philox4x32-10 on broadcastable int64 tensors (or Python ints) holding uint32 words."""
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for round_index in range(ROUNDS):
        if round_index > 0:  # the key schedule bumps the key between rounds, not before the first
            k0 = (k0 + WEYL_INCREMENTS[0]) & MASK32
            k1 = (k1 + WEYL_INCREMENTS[1]) & MASK32
        high0, low0 = mulhilo(MULTIPLIERS[0], c0)
        high1, low1 = mulhilo(MULTIPLIERS[1], c2)
        c0, c1, c2, c3 = high1 ^ c1 ^ k0, low1, high0 ^ c3 ^ k1, low0
    return c0, c1, c2, c3
