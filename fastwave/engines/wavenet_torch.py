"""The cached torch engine for WaveNet: the Fast-WaveNet algorithm (Paine et al., 2016) in plain torch.

Each layer keeps a ring buffer of its own past inputs, exactly the (K - 1) * dilation positions its
taps reach back, so a new sample costs O(layers) small matrix products instead of a forward over the
receptive field. A prompt fills the buffers with one parallel forward pass. It reads the exported
weight format (``WaveNet.export_weights``), the same one the native engines read, and is the
reference they are held to. Runs on whatever device the model is on, in fp32.
"""
from __future__ import annotations

import torch

from .step_engine import StepEngine


class _Layer:
    """One layer's step weights, pre-arranged for ``addmm`` on (B, features) rows."""

    def __init__(self, weights, i, config, device):
        def get(name):
            return torch.from_numpy(weights[f"layers.{i}.{name}"]).to(device)

        k, r = config["kernel_size"], config["residual_channels"]
        self.dilation = config["dilations"][i]
        self.taps = k - 1  # past inputs read per step, at t - d, ..., t - (K-1) d
        self.ring = (k - 1) * self.dilation
        self.half = config["gate_channels"] // 2
        # (K, G, R) -> (K * R, G): rows follow the concatenated taps [x_{t-(K-1)d}, ..., x_{t-d}, x_t].
        self.conv_weight = get("conv_weight").permute(0, 2, 1).reshape(k * r, -1).contiguous()
        has_res = f"layers.{i}.res_weight" in weights
        self.res_weight = get("res_weight").t().contiguous() if has_res else None  # (H, R)
        self.res_bias = get("res_bias") if has_res else None


class TorchWaveNetEngine(StepEngine):
    """Incremental WaveNet; ``cond`` holds ``global_cond`` / ``local_cond`` as ``WaveNet.forward`` takes them."""

    def __init__(self, model, batch: int, cond: dict):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("the torch engine runs fp32 models; call model.float() first")
        self.model = model
        self.device = device = next(model.parameters()).device
        config, weights = model.export_weights()
        self.config = config
        self.layers = [_Layer(weights, i, config, device) for i in range(config["layers"])]
        self.embedding = torch.from_numpy(weights["embedding"]).to(device)
        # Every layer's skip projection as one (L * H, S) matrix: the step stores each layer's gated
        # activation h in one row buffer and projects them all at once, not L small products + adds.
        self.skip_weight = torch.cat([torch.from_numpy(weights[f"layers.{i}.skip_weight"]).t()
                                      for i in range(config["layers"])]).to(device).contiguous()
        self.skip_bias = sum(torch.from_numpy(weights[f"layers.{i}.skip_bias"]) for i in range(config["layers"])).to(device)
        self.gated = torch.empty(batch, config["layers"] * config["gate_channels"] // 2, device=device)
        self.head = [torch.from_numpy(weights[f"head.{j}.{p}"]).to(device) for j in (0, 1) for p in ("weight", "bias")]
        self.head[0], self.head[2] = self.head[0].t().contiguous(), self.head[2].t().contiguous()
        self.cond = cond
        self.gate_bias, self.local_terms = self._conditioning_bias(weights, batch, cond)
        self.position = 0
        self.rings = []
        self.frame, self.frame_bias = -1, None

    def _conditioning_bias(self, weights, batch, cond):
        """Per-layer terms added to the conv output: constant (B|1, L, G), and the local features with
        their projections (or None)."""
        c, device = self.config, self.device
        layers = range(c["layers"])
        bias = torch.stack([torch.from_numpy(weights[f"layers.{i}.conv_bias"]) for i in layers]).to(device)
        bias = bias.unsqueeze(0)  # (1, L, G)
        if c["global_classes"]:
            ids = cond["global_cond"].to(device)
            g = torch.from_numpy(weights["global_embedding"]).to(device)[ids]  # (B, Dg)
            proj = torch.stack([torch.from_numpy(weights[f"layers.{i}.global_weight"]) for i in layers]).to(device)
            bias = bias + torch.einsum("bc,lgc->blg", g, proj)
        local = None
        if c["local_channels"]:
            feats = cond["local_cond"].to(device, torch.float32)  # (B, C, F)
            proj = torch.stack([torch.from_numpy(weights[f"layers.{i}.local_weight"]) for i in layers]).to(device)
            local = (feats, proj)  # projected one frame at a time, as the steps reach it
        return bias, local

    def prefill(self, prompt):
        """Fill every layer's ring with one parallel forward over the prompt (B, P)."""
        length = prompt.shape[1]
        local = self.cond.get("local_cond")
        skip, inputs = self.model.trunk(prompt, self.cond.get("global_cond"), local, keep_layer_inputs=True)
        self.rings = []
        for layer, x in zip(self.layers, inputs):  # x (B, R, P)
            ring = x.new_zeros(layer.ring, x.shape[0], x.shape[1])  # zeros: the causal padding
            first = max(0, length - layer.ring)
            positions = torch.arange(first, length, device=self.device)
            ring[positions % layer.ring] = x[:, :, first:].permute(2, 0, 1)
            self.rings.append(ring)
        self.position = length
        return self._head(skip[:, :, -1])

    def step(self, tokens):
        """tokens (B,) at the next position -> logits (B, classes) for the position after it."""
        t = self.position
        bias = self.gate_bias if self.local_terms is None else self._frame_bias(t // self.config["cond_hop"])
        x = self.embedding[tokens]  # (B, R)
        for i, (layer, ring) in enumerate(zip(self.layers, self.rings)):
            taps = [ring[(t - j * layer.dilation) % layer.ring] for j in range(layer.taps, 0, -1)]
            z = torch.addmm(bias[:, i], torch.cat(taps + [x], dim=1), layer.conv_weight)
            ring[t % layer.ring].copy_(x)  # after reading: this slot held x_{t - (K-1) d}
            h = self.gated[:, i * layer.half:(i + 1) * layer.half]
            torch.mul(torch.tanh(z[:, :layer.half]), torch.sigmoid(z[:, layer.half:]), out=h)
            if layer.res_weight is not None:
                x = torch.addmm(x, h, layer.res_weight).add_(layer.res_bias)
        self.position = t + 1
        return self._head(torch.addmm(self.skip_bias, self.gated, self.skip_weight))

    def _frame_bias(self, frame):
        """gate_bias plus local frame ``frame``'s per-layer projection (B, L, G), made once per frame:
        memory stays O(1) in the audio length, and the work is 1 / cond_hop of a per-sample product."""
        if frame != self.frame:
            feats, proj = self.local_terms
            self.frame, self.frame_bias = frame, self.gate_bias + torch.einsum("bc,lgc->blg", feats[:, :, frame], proj)
        return self.frame_bias

    def _head(self, skip):
        w0, b0, w1, b1 = self.head
        return torch.addmm(b1, torch.relu(torch.addmm(b0, torch.relu(skip), w0)), w1)
