"""A causal convolution is a matrix product against time-shifted copies of its input.

Both kernels here read their second operand through ``load_shifted``: row ``j = k * C + c`` of the
implicit (taps * C, T) matrix is channel c shifted by ``direction * (taps - 1 - k) * dilation`` steps,
zero outside [0, T) (an im2col that never exists in memory). With direction -1 that is the dilated
causal convolution; with +1, its transpose (the input gradient). The fused WaveNet block kernels
reuse ``load_shifted`` for their dilated convolution.

- ``shifted_matmul``:      y[b, m, t] = bias[m] + add[b, m, t] + sum_j w[m, j] * X_b[j, t]
- ``shifted_outer_sum``:   dw[m, j] = sum_{b, t} a[b, m, t] * X_b[j, t]   (weight gradients), and
                           optionally sum_{b, t} a[b, m, t] (bias gradients)

Operands keep their dtype for ``tl.dot`` (tensor cores for fp16 / bf16); accumulation is fp32.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def load_shifted(x_ptr, j, t, C, T, taps, dilation, stride_c, stride_t, DIRECTION: tl.constexpr):
    """x[c, t + DIRECTION * (taps - 1 - k) * dilation] for j = k * C + c; j and t are index tensors
    that broadcast to the tile shape ([:, None] / [None, :] in either order). Zero outside."""
    k = j // C
    c = j - k * C
    src = t + DIRECTION * (taps - 1 - k) * dilation
    mask = (j < taps * C) & (src >= 0) & (src < T)
    return tl.load(x_ptr + c * stride_c + src * stride_t, mask=mask, other=0.0)


@triton.jit
def batch_and_time(n_t_tiles, BLOCK_T: tl.constexpr):
    """This program's batch row (int64, for the pointer arithmetic) and time steps: batch rows and
    time tiles share grid axis 0, which has no 65,535 limit."""
    pid = tl.program_id(0)
    return (pid // n_t_tiles).to(tl.int64), (pid % n_t_tiles) * BLOCK_T + tl.arange(0, BLOCK_T)


@triton.jit
def _shifted_matmul_kernel(w_ptr, x_ptr, bias_ptr, add_ptr, y_ptr,
                           M, C, T, taps, dilation, n_t_tiles,
                           stride_xb, stride_xc, stride_xt, stride_ab, stride_ac, stride_at,
                           stride_yb, stride_yc, stride_yt,
                           DIRECTION: tl.constexpr, HAS_BIAS: tl.constexpr, HAS_ADD: tl.constexpr,
                           PRECISION: tl.constexpr,
                           BLOCK_M: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_J: tl.constexpr):
    b, t = batch_and_time(n_t_tiles, BLOCK_T)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    J = taps * C
    x_ptr += b * stride_xb
    acc = tl.zeros((BLOCK_M, BLOCK_T), dtype=tl.float32)
    for j0 in range(0, J, BLOCK_J):
        j = j0 + tl.arange(0, BLOCK_J)
        w = tl.load(w_ptr + m[:, None] * J + j[None, :], mask=(m[:, None] < M) & (j[None, :] < J), other=0.0)
        xs = load_shifted(x_ptr, j[:, None], t[None, :], C, T, taps, dilation, stride_xc, stride_xt, DIRECTION)
        acc = tl.dot(w, xs, acc, input_precision=PRECISION)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + m, mask=m < M, other=0.0).to(tl.float32)[:, None]
    out_mask = (m[:, None] < M) & (t[None, :] < T)
    if HAS_ADD:
        acc += tl.load(add_ptr + b * stride_ab + m[:, None] * stride_ac + t[None, :] * stride_at,
                       mask=out_mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + b * stride_yb + m[:, None] * stride_yc + t[None, :] * stride_yt,
             acc.to(y_ptr.dtype.element_ty), mask=out_mask)


@triton.jit
def _shifted_outer_sum_kernel(a_ptr, x_ptr, out_ptr, row_sum_ptr,
                              M, C, T, taps, dilation, n_t_tiles, n_tiles, tiles_per_split,
                              stride_ab, stride_am, stride_at, stride_xb, stride_xc, stride_xt,
                              DIRECTION: tl.constexpr, ROW_SUM: tl.constexpr, PRECISION: tl.constexpr,
                              BLOCK_M: tl.constexpr, BLOCK_J: tl.constexpr, BLOCK_T: tl.constexpr):
    m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    j = tl.program_id(1) * BLOCK_J + tl.arange(0, BLOCK_J)
    split = tl.program_id(2)
    J = taps * C
    acc = tl.zeros((BLOCK_M, BLOCK_J), dtype=tl.float32)
    row_sum = tl.zeros((BLOCK_M,), dtype=tl.float32)
    first = split * tiles_per_split
    last = tl.minimum(first + tiles_per_split, n_tiles)
    for tile in range(first, last):
        b = (tile // n_t_tiles).to(tl.int64)
        t = (tile % n_t_tiles) * BLOCK_T + tl.arange(0, BLOCK_T)
        a = tl.load(a_ptr + b * stride_ab + m[:, None] * stride_am + t[None, :] * stride_at,
                    mask=(m[:, None] < M) & (t[None, :] < T), other=0.0)
        xs = load_shifted(x_ptr + b * stride_xb, j[None, :], t[:, None], C, T, taps, dilation,
                          stride_xc, stride_xt, DIRECTION)
        acc = tl.dot(a, xs, acc, input_precision=PRECISION)
        if ROW_SUM:
            row_sum += tl.sum(a.to(tl.float32), axis=1)
    out_ptr += split.to(tl.int64) * M * J
    tl.store(out_ptr + m[:, None] * J + j[None, :], acc, mask=(m[:, None] < M) & (j[None, :] < J))
    if ROW_SUM:
        if tl.program_id(1) == 0:  # one column block writes the row sums
            tl.store(row_sum_ptr + split * M + m, row_sum, mask=m < M)


# Per-kernel overrides of the configs below ({"matmul": {"BLOCK_T": 128, "num_warps": 4}, ...}), for
# tuning sweeps on a GPU (benchmarks/gpu_wavenet_kernels.py --sweep). The defaults are the largest
# tiles that compile for sm_90 without spills and with <= ~170 registers per thread
# (benchmarks/triton_resources.py); they have not been timed against each other yet.
TUNING: dict[str, dict] = {}


def tuned(kernel: str, config: dict) -> dict:
    return {**config, **TUNING.get(kernel, {})}


def block_size(n: int, low: int = 16, high: int = 64) -> int:
    """A power-of-two tile edge covering ``n`` within [low, high] (tl.dot needs edges >= 16)."""
    return max(low, min(high, triton.next_power_of_2(n)))


def _parallel_programs(device: torch.device) -> int:
    """Programs that keep the device busy: a few per SM on a GPU, one per core in the interpreter."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 2


def matmul_config(rows: int, reduction: int) -> dict:
    """Tiles and warps for ``shifted_matmul`` with ``rows`` outputs and a ``reduction`` of taps * C."""
    return tuned("matmul", dict(BLOCK_M=block_size(rows), BLOCK_T=64, BLOCK_J=block_size(reduction, high=32), num_warps=8))


def shifted_matmul(w: torch.Tensor, x: torch.Tensor, taps: int, dilation: int, direction: int,
                   precision: str, bias: torch.Tensor | None = None,
                   add: torch.Tensor | None = None) -> torch.Tensor:
    """w (M, taps * C) contiguous, x (B, C, T) -> y (B, M, T) in x's dtype; see the module docstring."""
    batch, channels, length = x.shape
    rows = w.shape[0]
    y = torch.empty(batch, rows, length, device=x.device, dtype=x.dtype)
    config = matmul_config(rows, taps * channels)
    n_t_tiles = triton.cdiv(length, config["BLOCK_T"])
    add_strides = add.stride() if add is not None else (0, 0, 0)
    grid = (batch * n_t_tiles, triton.cdiv(rows, config["BLOCK_M"]))
    _shifted_matmul_kernel[grid](
        w, x, bias if bias is not None else w, add if add is not None else y, y,
        rows, channels, length, taps, dilation, n_t_tiles,
        *x.stride(), *add_strides, *y.stride(),
        DIRECTION=direction, HAS_BIAS=bias is not None, HAS_ADD=add is not None, PRECISION=precision, **config)
    return y


def outer_sum_config(rows: int, cols: int) -> dict:
    """Tiles and warps for ``shifted_outer_sum`` with an output of rows x cols."""
    return tuned("outer_sum", dict(BLOCK_M=block_size(rows), BLOCK_J=block_size(cols), BLOCK_T=64, num_warps=8))


def shifted_outer_sum(a: torch.Tensor, x: torch.Tensor, taps: int, dilation: int, direction: int,
                      precision: str, row_sum: bool = False):
    """a (B, M, T), x (B, C, T) -> (dw (M, taps * C) fp32, sum of a over b and t (M,) fp32 or None).

    The B * T reduction is split over enough programs to fill the device; each writes its partial
    sum and torch adds them up (deterministic, unlike atomics)."""
    batch, rows, length = a.shape
    channels = x.shape[1]
    config = outer_sum_config(rows, taps * channels)
    block_m, block_j, block_t = config["BLOCK_M"], config["BLOCK_J"], config["BLOCK_T"]
    n_t_tiles = triton.cdiv(length, block_t)
    n_tiles = batch * n_t_tiles
    output_tiles = triton.cdiv(rows, block_m) * triton.cdiv(taps * channels, block_j)
    splits = max(1, min(n_tiles, _parallel_programs(a.device) // output_tiles))
    tiles_per_split = triton.cdiv(n_tiles, splits)
    splits = triton.cdiv(n_tiles, tiles_per_split)
    partial = torch.empty(splits, rows, taps * channels, device=a.device, dtype=torch.float32)
    partial_rows = torch.empty(splits, rows, device=a.device, dtype=torch.float32) if row_sum else partial
    grid = (triton.cdiv(rows, block_m), triton.cdiv(taps * channels, block_j), splits)
    _shifted_outer_sum_kernel[grid](
        a, x, partial, partial_rows, rows, channels, length, taps, dilation, n_t_tiles, n_tiles,
        tiles_per_split, *a.stride(), *x.stride(),
        DIRECTION=direction, ROW_SUM=row_sum, PRECISION=precision, **config)
    return partial.sum(0), (partial_rows.sum(0) if row_sum else None)
