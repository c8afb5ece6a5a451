"""Input validation shared by models, engines and tools: one place that words the errors.

Every check raises ValueError / TypeError naming the argument and what was expected, and never
modifies what it was given (conversions return new tensors).
"""
from __future__ import annotations

import os

import numpy as np
import torch


class MissingFileError(FileNotFoundError, ValueError):
    """A path that does not exist: both a FileNotFoundError and a ValueError, as every bad input is."""


def check_device(name: str) -> str:
    """A command line's --device: "cpu", or "cuda" where torch sees a CUDA device (else exits with a
    message)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("fastwave: --device cuda but torch sees no CUDA device")
    return name


def check_file(path, name: str = "path") -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(2, f"{name}: no such file", path)
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory, expected a file: {path}")
    return path


_WIDE_UNSIGNED = (torch.uint16, torch.uint32, torch.uint64)  # torch lacks min/max etc. for these


def as_tensor(value, name: str) -> torch.Tensor:
    """A tensor view of ``value`` (tensor, numpy array, list or int): numpy arrays of any layout or
    byte order are copied to native order only when needed; wide unsigned ints become int64."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "u" and value.dtype.itemsize > 1:
            if value.size and int(value.max()) >= 2 ** 63:
                raise ValueError(f"{name} holds values >= 2**63")
            value = value.astype(np.int64)
        if not (value.flags.c_contiguous and value.flags.writeable and value.dtype.isnative):
            value = value.astype(value.dtype.newbyteorder("="), order="C")  # what torch can wrap
        value = torch.from_numpy(value)
    elif isinstance(value, (list, tuple, int)) and not isinstance(value, bool):
        value = torch.as_tensor(value)
    elif not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(value).__name__}")
    if value.dtype in _WIDE_UNSIGNED:
        value = value.to(torch.int64)  # uint64 >= 2**63 turns negative, which range checks refuse
    return value


def check_int_arg(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def check_tokens(tokens, classes: int, name: str = "tokens", rank: int | None = 2,
                 allow_empty: bool = False) -> torch.Tensor:
    """Integer tokens of the given rank (default (B, T); None: any), each in [0, classes) -> int64."""
    tokens = as_tensor(tokens, name)
    if tokens.numel() == 0 and not allow_empty:
        raise ValueError(f"{name} is empty (shape {tuple(tokens.shape)})")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer tokens, got dtype {tokens.dtype}")
    if rank is not None and tokens.dim() != rank:
        shape = "(B, T)" if rank == 2 else f"rank {rank}"
        raise ValueError(f"{name} must be {shape}, got shape {tuple(tokens.shape)}")
    if tokens.numel() == 0 or torch.compiler.is_compiling():
        # Under torch.compile a value check would break the graph: the embedding lookup that
        # follows refuses out-of-range tokens itself there.
        return tokens.long()
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= classes:
        raise ValueError(f"{name} must lie in [0, {classes}), got values in [{low}, {high}]")
    return tokens.long()


def token_streams(tokens, classes: int, name: str = "tokens", min_length: int = 2) -> list[torch.Tensor]:
    """(T,) / (N, T) int tokens, or a list / tuple of 1-D ones -> list of int64 CPU (T_i,) tensors,
    each in [0, classes) and at least ``min_length`` long."""
    if isinstance(tokens, (list, tuple)) and tokens and isinstance(tokens[0], (torch.Tensor, np.ndarray, list, tuple)):
        streams = [check_tokens(s, classes, f"{name}[{i}]", rank=1) for i, s in enumerate(tokens)]
    else:
        array = as_tensor(tokens, name)
        if array.dim() not in (1, 2):
            raise ValueError(f"{name} must be (T,), (N, T) or a list of (T_i,) streams, got shape {tuple(array.shape)}")
        streams = list(check_tokens(array.reshape(-1, array.shape[-1]), classes, name).unbind(0))
    if not streams:
        raise ValueError(f"{name} holds no streams")
    for i, stream in enumerate(streams):
        if len(stream) < min_length:
            which = name if len(streams) == 1 else f"{name} stream {i}"
            raise ValueError(f"{which} has {len(stream)} tokens; at least {min_length} are needed")
    return [s.cpu() for s in streams]


def check_global_cond(global_cond, batch: int, global_classes: int, device) -> torch.Tensor:
    """Global conditioning ids (B,) or a scalar id for every stream -> int64 (B,) on device."""
    if global_cond is None:
        raise ValueError(f"global_cond is required: this model has global_classes={global_classes}")
    ids = as_tensor(global_cond, "global_cond")
    if ids.dim() == 0:
        ids = ids.reshape(1).expand(batch)
    if ids.dim() != 1 or ids.shape[0] not in (1, batch):
        raise ValueError(f"global_cond must be (B,) = ({batch},) ids, got shape {tuple(ids.shape)}")
    ids = check_tokens(ids.expand(batch), global_classes, "global_cond", rank=1)
    return ids.to(device)


def check_local_cond(local_cond, batch: int, channels: int, length: int, hop: int, device) -> torch.Tensor:
    """Local features (B, channels, F) covering ``length`` positions (F * hop >= length)."""
    if local_cond is None:
        raise ValueError(f"local_cond is required: this model has local_channels={channels}")
    feats = as_tensor(local_cond, "local_cond")
    if not feats.dtype.is_floating_point:
        raise TypeError(f"local_cond must be floating point features, got dtype {feats.dtype}")
    if feats.dim() != 3 or feats.shape[1] != channels or feats.shape[0] not in (1, batch):
        raise ValueError(f"local_cond must be (B, {channels}, frames) with B = {batch} (or 1), "
                         f"got shape {tuple(feats.shape)}")
    needed = -(-length // hop)
    if feats.shape[2] < needed:
        raise ValueError(f"local_cond has {feats.shape[2]} frames but {length} positions at cond_hop={hop} "
                         f"need {needed}")
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("local_cond holds non-finite values (NaN or inf)")
    return feats.expand(batch, -1, -1).to(device)


def check_finite_parameters(model) -> None:
    """Refuse a model whose weights hold NaN or inf: it would generate garbage silently."""
    for name, param in model.named_parameters():
        if not bool(torch.isfinite(param).all()):
            raise ValueError(f"model weight {name!r} holds non-finite values (NaN or inf)")


def check_config_ints(config, model: str, names, minimum: int = 1, maximum: int | None = None,
                      what: str = "") -> None:
    """Each named field of a model config is an int in [minimum, maximum] (bool refused)."""
    for name in names:
        value = getattr(config, name)
        if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
                or (maximum is not None and value > maximum)):
            if maximum is not None:
                bound = f"an int in [{minimum}, {maximum}]"
            else:
                bound = "a positive int" if minimum == 1 else f"an int >= {minimum}"
            raise ValueError(f"{model} {name}{what} must be {bound}, got {value!r}")
