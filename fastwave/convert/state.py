"""Reading another project's weights: tensors only, weight norm folded, names taken one by one so
that a key nobody read is reported instead of silently dropped."""
from __future__ import annotations

import pickle
from collections.abc import Mapping

import torch

from .._checks import check_file
from ..models.wavenet import WaveNet, WaveNetConfig


def load_state_dict(source, project: str) -> dict[str, torch.Tensor]:
    """A state dict (a mapping of names to tensors) or the path of a ``torch.save`` file of one ->
    {name: tensor} on the CPU, with weight norm folded (``fold_weight_norm``).

    A file is read with ``torch.load(weights_only=True)``: tensors and plain containers, never
    pickled code. A training checkpoint ``{"state_dict": ..., "optimizer": ..., ...}`` (r9y9's
    train.py) gives its ``state_dict``; DataParallel's ``module.`` prefix is removed."""
    if isinstance(source, Mapping):
        state, where = source, "the state dict"
    else:
        where = check_file(source, "source")
        try:
            state = torch.load(where, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
            raise ValueError(
                f"{where} holds pickled objects besides tensors, and loading it would run their code "
                f"({reason}). Save the model's state_dict instead, where {project}'s code is installed: "
                f"torch.save(model.state_dict(), 'weights.pt')") from None
        except (RuntimeError, EOFError, OSError) as err:
            raise ValueError(f"{where} is not a readable torch.save file: {err}") from None
        if not isinstance(state, Mapping):
            raise ValueError(f"{where} holds a {type(state).__name__}, not a state dict")
    if isinstance(state.get("state_dict"), Mapping):
        state = state["state_dict"]
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{where} holds no tensors (keys: {', '.join(map(str, list(state)[:8]))})")
    if all(name.startswith("module.") for name in tensors):
        tensors = {name[len("module."):]: v for name, v in tensors.items()}
    return fold_weight_norm({name: v.detach().to("cpu", torch.float64) for name, v in tensors.items()})


def fold_weight_norm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``torch.nn.utils.weight_norm`` (``X.weight_g``, ``X.weight_v``) and its parametrization form
    (``X.parametrizations.weight.original0`` / ``original1``) -> ``X.weight`` = g * v / ||v||, the
    norm over every dimension but the first (weight norm's default ``dim=0``, what r9y9 uses)."""
    out = dict(state)
    pairs = [(name[:-len(".weight_g")], ".weight_g", ".weight_v") for name in state if name.endswith(".weight_g")]
    pairs += [(name[:-len(".parametrizations.weight.original0")], ".parametrizations.weight.original0",
               ".parametrizations.weight.original1")
              for name in state if name.endswith(".parametrizations.weight.original0")]
    for prefix, g_suffix, v_suffix in pairs:
        g, v = out.pop(prefix + g_suffix), out.pop(prefix + v_suffix, None)
        if v is None:
            raise ValueError(f"{prefix}{g_suffix} has no {prefix}{v_suffix}: a weight-norm pair is incomplete")
        if g.numel() != v.shape[0]:
            raise ValueError(f"{prefix}: weight norm with dim other than 0 (g {tuple(g.shape)}, v {tuple(v.shape)}) "
                             "is not supported")
        norm = v.reshape(v.shape[0], -1).norm(dim=1).reshape(-1, *[1] * (v.dim() - 1))
        out[prefix + ".weight"] = g.reshape(norm.shape) * v / norm
    return out


def check_hparams(hparams, project: str, cycles: str) -> dict:
    """The source project's hyper-parameters as a dict; ``cycles`` (its name for the dilation
    cycles) is required: the weights do not show where the dilations restart."""
    if not isinstance(hparams, Mapping):
        raise TypeError(f"hparams must be a mapping of {project}'s hyper-parameters, got {type(hparams).__name__}")
    hp = dict(hparams)
    if cycles not in hp:
        raise ValueError(f"hparams must give '{cycles}' (dilation cycles): the weights do not show where the "
                         "dilations restart")
    return hp


class Tensors:
    """Takes named tensors out of a state dict, checking shapes, so that what is left at the end is
    what the importer did not understand."""

    def __init__(self, state: dict[str, torch.Tensor], project: str):
        self.state, self.project = dict(state), project

    def __contains__(self, name: str) -> bool:
        return name in self.state

    def take(self, name: str, shape: tuple | None = None) -> torch.Tensor:
        """The tensor ``name`` (removed); ``shape`` entries of None match any size."""
        if name not in self.state:
            raise ValueError(f"the {self.project} weights have no {name!r}: not a {self.project} model of the "
                             "kind this importer reads, or hyper-parameters that do not match it")
        tensor = self.state.pop(name)
        if shape is not None and (tensor.dim() != len(shape) or
                                  any(s is not None and s != n for s, n in zip(shape, tensor.shape))):
            raise ValueError(f"{self.project} weight {name!r} has shape {tuple(tensor.shape)}, expected "
                             f"{tuple('any' if s is None else s for s in shape)}")
        return tensor

    def optional(self, name: str, shape: tuple | None = None) -> torch.Tensor | None:
        return self.take(name, shape) if name in self.state else None

    def count(self, pattern: str) -> int:
        """How many of ``pattern.format(0)``, ``pattern.format(1)``, ... there are, in a row."""
        n = 0
        while pattern.format(n) in self.state:
            n += 1
        return n

    def finish(self) -> None:
        """Every tensor must have been read."""
        if self.state:
            left = sorted(self.state)
            raise ValueError(f"the {self.project} weights hold tensors this importer does not read: "
                             f"{', '.join(left[:6])}{' ...' if len(left) > 6 else ''}")


def build_wavenet(config: WaveNetConfig, state: dict) -> WaveNet:
    """A float32 ``WaveNet`` of ``config`` in eval mode holding ``state`` (fastwave's names)."""
    model = WaveNet(config)
    expected = set(model.state_dict())
    if set(state) != expected:  # an importer bug, not the user's: say what differs
        raise AssertionError(f"importer produced {sorted(set(state) ^ expected)[:6]} out of place")
    model.load_state_dict({name: tensor.to(torch.float32) for name, tensor in state.items()})
    return model.eval()
