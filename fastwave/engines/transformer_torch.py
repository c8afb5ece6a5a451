"""The cached torch engine for the sample Transformer: a preallocated KV cache, one decode step per
sample, in plain torch (gpt-fast style: static shapes, no host syncs, so on a GPU the step and the
sampling are captured once in a CUDA graph and replayed).

Per layer the cache holds the rotated keys and the values of the last ``context`` positions,
(B, heads, context, head_dim), as a ring: position t lives in slot t % context. Attention is blind
to slot order (``decode_attention`` attends to the first ``min(t + 1, context)`` slots, whatever
they hold), so once the generation outgrows the context each new position simply overwrites the
oldest: a sliding window, exactly the model's banded forward. A prompt fills the cache with one
parallel forward. The conditioned variant keeps the last ``cond_patches * cond_hop`` samples as
waveform in a second ring (written by the step) and recomputes its latent once per ``cond_hop``
samples, eagerly, into a buffer the step reads.

The decode step reads the exported weight format (``SampleTransformer.export_weights``), the one
the native engines read, and is the reference they are held to; the prompt's parallel pass and the
once-per-block latent use the model's own modules. fp32, on whatever device the model is on.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.blocks import apply_rope, rope_tables
from ..ops._backend import use_triton
from ..ops.decode_attention import decode_attention, decode_attention_reference
from .sampling import _sample_tokens_unchecked
from .step_engine import StepEngine


class _Layer:
    """One block's weights, transposed for ``addmm`` on (B, features) rows."""

    def __init__(self, get, i):
        p = f"layers.{i}."
        self.norm1 = (get(p + "norm1_weight"), get(p + "norm1_bias"))
        self.norm2 = (get(p + "norm2_weight"), get(p + "norm2_bias"))
        self.qkv, self.qkv_bias = get(p + "qkv_weight").t().contiguous(), get(p + "qkv_bias")
        self.out, self.out_bias = get(p + "out_weight").t().contiguous(), get(p + "out_bias")
        self.fc, self.fc_bias = get(p + "fc_weight").t().contiguous(), get(p + "fc_bias")
        self.proj, self.proj_bias = get(p + "proj_weight").t().contiguous(), get(p + "proj_bias")


class TorchTransformerEngine(StepEngine):
    """Incremental SampleTransformer with a KV cache; ``cond`` is empty (the model takes none).
    ``cuda_graph=False`` keeps the loop eager on CUDA (to measure what the graph saves)."""

    def __init__(self, model, batch: int, cond: dict, cuda_graph: bool = True):
        if any(p.dtype != torch.float32 for p in model.parameters()):
            raise ValueError("the torch engine runs fp32 models; call model.float() first")
        self.model = model
        self.device = device = next(model.parameters()).device
        config, weights = model.export_weights()
        self.config = c = config

        def get(name):
            return torch.from_numpy(weights[name]).to(device)

        self.embedding = get("embedding")
        self.layers = [_Layer(get, i) for i in range(c["layers"])]
        self.norm = (get("norm_weight"), get("norm_bias"))
        self.head, self.head_bias = get("head_weight").t().contiguous(), get("head_bias")
        shape = (c["layers"], batch, c["heads"], c["context"], c["head_dim"])
        self.k_cache = torch.zeros(shape, device=device)
        self.v_cache = torch.zeros(shape, device=device)
        # Where the Triton kernel would not run, call the reference directly: the custom op's
        # dispatch alone costs ~70 us a call on a CPU, a fifth of a decode step.
        self.attention = decode_attention if use_triton(self.k_cache) else decode_attention_reference
        self.position = 0  # the next position to decode, on the host (block boundaries)...
        self.device_position = torch.zeros((), dtype=torch.long, device=device)  # ...and for the step
        self.conditioned = bool(c["cond_window"])
        if self.conditioned:
            self.latent = torch.zeros(batch, c["width"], device=device)
            self.recent = torch.zeros(batch, c["cond_patches"] * c["cond_hop"], device=device)  # waveform ring
            self.amplitude = get("context.amplitude")
        self.cuda_graph = cuda_graph and device.type == "cuda"
        self.graph = None
        self.eager_steps = 0

    def prefill(self, prompt):
        """Fill the caches with one parallel forward over the prompt (B, P): over its last receptive
        field only (from a block boundary), which is all the next logits can depend on, so a long
        prompt costs no more than that."""
        c, length = self.config, prompt.shape[1]
        start = max(0, length - self.model.receptive_field)
        start -= start % self.model.frame_hop
        x, kv = self.model.trunk(prompt[:, start:], keep_kv=True, start=start)
        first = max(start, length - c["context"])
        slots = torch.arange(first, length, device=self.device) % c["context"]
        for layer, (k, v) in enumerate(kv):
            self.k_cache[layer][:, :, slots] = k[:, :, first - start:]
            self.v_cache[layer][:, :, slots] = v[:, :, first - start:]
        if self.conditioned:
            size = self.recent.shape[1]
            oldest = max(0, length - size)
            self.recent.zero_()  # positions before the start are silence
            self.recent[:, torch.arange(oldest, length, device=self.device) % size] = self.amplitude[prompt[:, oldest:]]
            if length % c["cond_hop"]:  # the next position is inside the prompt's last block
                self.latent.copy_(self.model.context_latents(prompt[:, start:])[:, -1])
        self.position = length
        self.device_position.fill_(length)
        return self._logits(x[:, -1])

    def step(self, tokens):
        """tokens (B,) at the next position -> logits (B, classes) for the position after it."""
        self._begin_position()
        return self._decode(tokens)

    def sample_and_step(self, logits, u, params):
        """On CUDA, sampling and the decode step run as one CUDA graph: captured on the second call
        (the first runs eagerly, compiling the Triton kernels and initialising cuBLAS, the warm-up a
        capture needs) for this generation's sampling policy, then replayed: a few launches per
        sample instead of about a hundred. The returned logits are the graph's buffer."""
        if not self.cuda_graph:
            return super().sample_and_step(logits, u, params)
        if self.graph is None and self.eager_steps == 0:
            # The warm-up runs on the stream that will capture: cuBLAS sets up its handle and
            # workspace per stream, lazily, which must not happen during the capture.
            self.capture_stream = torch.cuda.Stream(self.device)
            self.capture_stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.capture_stream):
                out = super().sample_and_step(logits, u, params)
            torch.cuda.current_stream(self.device).wait_stream(self.capture_stream)
            self.eager_steps += 1
            return out
        self._begin_position()
        if self.graph is None:
            self.graph_logits, self.graph_u = logits.clone(), u.clone()
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph, stream=self.capture_stream):
                self.graph_tokens = _sample_tokens_unchecked(self.graph_logits, self.graph_u, params)
                self.graph_logits.copy_(self._decode(self.graph_tokens))
        elif logits is not self.graph_logits:
            self.graph_logits.copy_(logits)
        self.graph_u.copy_(u)
        self.graph.replay()
        return self.graph_tokens, self.graph_logits

    def _begin_position(self):
        """Host-side work before decoding position ``self.position``: a new block's latent (it reads
        only the samples before the block, all known by now)."""
        t = self.position
        if self.conditioned and t % self.config["cond_hop"] == 0:
            window = torch.roll(self.recent, -(t % self.recent.shape[1]), dims=1)  # oldest first
            self.latent.copy_(self.model.context_encoder(window)[:, -1])
        self.position = t + 1

    def _decode(self, tokens):
        """One position for every stream, reading the position from the device: no host syncs."""
        c = self.config
        batch, width, heads, head_dim, context = tokens.shape[0], c["width"], c["heads"], c["head_dim"], c["context"]
        position = self.device_position
        x = self.embedding[tokens]  # (B, W)
        if self.conditioned:
            x = x + self.latent
            ring = self.recent.shape[1]  # this sample's waveform, for the latents of later blocks
            self.recent.index_copy_(1, (position % ring).reshape(1), self.amplitude[tokens].unsqueeze(1))
        cos, sin = rope_tables(position, head_dim, c["rope_base"], torch.float32)  # (D / 2,)
        slot = (position % context).reshape(1)
        lengths = torch.clamp(position + 1, max=context).expand(batch)
        for i, layer in enumerate(self.layers):
            h = F.layer_norm(x, (width,), *layer.norm1)
            q, k, v = torch.addmm(layer.qkv_bias, h, layer.qkv).view(batch, 3, heads, head_dim).unbind(1)
            self.k_cache[i].index_copy_(2, slot, apply_rope(k, cos, sin).unsqueeze(2))
            self.v_cache[i].index_copy_(2, slot, v.unsqueeze(2))
            attended = self.attention(apply_rope(q, cos, sin), self.k_cache[i], self.v_cache[i], lengths)
            x = x + torch.addmm(layer.out_bias, attended.reshape(batch, width), layer.out)
            h = F.layer_norm(x, (width,), *layer.norm2)
            x = x + torch.addmm(layer.proj_bias, F.gelu(torch.addmm(layer.fc_bias, h, layer.fc)), layer.proj)
        self.device_position.add_(1)
        return self._logits(x)

    def _logits(self, x):
        """x (B, W) from the blocks -> logits (B, classes)."""
        return torch.addmm(self.head_bias, F.layer_norm(x, (x.shape[-1],), *self.norm), self.head)
