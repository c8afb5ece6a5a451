"""Per-stream conditioning for the training and evaluation loops of sample models.

A conditioned WaveNet reads, besides its tokens, a global id per stream and / or local features at
a lower frame rate (``cond_hop`` positions per frame; see fastwave.models.wavenet). The loops cut
windows out of streams, so the conditioning has to be cut with them:

    cond = stream_cond(model, {"global_cond": ids, "local_cond": [feats_0, feats_1, ...]}, streams)
    kwargs = cond.for_windows(which, starts, length, device)   # -> model(tokens, **kwargs)

global_cond: (N,) ids, or one id for every stream. local_cond: one (channels, F_i) float array per
stream (a list, or an (N, channels, F) array when the streams are equally long), frame f covering
positions [f * cond_hop, (f + 1) * cond_hop) of that stream; it must cover every input position,
F_i >= ceil((len_i - 1) / cond_hop). Windows of a locally conditioned model start on a multiple of
``cond_hop`` (``model.frame_hop``), so each window reads whole frames from its own start.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .._checks import as_tensor, check_global_cond


@dataclass
class StreamCond:
    global_ids: torch.Tensor | None       # (N,) int64, CPU
    local_feats: list[torch.Tensor] | None  # N of (channels, F_i) float32, CPU
    hop: int = 1                            # positions per local frame (1 without local features)

    def for_windows(self, which, starts, length: int, device) -> dict:
        """Forward keyword arguments for windows of ``length`` inputs: window r is stream which[r] from
        position starts[r] (a multiple of ``hop``) -> {"global_cond": (B,), "local_cond": (B, C, F)}."""
        kwargs = {}
        which = [int(i) for i in which]
        if self.global_ids is not None:
            kwargs["global_cond"] = self.global_ids[which].to(device)
        if self.local_feats is not None:
            frames = -(-length // self.hop)
            cut = [self.local_feats[i][:, int(s) // self.hop:int(s) // self.hop + frames] for i, s in zip(which, starts)]
            # A padded crop of a short stream (pad_short) runs past its features: zeros there, at
            # positions that are never scored and that a causal model's scored positions never read.
            kwargs["local_cond"] = torch.stack([F.pad(f, (0, frames - f.shape[1])) for f in cut]).to(device)
        return kwargs


def stream_cond(model, cond, streams: list[torch.Tensor]) -> StreamCond:
    """Validate ``cond`` (see the module docstring) for ``model`` and its token ``streams``."""
    config = model.config
    if cond is not None and not isinstance(cond, dict):
        raise TypeError(f"cond must be a dict with keys global_cond / local_cond, got {type(cond).__name__}")
    cond = cond or {}
    unknown = set(cond) - {"global_cond", "local_cond"}
    if unknown:
        raise ValueError(f"cond has unknown keys {sorted(unknown)}; only 'global_cond' (ids per stream) and "
                         "'local_cond' (features per stream) are taken")
    global_classes = getattr(config, "global_classes", 0)
    local_channels = getattr(config, "local_channels", 0)
    global_ids = local_feats = None
    if global_classes:
        global_ids = check_global_cond(cond.get("global_cond"), len(streams), global_classes, "cpu")
    elif cond.get("global_cond") is not None:
        raise ValueError("cond['global_cond'] was given but this model has no global conditioning")
    if local_channels:
        local_feats = _local_features(cond.get("local_cond"), streams, local_channels, config.cond_hop)
    elif cond.get("local_cond") is not None:
        raise ValueError("cond['local_cond'] was given but this model has no local conditioning")
    return StreamCond(global_ids, local_feats, config.cond_hop if local_channels else 1)


def _local_features(local_cond, streams, channels: int, hop: int) -> list[torch.Tensor]:
    if local_cond is None:
        raise ValueError(f"cond['local_cond'] is required: this model has local_channels={channels}")
    if isinstance(local_cond, (list, tuple)):
        feats = [as_tensor(f, f"local_cond[{i}]") for i, f in enumerate(local_cond)]
    else:
        array = as_tensor(local_cond, "local_cond")
        if array.dim() != 3:
            raise ValueError(f"local_cond must be a list of (channels, F_i) arrays or one (N, channels, F) array, "
                             f"got shape {tuple(array.shape)}")
        feats = list(array.unbind(0))
    if len(feats) != len(streams):
        raise ValueError(f"local_cond has features for {len(feats)} streams, but there are {len(streams)}")
    out = []
    for i, (f, stream) in enumerate(zip(feats, streams)):
        if not f.dtype.is_floating_point or f.dim() != 2 or f.shape[0] != channels:
            raise ValueError(f"local_cond[{i}] must be float ({channels}, frames), got {tuple(f.shape)} {f.dtype}")
        needed = -(-(len(stream) - 1) // hop)
        if f.shape[1] < needed:
            raise ValueError(f"local_cond[{i}] has {f.shape[1]} frames; its stream's {len(stream) - 1} inputs at "
                             f"cond_hop={hop} need {needed}")
        if not bool(torch.isfinite(f).all()):
            raise ValueError(f"local_cond[{i}] holds non-finite values (NaN or inf)")
        out.append(f.detach().to("cpu", torch.float32))
    return out
