"""Importers: other projects' sample models as fastwave models, exactly, for the fast engines.

    model = fastwave.convert.import_model("r9y9", "checkpoint_step000100000.pth", {"stacks": 2})
    model.save("model.safetensors")          # or: fastwave import r9y9 CKPT --hparams h.json --out model.safetensors

* ``r9y9``: r9y9/wavenet_vocoder (``from_r9y9``): mu-law-quantize models, global (speaker id) and
  sample-rate local conditioning; its residual and skip scales and weight norm folded.
* ``pytorch-wavenet``: vincentherrmann/pytorch-wavenet's ``WaveNetModel`` (``from_pytorch_wavenet``).

Weights are read as tensors only (``torch.load(weights_only=True)``); what fastwave cannot
represent is refused by name before anything is written.
"""
from __future__ import annotations

from .pytorch_wavenet import from_pytorch_wavenet
from .r9y9 import from_r9y9
from .state import fold_weight_norm, load_state_dict

IMPORTERS = {"r9y9": from_r9y9, "pytorch-wavenet": from_pytorch_wavenet}
KINDS = tuple(IMPORTERS)


def import_model(kind: str, source, hparams):
    """``kind`` (one of ``KINDS``) and the source project's weights (a state dict or a file) and
    hyper-parameters (a mapping by its names) -> the fastwave model computing the same function."""
    if kind not in IMPORTERS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return IMPORTERS[kind](source, hparams)


__all__ = ["IMPORTERS", "KINDS", "fold_weight_norm", "from_pytorch_wavenet", "from_r9y9", "import_model",
           "load_state_dict"]
