"""Checkpoints: safetensors with the model's config in the metadata, so loading runs no pickled code.

``save_checkpoint(model, path)`` writes the weights and ``{"fastwave.model": type, "fastwave.config":
json}``; ``load_model(path)`` rebuilds the right model class from that config and loads the weights.
"""
from __future__ import annotations

import json

import torch

from .._checks import check_file

FORMAT_VERSION = "1"
_MODEL_TYPES: dict[str, type] = {}


def register_model(cls):
    """Class decorator: makes ``cls`` (with a ``model_type`` and a ``config``) loadable."""
    _MODEL_TYPES[cls.model_type] = cls
    return cls


def save_checkpoint(model, path) -> None:
    from safetensors.torch import save_file

    if getattr(model, "model_type", None) not in _MODEL_TYPES:
        raise TypeError(f"model must be a fastwave model ({', '.join(sorted(_MODEL_TYPES))}), "
                        f"got {type(model).__name__}")
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    metadata = {"fastwave.format": FORMAT_VERSION, "fastwave.model": model.model_type,
                "fastwave.config": json.dumps(model.config.to_dict())}
    save_file(state, str(path), metadata=metadata)


def load_model(path, map_location="cpu"):
    """Rebuild a model saved by ``save_checkpoint``; ValueError for a truncated or foreign file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    path = check_file(path, "path")
    try:
        with safe_open(path, framework="pt") as f:
            metadata = f.metadata() or {}
        state = load_file(path, device=str(map_location))
    except (SafetensorError, OSError, ValueError) as err:
        raise ValueError(f"{path} is not a readable safetensors checkpoint (truncated or foreign file?): "
                         f"{err}") from None
    model_type = metadata.get("fastwave.model")
    if model_type not in _MODEL_TYPES:
        raise ValueError(f"{path} is not a fastwave checkpoint (metadata 'fastwave.model' is "
                         f"{model_type!r}; known: {', '.join(sorted(_MODEL_TYPES))})")
    cls = _MODEL_TYPES[model_type]
    try:
        config = cls.config_class(**json.loads(metadata["fastwave.config"]))
        model = cls(config)
        model.load_state_dict(state, strict=True)
    except (KeyError, TypeError, ValueError, RuntimeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: the weights do not match the stored {model_type} config: {err}") from None
    return model.to(map_location).eval()
