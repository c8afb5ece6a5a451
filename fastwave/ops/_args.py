"""Argument checks shared by the ops: one place that words their errors (ValueError / TypeError
naming the argument), run before anything is launched."""
import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_tensor(value, name: str, ndim: int | tuple[int, ...], like: torch.Tensor | None = None) -> torch.Tensor:
    """A floating tensor of the given rank, with ``like``'s dtype and device when given."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if value.dim() not in ranks:
        raise ValueError(f"{name} must have {' or '.join(map(str, ranks))} dimensions, got shape {tuple(value.shape)}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, got {value.dtype}")
    if like is not None:
        if value.dtype != like.dtype:
            raise TypeError(f"{name} has dtype {value.dtype} but the input has {like.dtype}; cast them to one dtype")
        if value.device != like.device:
            raise ValueError(f"{name} is on {value.device} but the input is on {like.device}")
    return value


def check_shape(value: torch.Tensor, name: str, expected: tuple) -> None:
    """``expected`` holds ints, or None for 'any size'."""
    shape = tuple(value.shape)
    if len(shape) != len(expected) or any(e is not None and s != e for s, e in zip(shape, expected)):
        text = ", ".join("*" if e is None else str(e) for e in expected)
        raise ValueError(f"{name} must have shape ({text}), got {shape}")


def check_dilation(dilation) -> int:
    if isinstance(dilation, bool) or not isinstance(dilation, int) or dilation < 1:
        raise ValueError(f"dilation must be an int >= 1, got {dilation!r}")
    return dilation


def check_kernel_size(size: int, name: str) -> None:
    if not 1 <= size <= 4:
        raise ValueError(f"{name} must have kernel size 1 to 4 (its last dimension), got {size}")


def time_contiguous(x: torch.Tensor) -> torch.Tensor:
    """The kernels take any batch / channel strides but read time in unit steps (coalesced)."""
    return x if x.stride(-1) == 1 else x.contiguous()


def autocast(*tensors):
    """Under torch.autocast, cast the floating arguments (float64 excepted) to the autocast dtype, as
    autocast does for nn.Conv1d (custom ops are not cast by autocast itself)."""
    x = tensors[0]
    if not isinstance(x, torch.Tensor) or not torch.is_autocast_enabled(x.device.type):
        return tensors
    dtype = torch.get_autocast_dtype(x.device.type)
    return tuple(t.to(dtype) if isinstance(t, torch.Tensor) and t.is_floating_point() and t.dtype != torch.float64
                 else t for t in tensors)


INT32_MAX = 2 ** 31 - 1


def rows_fit_int32(*tensors, row_elements: int = 0) -> bool:
    """Whether every element offset within one batch row of these (B, C, T) tensors, and of buffers
    of ``row_elements`` per row, fits in int32: the kernels index batch rows in int64 and everything
    within a row in int32 (cheaper in registers). Past that the ops run their torch references."""
    extents = [sum((size - 1) * abs(stride) for size, stride in zip(t.shape[1:], t.stride()[1:]))
               for t in tensors if t is not None]
    return max(extents + [row_elements]) <= INT32_MAX
