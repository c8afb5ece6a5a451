"""r9y9/wavenet_vocoder -> ``fastwave.WaveNet``, exactly (the same logits, to float rounding).

What differs between the two and is folded into the weights:
- r9y9's first layer is a 1x1 conv on the one-hot input: its columns plus its bias are fastwave's
  embedding rows;
- r9y9 scales the residual stream by sqrt(0.5) after every layer: layer l's input is sqrt(0.5)**l
  times fastwave's, so layer l's dilated conv is multiplied by that factor and its residual 1x1
  conv (weight and bias) divided by it;
- r9y9 scales the skip sum by sqrt(1 / layers): every skip 1x1 conv is multiplied by it;
- the conditioning 1x1 convs carry biases, constant inside the gate: they join the dilated conv's;
- weight norm (every conv, until ``make_generation_fast_()``) is folded (``state.fold_weight_norm``).

Refused by name, before anything is written: scalar input with a mixture-of-logistics or Gaussian
output (``input_type`` "raw" / "mulaw"), the learned upsampling network of local conditioning
(``upsample_conditional_features``: give fastwave features at the sample rate instead), global
conditioning by external vectors (``use_speaker_embedding=False``), kernel sizes above 3.
"""
from __future__ import annotations

import math
from collections.abc import Mapping

from ..models.wavenet import WaveNet, WaveNetConfig
from .state import Tensors, build_wavenet, check_hparams, load_state_dict

PROJECT = "r9y9/wavenet_vocoder"


def from_r9y9(source, hparams: Mapping) -> WaveNet:
    """A wavenet_vocoder model -> the same network as a ``fastwave.WaveNet`` (float32, eval mode).

    source: its state dict, or a file of it or of a training checkpoint (``{"state_dict": ...}``,
      as its train.py saves), read without unpickling code.
    hparams: its hyper-parameters by wavenet_vocoder's names (its hparams JSON works as is):
      ``stacks`` is required (the weights do not show where the dilations restart); ``layers``,
      ``kernel_size``, ``quantize_channels`` / ``out_channels``, ``cin_channels``, ``gin_channels``
      and ``n_speakers`` are checked against the weights where given; ``sample_rate`` is recorded
      (default 16000); ``input_type``, ``scalar_input`` and ``upsample_conditional_features`` say
      what cannot be imported.
    Local conditioning, where the model has it, is read at the sample rate (``cond_hop`` 1)."""
    hp = _check_hparams(hparams)
    tensors = Tensors(load_state_dict(source, PROJECT), PROJECT)
    if any(name.startswith("upsample_net.") for name in tensors.state) or hp.get("upsample_conditional_features"):
        raise ValueError(f"this {PROJECT} model upsamples its local conditioning with a learned network "
                         "(upsample_conditional_features), which fastwave cannot represent: fastwave's local "
                         "conditioning repeats frames (cond_hop) and projects them with a 1x1 conv")
    first = tensors.take("first_conv.weight", (None, None, 1))
    residual, classes = first.shape[0], first.shape[1]
    if classes == 1:
        raise ValueError(f"this {PROJECT} model reads scalar input (its first conv has 1 input channel), with "
                         "a mixture-of-logistics or Gaussian output: fastwave's WaveNet reads and predicts "
                         "mu-law classes")
    layers = tensors.count("conv_layers.{}.conv.weight")
    if layers == 0:
        raise ValueError(f"the weights hold no conv_layers.0.conv.weight: not a {PROJECT} WaveNet")
    conv0 = tensors.state["conv_layers.0.conv.weight"]
    gate, kernel = conv0.shape[0], conv0.shape[2]
    if kernel > 3:
        raise ValueError(f"this {PROJECT} model has kernel_size {kernel}; fastwave's WaveNet takes 2 or 3")
    skip = tensors.state["conv_layers.0.conv1x1_skip.weight"].shape[0]
    local = tensors.state["conv_layers.0.conv1x1c.weight"].shape[1] if "conv_layers.0.conv1x1c.weight" in tensors else 0
    glob = tensors.state["conv_layers.0.conv1x1g.weight"].shape[1] if "conv_layers.0.conv1x1g.weight" in tensors else 0
    speakers = 0
    if glob:
        if "embed_speakers.weight" not in tensors:
            raise ValueError(f"this {PROJECT} model is conditioned globally on external feature vectors "
                             "(use_speaker_embedding=False); fastwave's global conditioning is an id with a "
                             "learned embedding")
        speakers = tensors.state["embed_speakers.weight"].shape[0]
    found = {"layers": layers, "kernel_size": kernel, "quantize_channels": classes, "out_channels": classes,
             "cin_channels": local if local else None, "gin_channels": glob if glob else None,
             "n_speakers": speakers if speakers else None}
    _check_agrees(hp, found)
    config = WaveNetConfig(layers=layers, cycles=hp["stacks"], kernel_size=kernel, residual_channels=residual,
                           gate_channels=gate, skip_channels=skip, classes=classes,
                           sample_rate=int(hp.get("sample_rate", 16000)), global_classes=speakers,
                           global_channels=glob or 16, local_channels=local, cond_hop=1)

    new = {"embedding.weight": first[:, :, 0].T + tensors.take("first_conv.bias", (residual,))}
    if speakers:
        new["global_embedding.weight"] = tensors.take("embed_speakers.weight", (speakers, glob))
    skip_scale = math.sqrt(1.0 / layers)
    for i in range(layers):
        p, q = f"conv_layers.{i}.", f"layers.{i}."
        scale = math.sqrt(0.5) ** i  # layer i's input in r9y9 is this times fastwave's
        bias = tensors.take(p + "conv.bias", (gate,))
        if local:
            new[q + "local_proj.weight"] = tensors.take(p + "conv1x1c.weight", (gate, local, 1))
            bias = bias + tensors.take(p + "conv1x1c.bias", (gate,))
        if glob:
            new[q + "global_proj.weight"] = tensors.take(p + "conv1x1g.weight", (gate, glob, 1))[:, :, 0]
            bias = bias + tensors.take(p + "conv1x1g.bias", (gate,))
        new[q + "conv.weight"] = tensors.take(p + "conv.weight", (gate, residual, kernel)) * scale
        new[q + "conv.bias"] = bias
        out_weight = tensors.take(p + "conv1x1_out.weight", (residual, gate // 2, 1))
        out_bias = tensors.take(p + "conv1x1_out.bias", (residual,))
        if i < layers - 1:  # the last layer's residual output is read by nothing
            new[q + "res.weight"], new[q + "res.bias"] = out_weight / scale, out_bias / scale
        new[q + "skip.weight"] = tensors.take(p + "conv1x1_skip.weight", (skip, gate // 2, 1)) * skip_scale
        new[q + "skip.bias"] = tensors.take(p + "conv1x1_skip.bias", (skip,)) * skip_scale
    for mine, theirs, shape in (("head.0", "last_conv_layers.1", (skip, skip, 1)),
                                ("head.1", "last_conv_layers.3", (classes, skip, 1))):
        new[mine + ".weight"] = tensors.take(theirs + ".weight", shape)
        new[mine + ".bias"] = tensors.take(theirs + ".bias", (shape[0],))
    tensors.finish()
    return build_wavenet(config, new)


def _check_hparams(hparams) -> dict:
    hp = check_hparams(hparams, PROJECT, "stacks")
    if hp.get("input_type") in ("raw", "mulaw") or hp.get("scalar_input"):
        raise ValueError(f"this {PROJECT} model reads scalar input (input_type {hp.get('input_type')!r}) with a "
                         "mixture-of-logistics or Gaussian output: fastwave's WaveNet reads and predicts mu-law "
                         "classes (input_type 'mulaw-quantize')")
    return hp


def _check_agrees(hp: dict, found: dict) -> None:
    for name, value in found.items():
        given = hp.get(name)
        if given is None or (isinstance(given, (int, float)) and given <= 0 and value is None):
            continue  # not given, or given as "disabled" (r9y9 writes -1) where the weights have none
        if value is None or int(given) != value:
            raise ValueError(f"hparams {name}={given!r} but the weights have {value if value is not None else 'none'}")
