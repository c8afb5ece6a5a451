"""One training loop for every sample model (WaveNet, sample Transformers), nanoGPT-style.

    history = train_sample_model(model, tokens, steps=2000, segment=4096, eval_tokens=valid)

Teacher forcing: each step draws ``batch_size`` random crops of ``segment + 1`` tokens from the
training streams, feeds ``crop[:, :-1]`` and takes the cross-entropy of the logits (B, classes, T)
against ``crop[:, 1:]``. A model with a ``burn_in`` (the conditioned sample Transformer: its CNN's
window) gets that many more tokens in front of each crop, as context only: their predictions would
read a latent of silence where generation reads real audio, so they stay out of the loss. AdamW (weight decay on matrices only), linear warm-up then cosine decay
(``lr_at``), gradient clipping, bf16 autocast on CUDA. The pieces (``lr_at``, ``make_optimizer``,
``sample_crops``) are separate so that other loops (checkpoint resume, other models) reuse them;
the learning rate is a pure function of the step, so resuming needs no scheduler state.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from ._checks import check_int_arg
from .evaluation import (
    model_classes,
    evaluate_sample_model,
    stream_global_cond,
    token_streams,
)

DEFAULT_SEGMENT = 4096
PAD = -1  # a crop's positions past the end of a short stream: not fed (token 0), not scored


def lr_at(step: int, *, lr: float, steps: int, warmup: int, min_lr_ratio: float = 0.1) -> float:
    """Learning rate before update ``step`` (0-based): linear warm-up lr * (step + 1) / (warmup + 1)
    for step < warmup, the peak ``lr`` at step == warmup, then a half cosine down to
    ``min_lr_ratio * lr`` at step == steps (and after)."""
    min_lr = min_lr_ratio * lr
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if step >= steps:
        return min_lr
    progress = (step - warmup) / (steps - warmup)  # warmup <= step < steps: no division by zero
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


def make_optimizer(model: torch.nn.Module, *, lr: float, weight_decay: float,
                   betas: tuple[float, float] = (0.9, 0.95)) -> torch.optim.AdamW:
    """AdamW decaying weight matrices, conv kernels and embeddings (dim >= 2) but not biases or
    norm gains (dim < 2): decaying those only shrinks offsets and scales the model needs."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def sample_crops(streams: list[torch.Tensor], batch_size: int, length: int,
                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random crops of ``length`` tokens -> (crops (B, length) int64, stream index (B,)).

    Every start position of the corpus is equally likely (a stream is picked in proportion to its
    number of crop starts), so long and short streams are seen per token alike. A stream shorter
    than ``length`` has one crop, itself, padded with PAD (-1) at the end."""
    starts_per_stream = torch.tensor([max(len(s) - length + 1, 1) for s in streams])
    offsets = torch.randint(int(starts_per_stream.sum()), (batch_size,), generator=generator)
    ends = starts_per_stream.cumsum(0)
    which = torch.searchsorted(ends, offsets, right=True)
    starts = offsets - (ends[which] - starts_per_stream[which])
    crops = torch.full((batch_size, length), PAD, dtype=torch.int64)
    for row, (i, s) in enumerate(zip(which.tolist(), starts.tolist())):
        crop = streams[i][s:s + length]
        crops[row, :len(crop)] = crop
    return crops, which


def train_sample_model(model, tokens, *, steps: int, batch_size: int = 8, segment: int = DEFAULT_SEGMENT,
                       lr: float = 3e-4, weight_decay: float = 0.01, warmup: int | None = None,
                       min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0, seed: int = 0,
                       cond: dict | None = None, eval_tokens=None, eval_cond: dict | None = None,
                       eval_every: int | None = None, eval_segment: int | None = None,
                       pad_short: bool = False, progress: bool = True) -> dict:
    """Train ``model`` in place by teacher forcing on random crops of ``tokens``.

    model: a sample model on the device to train on (``model.config.classes``;
      forward(tokens (B, T)) -> logits (B, classes, T), logits[:, :, t] predicting token t + 1).
    tokens: (T,), (N, T) or a list of 1-D streams of any lengths, each >= segment + 1 (+ the model's
      burn_in) tokens (or >= 2 with ``pad_short``); int in [0, classes), numpy or torch.
    steps: optimizer updates. segment: the model's input length per crop (the crop is segment + 1).
    lr / warmup / min_lr_ratio: the schedule of ``lr_at``; warmup defaults to min(1000, steps // 10).
    grad_clip: max global gradient norm (None: no clipping).
    seed: crops come from a torch.Generator seeded with it, and the global RNG (dropout) is seeded
      with it inside a fork, leaving the caller's RNG state alone: on the CPU the same seed and
      initial weights give the same weights.
    cond: {"global_cond": ids (N,) or one id}, one id per training stream, for a WaveNet with global
      conditioning (eval_cond likewise for eval_tokens); models with local conditioning are refused.
    pad_short: streams shorter than a crop (clips of codes) are taken whole, padded at the end, their
      padded positions left out of the loss; the causal model never reads the padding.
    eval_tokens: streams for ``evaluate_sample_model`` (segment ``eval_segment``), run every
      ``eval_every`` steps (if given) and after the last step.
    -> {"loss": [float per step], "lr": [float per step], "eval": [{"step": s, "top1", "top5",
    "bits_per_sample", "nll_nats", "positions"}]} where step s counts the updates made. The model is
    left in eval mode.
    """
    classes = model_classes(model)
    steps = check_int_arg(steps, "steps")
    batch_size = check_int_arg(batch_size, "batch_size")
    segment = check_int_arg(segment, "segment")
    warmup = min(1000, steps // 10) if warmup is None else check_int_arg(warmup, "warmup", minimum=0)
    check_hyperparameters(lr=lr, weight_decay=weight_decay, min_lr_ratio=min_lr_ratio, grad_clip=grad_clip,
                          seed=seed)
    burn_in = getattr(model, "burn_in", 0)
    if pad_short and burn_in:
        raise ValueError("pad_short does not apply to a model with a burn_in (conditioned sample models)")
    streams = token_streams(tokens, classes, "tokens", min_length=2 if pad_short else burn_in + segment + 1)
    global_ids = stream_global_cond(model, cond, len(streams))
    if eval_tokens is not None:  # validated now rather than after the first eval_every steps
        eval_tokens = token_streams(eval_tokens, classes, "eval_tokens", min_length=2)
        stream_global_cond(model, eval_cond, len(eval_tokens))
    elif eval_cond is not None:
        raise ValueError("eval_cond was given without eval_tokens")
    if eval_every is not None:
        eval_every = check_int_arg(eval_every, "eval_every")

    device = next(model.parameters()).device
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    history = {"loss": [], "lr": [], "eval": []}
    from tqdm.auto import tqdm

    model.train()
    try:
        with seeded_rng(seed, device), tqdm(range(steps), desc="train", disable=not progress) as bar:
            running = None
            for step in bar:
                step_lr = lr_at(step, lr=lr, steps=steps, warmup=warmup, min_lr_ratio=min_lr_ratio)
                for group in optimizer.param_groups:
                    group["lr"] = step_lr
                crops, which = sample_crops(streams, batch_size, burn_in + segment + 1, generator)
                kwargs = {} if global_ids is None else {"global_cond": global_ids[which].to(device)}
                loss = train_step(model, optimizer, crops.to(device), grad_clip, burn_in, **kwargs)
                history["loss"].append(loss)
                history["lr"].append(step_lr)
                running = loss if running is None else 0.95 * running + 0.05 * loss  # smoothed for display
                bar.set_postfix(loss=f"{running:.4f}", lr=f"{step_lr:.2e}", refresh=False)
                done = step + 1
                if eval_tokens is not None and (done == steps or (eval_every and done % eval_every == 0)):
                    result = evaluate_sample_model(model, eval_tokens, segment=eval_segment, cond=eval_cond)
                    history["eval"].append({"step": done, **result})
                    if progress:
                        bar.write(f"step {done}: eval {result['bits_per_sample']:.4f} bits/sample, "
                                  f"top-1 {result['top1']:.3f}")
    finally:
        model.eval()  # also when a step raises or the loop is interrupted
    return history


def train_step(model, optimizer, crops: torch.Tensor, grad_clip: float | None, burn_in: int = 0,
               **cond) -> float:
    """One update on crops (B, burn_in + segment + 1) on the model's device -> the loss (nats per
    target); the first ``burn_in`` predictions are context only, PAD targets are not scored."""
    inputs, targets = crops[:, :-1].clamp_min(0), crops[:, 1:]  # PAD is fed as token 0, never scored
    # bf16 autocast on CUDA (the parameters and the optimizer stay fp32); plain fp32 on the CPU.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=crops.device.type == "cuda"):
        logits = model(inputs, **cond)
    loss = F.cross_entropy(logits[:, :, burn_in:].float(), targets[:, burn_in:], ignore_index=PAD)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


@contextmanager
def seeded_rng(seed: int, device: torch.device):
    """A fork of the global RNG (and the training device's) seeded with ``seed``: dropout and any other
    global draws in the model become reproducible without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def check_hyperparameters(*, lr=1e-3, weight_decay=0.0, min_lr_ratio=0.0, grad_clip=None, seed=0) -> None:
    """The optimiser settings every loop takes: lr > 0, weight_decay >= 0, min_lr_ratio in [0, 1],
    grad_clip > 0 or None, seed an int >= 0 (finite numbers, bool refused)."""
    def number(value, name):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
        return value

    if number(lr, "lr") <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    if number(weight_decay, "weight_decay") < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
    if not 0 <= number(min_lr_ratio, "min_lr_ratio") <= 1:
        raise ValueError(f"min_lr_ratio must lie in [0, 1], got {min_lr_ratio!r}")
    if grad_clip is not None and number(grad_clip, "grad_clip") <= 0:
        raise ValueError(f"grad_clip must be > 0 or None, got {grad_clip!r}")
    check_int_arg(seed, "seed", minimum=0)
