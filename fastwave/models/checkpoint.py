"""Checkpoints: safetensors with the model's config in the metadata, so loading runs no pickled code.

``save_checkpoint(model, path)`` writes the weights and ``{"fastwave.model": type, "fastwave.config":
json}``; ``load_model(path)`` rebuilds the right model class from that config and loads the weights.
"""
from __future__ import annotations

import json

import torch
from torch import nn

from .._checks import check_file
from .._files import write_atomically

FORMAT_VERSION = "1"
_MODEL_TYPES: dict[str, type] = {}


class ConfiguredModule(nn.Module):
    """A module built from a config dataclass (with ``to_dict``) that saves itself with that config;
    subclasses set ``model_type`` (the checkpoint key) and ``config_class``."""

    model_type: str
    config_class: type

    def __init__(self, config=None, **overrides):
        """From a config, keyword arguments of the config, or a config with some fields overridden."""
        super().__init__()
        if config is None:
            config = self.config_class(**overrides)
        elif overrides:
            config = self.config_class(**{**config.to_dict(), **overrides})
        self.config = config

    def save(self, path) -> None:
        """Write a safetensors checkpoint with the config inside; reload with ``fastwave.load_model``."""
        save_checkpoint(self, path)


def register_model(cls):
    """Class decorator: makes ``cls`` (with a ``model_type`` and a ``config``) loadable."""
    _MODEL_TYPES[cls.model_type] = cls
    return cls


def check_saveable(model) -> None:
    """TypeError unless ``model`` is a registered fastwave model (so ``save_checkpoint`` can write it)."""
    if getattr(model, "model_type", None) not in _MODEL_TYPES:
        raise TypeError(f"model must be a fastwave model ({', '.join(sorted(_MODEL_TYPES))}), "
                        f"got {type(model).__name__}")


def save_checkpoint(model, path) -> None:
    from safetensors.torch import save_file

    check_saveable(model)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"fastwave.format": FORMAT_VERSION, "fastwave.model": model.model_type,
                "fastwave.config": json.dumps(model.config.to_dict())}
    write_atomically(path, lambda temporary: save_file(state, temporary, metadata=metadata))


def load_model(path, map_location="cpu"):
    """Rebuild a model saved by ``save_checkpoint``, in the dtype it was saved in, on ``map_location``.

    ValueError for a truncated or foreign file, or weights that do not match the stored config;
    MissingFileError (a FileNotFoundError and ValueError) for a missing one.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = check_file(path, "path")
    try:
        device = torch.device(map_location)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"map_location must name a torch device ('cpu', 'cuda', 'cuda:1', ...), got "
                         f"{map_location!r}") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"map_location is {map_location!r} but torch sees no CUDA device")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint (truncated or foreign file?): "
                         f"{err}") from None
    model_type = metadata.get("fastwave.model")
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"{path} is not a fastwave checkpoint (metadata 'fastwave.model' is "
                         f"{model_type!r}; known: {', '.join(sorted(_MODEL_TYPES))})")
    if metadata.get("fastwave.format") != FORMAT_VERSION:
        raise ValueError(f"{path} has checkpoint format {metadata.get('fastwave.format')!r}; this fastwave "
                         f"reads format {FORMAT_VERSION!r}")
    cls = _MODEL_TYPES[model_type]
    try:
        settings = json.loads(metadata["fastwave.config"])
        _check_layer_counts(settings, state)  # before the skeleton: 20,000 layers take minutes to build
        config = cls.config_class(**settings)
        with torch.device("meta"):  # shapes only: a forged config allocates nothing
            skeleton = cls(config)
        _check_shapes(skeleton.state_dict(), state)
    except (KeyError, TypeError, ValueError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the weights do not match the stored {model_type} config: {err}") from None
    model = cls(config).to(next(t.dtype for t in state.values() if t.is_floating_point()))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()


def _check_layer_counts(settings, stored: dict) -> None:
    """Every layer of every model holds at least one tensor: a config asking for more layers than
    the file holds tensors is forged or damaged."""
    if not isinstance(settings, dict):
        raise ValueError(f"the config must be a JSON object, got {type(settings).__name__}")
    for key, value in settings.items():
        if key.endswith("layers") and isinstance(value, int) and value > len(stored):
            raise ValueError(f"config {key}={value} but the file holds only {len(stored)} tensors")


def _check_shapes(expected: dict, stored: dict) -> None:
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    if missing or unexpected:
        raise ValueError(f"missing weights {missing[:5]}, unexpected weights {unexpected[:5]}")
    for name, tensor in expected.items():
        if tuple(stored[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{name} has shape {tuple(stored[name].shape)}, expected {tuple(tensor.shape)}")
    # Integer buffers (BatchNorm's num_batches_tracked) keep their own dtype; the weights share one.
    floating = {t.dtype for t in stored.values() if t.is_floating_point()}
    if len(floating) != 1:
        raise ValueError("weights of mixed dtypes" if floating else "no floating-point weights")
