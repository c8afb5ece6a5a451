"""Training sample models (WaveNet, sample Transformers, code LMs) on the shared loop of
``fastwave.training.loop`` (AdamW, warm-up + cosine, bf16 on CUDA, checkpoints, exact resume, torchrun):

    history = train_sample_model(model, tokens, steps=2000, segment=4096, eval_tokens=valid)

Teacher forcing: each step draws ``batch_size`` random crops of ``segment + 1`` tokens from the
training streams, feeds ``crop[:, :-1]`` and takes the cross-entropy of the logits (B, classes, T)
against ``crop[:, 1:]``. A model with a ``burn_in`` (the conditioned sample Transformer: its CNN's
window) gets that many more tokens in front of each crop, as context only: their predictions would
read a latent of silence where generation reads real audio, so they stay out of the loss. The crops
of a step come from a generator seeded by (seed, step), so a resumed run draws what an uninterrupted
one would.
"""
from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from .._checks import check_int_arg
from .._checks import token_streams
from .evaluation import model_classes, evaluate_sample_model
from .stream_cond import stream_cond
from .loop import apply_update, run_training, step_generator

DEFAULT_SEGMENT = 4096
PAD = -1  # a crop's positions past the end of a short stream: not fed (token 0), not scored


def sample_crops(streams: list[torch.Tensor], batch_size: int, length: int, generator: torch.Generator,
                 align: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``batch_size`` random crops of ``length`` tokens -> (crops (B, length) int64, stream index (B,),
    start position (B,)).

    Every start position of the corpus that is a multiple of ``align`` (a locally conditioned model's
    cond_hop: crops start on a frame) is equally likely (a stream is picked in proportion to its
    number of crop starts), so long and short streams are seen per token alike. A stream shorter
    than ``length`` has one crop, itself, padded with PAD (-1) at the end."""
    starts_per_stream = torch.tensor([max((len(s) - length) // align + 1, 1) for s in streams])
    offsets = torch.randint(int(starts_per_stream.sum()), (batch_size,), generator=generator)
    ends = starts_per_stream.cumsum(0)
    which = torch.searchsorted(ends, offsets, right=True)
    starts = (offsets - (ends[which] - starts_per_stream[which])) * align
    crops = torch.full((batch_size, length), PAD, dtype=torch.int64)
    for row, (i, s) in enumerate(zip(which.tolist(), starts.tolist())):
        crop = streams[i][s:s + length]
        crops[row, :len(crop)] = crop
    return crops, which, starts


def train_sample_model(model, tokens, *, steps: int, batch_size: int = 8, segment: int = DEFAULT_SEGMENT,
                       lr: float = 3e-4, weight_decay: float = 0.01, warmup: int | None = None,
                       min_lr_ratio: float = 0.1, grad_clip: float | None = 1.0, seed: int = 0,
                       cond: dict | None = None, eval_tokens=None, eval_cond: dict | None = None,
                       eval_every: int | None = None, eval_at=(), eval_segment: int | None = None,
                       pad_short: bool = False, checkpoint_dir=None, resume: bool = False,
                       checkpoint_every: int | None = None, input_noise: float = 0.0, progress: bool = True,
                       max_seconds: float | None = None, ema_decay: float | None = None,
                       pause_at: int | None = None, settings: dict | None = None) -> dict:
    """Train ``model`` in place by teacher forcing on random crops of ``tokens``.

    model: a sample model on the device to train on (``model.config.classes``;
      forward(tokens (B, T)) -> logits (B, classes, T), logits[:, :, t] predicting token t + 1).
    tokens: (T,), (N, T) or a list of 1-D streams of any lengths, each >= segment + 1 (+ the model's
      burn_in) tokens (or >= 2 with ``pad_short``); int in [0, classes), numpy or torch.
    steps: optimizer updates (with ``max_seconds``: at most). segment: the model's input length per
      crop (the crop is segment + 1).
    max_seconds: a time budget for the updates (``run_training``: the schedule decays over seconds).
    lr / warmup / min_lr_ratio: the schedule of ``lr_at``; warmup defaults to min(1000, steps // 10).
    grad_clip: max global gradient norm (None: no clipping).
    seed: fixes the crops and dropout: on the CPU the same seed and initial weights give the same
      weights (the caller's RNG state is left alone).
    cond: a conditioned WaveNet's {"global_cond": ids (N,) or one id, "local_cond": one (channels, F_i)
      array per training stream} (fastwave.training.stream_cond; eval_cond likewise for eval_tokens). With
      local features every crop starts on a frame (a multiple of cond_hop).
    pad_short: streams shorter than a crop (clips of codes) are taken whole, padded at the end, their
      padded positions left out of the loss; the causal model never reads the padding.
    eval_tokens: streams for ``evaluate_sample_model`` (segment ``eval_segment``), run every
      ``eval_every`` steps (if given), after each step count in ``eval_at`` and after the last step.
    input_noise: the std, in token levels, of Gaussian noise added (rounded, clipped to the levels) to
      the tokens the model reads, never to its targets (FFTNet's noise injection, Jin et al. 2018):
      generating, a model reads its own draws, which stray from its training audio, and a model
      that never saw such input can lock into noise. Drawn per step from (seed, step), so resuming
      stays exact. 0: none.
    checkpoint_dir / resume / checkpoint_every: ``fastwave.training.loop.run_training``'s checkpoints; the
      best evaluation (lowest bits per sample) is kept as best.safetensors.
    ema_decay: also keep a moving average of the weights (``run_training``: ema.safetensors, scored at
      every evaluation as ema_bits_per_sample, ...); None: none. Under torchrun each rank
      takes batch_size / world of every step's crops; move the model to
      ``fastwave.training.loop.training_device()`` (this rank's GPU) first.
    pause_at: stop (checkpointed) after this many updates, to resume later (``run_training``).
    settings: the caller's own choices a resume must match, JSON-able (e.g. how it computed ``cond``):
      saved with the checkpoint beside this function's, and a resume under others is refused.
    -> {"loss": [float per step], "lr": [float per step], "eval": [{"step": s, "top1", "top5",
    "bits_per_sample", "nll_nats", "positions"}], "best"} where step s counts the updates made. The
    model is left in eval mode.
    """
    classes = model_classes(model)
    batch_size = check_int_arg(batch_size, "batch_size")
    segment = check_int_arg(segment, "segment")
    burn_in = getattr(model, "burn_in", 0)
    if pad_short and burn_in:
        raise ValueError("pad_short does not apply to a model with a burn_in (conditioned sample models)")
    streams = token_streams(tokens, classes, "tokens", min_length=2 if pad_short else burn_in + segment + 1)
    conds = stream_cond(model, cond, streams)
    if eval_tokens is not None:  # validated now rather than after the first eval_every steps
        eval_tokens = token_streams(eval_tokens, classes, "eval_tokens", min_length=2)
        stream_cond(model, eval_cond, eval_tokens)
    elif eval_cond is not None:
        raise ValueError("eval_cond was given without eval_tokens")
    if isinstance(input_noise, bool) or not isinstance(input_noise, (int, float)) or not 0 <= input_noise < math.inf:
        raise ValueError(f"input_noise must be a finite number of token levels >= 0, got {input_noise!r}")
    device = next(model.parameters()).device

    def batch_at(step: int, rank: int, world: int):
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} must split evenly over {world} processes")
        crops, which, starts = sample_crops(streams, batch_size, burn_in + segment + 1, step_generator(seed, step),
                                            align=conds.hop)
        noise = None
        if input_noise:  # its own generator stream: the crops are those of a run without noise
            draws = torch.randn(crops.shape[0], crops.shape[1] - 1, generator=step_generator(seed, step, stream=1))
            noise = (draws * input_noise).round().long()[rank::world]
        return crops[rank::world], which[rank::world], starts[rank::world], noise

    def loss_of(trained, batch) -> torch.Tensor:
        crops, which, starts, noise = batch
        kwargs = conds.for_windows(which, starts, crops.shape[1] - 1, device)
        return crop_loss(trained, crops.to(device), burn_in, None if noise is None else noise.to(device),
                         classes, **kwargs)

    def evaluate(trained) -> dict:
        return evaluate_sample_model(trained, eval_tokens, segment=eval_segment, cond=eval_cond)

    settings = {**(settings or {}), "batch_size": batch_size, "segment": segment, "pad_short": pad_short,
                "streams": len(streams), "tokens": sum(len(s) for s in streams)}
    if input_noise:  # only then: states written before the option existed still resume
        settings["input_noise"] = float(input_noise)
    return run_training(model, steps=steps, batch_at=batch_at, loss_of=loss_of, lr=lr, weight_decay=weight_decay,
                        warmup=warmup, min_lr_ratio=min_lr_ratio, grad_clip=grad_clip, seed=seed,
                        evaluate=None if eval_tokens is None else evaluate, eval_every=eval_every,
                        eval_at=eval_at,
                        select=None if eval_tokens is None else ("bits_per_sample", "min"),
                        checkpoint_dir=checkpoint_dir, checkpoint_every=checkpoint_every, resume=resume,
                        settings=settings, progress=progress, max_seconds=max_seconds, ema_decay=ema_decay,
                        pause_at=pause_at,
                        describe_eval=describe_eval)


def describe_eval(result: dict) -> str:
    """The line printed after an evaluation of a sample model (and of its weight average, if kept)."""
    line = f"eval {result['bits_per_sample']:.4f} bits/sample, top-1 {result['top1']:.3f}"
    if "ema_bits_per_sample" in result:
        line += f"; average {result['ema_bits_per_sample']:.4f} bits/sample, top-1 {result['ema_top1']:.3f}"
    return line


def crop_loss(model, crops: torch.Tensor, burn_in: int = 0, noise: torch.Tensor | None = None,
              classes: int | None = None, **cond) -> torch.Tensor:
    """Mean cross-entropy (nats per target) of crops (B, burn_in + segment + 1) on the model's device;
    the first ``burn_in`` predictions are context only, PAD targets are not scored. ``noise`` (B,
    burn_in + segment) int: offsets added to the inputs only, clipped to [0, classes)."""
    inputs, targets = crops[:, :-1].clamp_min(0), crops[:, 1:]  # PAD is fed as token 0, never scored
    if noise is not None:
        if classes is None:
            raise ValueError("crop_loss: noise needs classes (the levels the noisy inputs are clipped to)")
        inputs = torch.where(crops[:, :-1] == PAD, inputs, (inputs + noise).clamp(0, classes - 1))
    logits = model(inputs, **cond)
    return F.cross_entropy(logits[:, :, burn_in:].float(), targets[:, burn_in:], ignore_index=PAD)


def train_step(model, optimizer, crops: torch.Tensor, grad_clip: float | None, burn_in: int = 0,
               **cond) -> float:
    """One update on crops (see ``crop_loss``) -> the loss (nats per target)."""
    from .loop import autocast_for
    with autocast_for(crops.device):
        loss = crop_loss(model, crops, burn_in, **cond)
    return apply_update(model, optimizer, loss, grad_clip)


@contextmanager
def seeded_rng(seed: int, device: torch.device):
    """A fork of the global RNG (and the training device's) seeded with ``seed``: dropout and any other
    global draws in the model become reproducible without touching the caller's RNG state."""
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield
