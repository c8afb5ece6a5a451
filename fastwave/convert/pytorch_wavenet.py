"""vincentherrmann/pytorch-wavenet (``WaveNetModel``) -> ``fastwave.WaveNet``, exactly.

What differs between the two and is folded into the weights:
- pytorch-wavenet reads each sample as a scalar, 2 * token / classes - 1, through a 1x1 conv: a
  linear function of the token, so fastwave's embedding row t is that conv applied to it;
- its filter (tanh) and gate (sigmoid) convs are two convs: fastwave's dilated conv is them stacked;
- its convs have no biases by default (``bias=False``): fastwave's are zero then.
Its residual stream and skip sum are unscaled and its head (ReLU, 1x1, ReLU, 1x1) is fastwave's.

Token ids carry over unchanged, but pytorch-wavenet's quantiser (mu = classes, ``np.digitize`` on
equal bins) is not fastwave's ``mulaw_encode`` (mu = classes - 1, rounding): decode generated tokens
with its ``mu_law_expansion`` for its exact levels, or with fastwave's for levels within one step.

Refused by name: ``WaveNetModelWithConditioning``'s conditioning, a ``dilation_factor`` other than 2,
``end_channels`` unequal to ``skip_channels`` (fastwave's head is skip -> skip -> classes), kernel
sizes above 3. Its training snapshots pickle the whole module (``torch.save(model)``), which is never
unpickled here: save ``model.state_dict()`` where its code is installed.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch

from ..models.wavenet import WaveNet, WaveNetConfig
from .state import Tensors, build_wavenet, check_hparams, load_state_dict

PROJECT = "vincentherrmann/pytorch-wavenet"


def from_pytorch_wavenet(source, hparams: Mapping) -> WaveNet:
    """A pytorch-wavenet ``WaveNetModel`` -> the same network as a ``fastwave.WaveNet`` (float32, eval).

    source: its state dict, or a ``torch.save`` file of one (read without unpickling code).
    hparams: its constructor's arguments by its names: ``blocks`` (dilation cycles) is required;
      ``layers`` (per block), ``kernel_size``, ``classes``, ``dilation_channels``,
      ``residual_channels``, ``skip_channels`` and ``end_channels`` are checked against the weights
      where given; ``dilation_factor`` must be 2 (its default); ``sample_rate`` is recorded (default
      16000)."""
    hp = check_hparams(hparams, PROJECT, "blocks")
    if hp.get("dilation_factor", 2) != 2:
        raise ValueError(f"this {PROJECT} model has dilation_factor {hp['dilation_factor']}; fastwave's WaveNet "
                         "doubles the dilation every layer (2)")
    tensors = Tensors(load_state_dict(source, PROJECT), PROJECT)
    if any(name.startswith(("filter_conditioning_convs.", "gate_conditioning_convs.", "conditioning_layers."))
           for name in tensors.state):
        raise ValueError(f"this is {PROJECT}'s WaveNetModelWithConditioning: its conditioning (random-walk "
                         "features through conditioning_layers) has no counterpart in fastwave")
    start = tensors.take("start_conv.weight", (None, None, 1))
    residual = start.shape[0]
    if start.shape[1] != 1:
        raise ValueError(f"this {PROJECT} model's start_conv reads {start.shape[1]} channels (one-hot input); "
                         "the importer reads the scalar-input model of its current code (in_channels=1)")
    layers = tensors.count("filter_convs.{}.weight")
    if layers == 0:
        raise ValueError(f"the weights hold no filter_convs.0.weight: not a {PROJECT} WaveNetModel")
    dilation, _, kernel = tensors.state["filter_convs.0.weight"].shape
    if kernel > 3:
        raise ValueError(f"this {PROJECT} model has kernel_size {kernel}; fastwave's WaveNet takes 2 or 3")
    skip = tensors.state["skip_convs.0.weight"].shape[0]
    end = tensors.state["end_conv_1.weight"].shape[0]
    classes = tensors.state["end_conv_2.weight"].shape[0]
    if end != skip:
        raise ValueError(f"this {PROJECT} model has end_channels {end} and skip_channels {skip}; fastwave's head "
                         "maps skip -> skip -> classes, so they must be equal")
    blocks = hp["blocks"]
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1 or layers % blocks:
        raise ValueError(f"hparams blocks={blocks!r} does not divide the {layers} layers of the weights")
    found = {"layers": layers // blocks, "kernel_size": kernel, "classes": classes, "dilation_channels": dilation,
             "residual_channels": residual, "skip_channels": skip, "end_channels": end}
    for name, value in found.items():
        if hp.get(name) is not None and hp[name] != value:
            raise ValueError(f"hparams {name}={hp[name]!r} but the weights have {value}")
    config = WaveNetConfig(layers=layers, cycles=blocks, kernel_size=kernel, residual_channels=residual,
                           gate_channels=2 * dilation, skip_channels=skip, classes=classes,
                           sample_rate=int(hp.get("sample_rate", 16000)))

    def bias(name: str, size: int) -> torch.Tensor:
        found = tensors.optional(name, (size,))
        return torch.zeros(size, dtype=torch.float64) if found is None else found

    scalar = 2.0 * torch.arange(classes, dtype=torch.float64) / classes - 1.0  # its input for each token
    new = {"embedding.weight": scalar[:, None] * start[:, 0, 0][None, :] + bias("start_conv.bias", residual)}
    for i in range(layers):
        q = f"layers.{i}."
        new[q + "conv.weight"] = torch.cat([tensors.take(f"filter_convs.{i}.weight", (dilation, residual, kernel)),
                                            tensors.take(f"gate_convs.{i}.weight", (dilation, residual, kernel))])
        new[q + "conv.bias"] = torch.cat([bias(f"filter_convs.{i}.bias", dilation), bias(f"gate_convs.{i}.bias", dilation)])
        res_weight = tensors.take(f"residual_convs.{i}.weight", (residual, dilation, 1))
        res_bias = bias(f"residual_convs.{i}.bias", residual)
        if i < layers - 1:  # the last layer's residual output is read by nothing
            new[q + "res.weight"], new[q + "res.bias"] = res_weight, res_bias
        new[q + "skip.weight"] = tensors.take(f"skip_convs.{i}.weight", (skip, dilation, 1))
        new[q + "skip.bias"] = bias(f"skip_convs.{i}.bias", skip)
    for mine, theirs, shape in (("head.0", "end_conv_1", (skip, skip, 1)), ("head.1", "end_conv_2", (classes, skip, 1))):
        new[mine + ".weight"] = tensors.take(theirs + ".weight", shape)
        new[mine + ".bias"] = bias(theirs + ".bias", shape[0])
    tensors.finish()
    return build_wavenet(config, new)

