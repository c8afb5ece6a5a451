"""The training loop every model shares (sample models, code LMs, classifiers), nanoGPT-style:

    history = run_training(model, steps=1000, batch_at=batch_at, loss_of=loss_of, lr=1e-3,
                           evaluate=evaluate, eval_every=100, checkpoint_dir="runs/x", resume=True)

AdamW (``make_optimizer``: no decay on biases and norm gains) with linear warm-up and cosine decay
(``lr_at``), gradient clipping, bf16 autocast on CUDA (parameters and optimizer state stay fp32; bf16
has fp32's exponent range, so no loss scaling is needed), a progress bar with the running loss,
evaluation every ``eval_every`` steps and after the last, and checkpoints.

**Exact resume.** A step's batch is a pure function of the step (``batch_at(step, rank, world)``, the
caller seeds it from (seed, step)), the learning rate a pure function of the step, and a checkpoint
holds the weights, AdamW's moments and the RNG state that dropout draws from. So a run stopped after
any checkpoint and resumed gives the weights of a run that never stopped: bit for bit on the CPU.
(Not with ``max_seconds``: a time budget's schedule and stop follow the clock.)

**Checkpoints** (``checkpoint_dir``): ``train_state.pt`` (weights, optimizer, step, RNG, history
and settings: all a resume reads, in one file, so it is always self-consistent; read back with
``torch.load(weights_only=True)``, so no pickled code runs), ``last.safetensors`` (the same weights,
loadable by ``fastwave.load_model``), ``best.safetensors`` (with ``select``: the weights of the best
evaluation), ``ema.safetensors`` (with ``ema_decay``: the running average of the weights) and
``history.json``. Each file is written to a temporary name and renamed, so a run
killed mid-write keeps the previous version. A checkpoint is written at every evaluation, every
``checkpoint_every`` steps and at the end. Ctrl-C stops the run at the end of the current step and
checkpoints it (a second Ctrl-C stops at once, without one); under torchrun, stop by killing the job
and resume from the last periodic checkpoint. ``resume=True`` continues from ``checkpoint_dir`` when
it holds a state (else starts afresh), and refuses a state written with other settings.

**Weight averaging** (``ema_decay``): an exponential moving average of the weights after every
update (``torch.optim.swa_utils.AveragedModel``), as generative models keep one: at a high learning
rate the weights of one checkpoint and the next can sound different, and their average is the
steadier model to ship. It never touches training (the trained weights are those of a run without
it), so it is not one of the settings a resume compares, and a run may start keeping one when
resumed: the average then begins at the resumed weights (``history["ema"]["from_step"]``). Its state
is in ``train_state.pt``, so a resume continues it exactly; each evaluation also scores it (the
metrics prefixed ``ema_``).

**Multi-GPU.** Started under ``torchrun`` (WORLD_SIZE > 1), the loop joins the process group (NCCL on
CUDA, gloo on the CPU), wraps the model in DistributedDataParallel and asks ``batch_at`` for this
rank's share of each global batch; gradients are averaged across ranks, so with equal shares the
update is that of the whole batch on one device. Rank 0 alone evaluates, shows progress and writes
checkpoints (to a folder every rank can read on resume); no rank returns before the last is written.
"""
from __future__ import annotations

import json
import math
import numbers
import os
import sys
import time
from contextlib import contextmanager, nullcontext
from typing import Callable

import torch
import torch.distributed as dist

from .._checks import check_int_arg
from .._files import open_atomically, write_atomically

STATE_FORMAT = 1
LAST, BEST, STATE, HISTORY = "last.safetensors", "best.safetensors", "train_state.pt", "history.json"
EMA = "ema.safetensors"


def lr_at(step: int, *, lr: float, steps: int, warmup: int, min_lr_ratio: float = 0.1,
          progress: float | None = None) -> float:
    """Learning rate before update ``step`` (0-based): linear warm-up lr * (step + 1) / (warmup + 1)
    for step < warmup, the peak ``lr`` at step == warmup, then a half cosine down to
    ``min_lr_ratio * lr`` at step == steps (and after).

    progress: how far through the decay the run is, in [0, 1] (clipped), where that is not counted in
    updates: a run with a time budget passes the fraction of its post-warm-up seconds spent. Default
    (step - warmup) / (steps - warmup)."""
    min_lr = min_lr_ratio * lr
    if step < warmup:
        return lr * (step + 1) / (warmup + 1)
    if progress is None:
        if step >= steps:
            return min_lr
        progress = (step - warmup) / (steps - warmup)  # warmup <= step < steps: no division by zero
    progress = min(max(progress, 0.0), 1.0)
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


def apply_update(model, optimizer, loss: torch.Tensor, grad_clip: float | None) -> float:
    """Backward ``loss``, clip the global gradient norm to ``grad_clip`` (None: no clipping), step
    -> the loss as a float."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    return loss.item()


def autocast_for(device: torch.device):
    """bf16 autocast on CUDA; nothing on the CPU (fp32 there: bf16 matmuls are slow on most CPUs)."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


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


def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A torch.Generator for the draws of one step, a pure function of (seed, step): batches that do
    not depend on how many steps ran before in this process is what makes resuming exact. ``stream``
    > 0 gives another independent sequence for the same step (e.g. augmentation beside the batch
    order); stream 0 is the one every loop used before streams existed."""
    import numpy as np

    words = np.random.SeedSequence([seed, step] + ([stream] if stream else [])).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(words[0]) | (int(words[1] & 0x7FFFFFFF) << 32))


def init_distributed() -> tuple[int, int]:
    """(rank, world size). Under torchrun (WORLD_SIZE > 1) joins the process group once (NCCL when
    CUDA is present, else gloo) and selects this process's GPU (LOCAL_RANK); else (0, 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return dist.get_rank(), dist.get_world_size()


def training_device(requested: str | None = None) -> torch.device:
    """The device to train on: this rank's GPU under torchrun with CUDA, else ``requested`` (default:
    CUDA when available, else the CPU)."""
    rank, world = init_distributed()
    if world > 1 and torch.cuda.is_available() and requested != "cpu":
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    if requested is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def run_training(model: torch.nn.Module, *, steps: int, batch_at: Callable, loss_of: Callable, lr: float,
                 weight_decay: float = 0.01, warmup: int | None = None, min_lr_ratio: float = 0.1,
                 grad_clip: float | None = 1.0, seed: int = 0, evaluate: Callable | None = None,
                 eval_every: int | None = None, eval_at=(), select: tuple[str, str] | None = None,
                 checkpoint_dir=None, checkpoint_every: int | None = None, resume: bool = False,
                 settings: dict | None = None, progress: bool = True, desc: str = "train",
                 describe_eval: Callable | None = None, max_seconds: float | None = None,
                 ema_decay: float | None = None, pause_at: int | None = None) -> dict:
    """Train ``model`` (on its device, in place) for ``steps`` updates, or for ``max_seconds``.

    batch_at(step, rank, world) -> this rank's batch of update ``step`` (0-based), a pure function of
      the step (see ``step_generator``); with world == 1, the whole batch.
    loss_of(model, batch) -> the mean loss (scalar tensor) of the batch; runs under bf16 autocast on
      CUDA; ``model`` may be the DistributedDataParallel wrapper, so call it, do not reach inside.
    lr / warmup / min_lr_ratio: ``lr_at``'s schedule; warmup defaults to min(1000, steps // 10).
    max_seconds: a time budget: train until the updates' summed wall seconds (``step_seconds``, without
      evaluations and checkpoints) reach it (the last update ends past it by less than one update), or
      ``steps`` updates, whichever comes first; the cosine decay is keyed to the fraction of the
      post-warm-up seconds spent, so every run ends its schedule at the budget however fast its
      updates are (equal-compute comparisons; budgeted training, Li et al. 2020). ``warmup`` must be
      given, in updates (a warm-up longer than the budget never reaches the decay). Not
      bit-reproducible (the schedule follows the clock); under torchrun the ranks' mean update time
      decides, so they stop together.
    evaluate(model) -> {name: float}: run (eval mode, no grad, rank 0) every ``eval_every`` steps, after
      each step count in ``eval_at`` (e.g. log-spaced, for a curve drawn on a log axis) and after the
      last one. select: (metric, "max" | "min") keeps the best evaluation's weights.
    checkpoint_dir / checkpoint_every / resume: see the module docstring. settings: the caller's
      hyperparameters (JSON-able), stored and compared on resume along with the loop's own.
    describe_eval(result) -> str: the line printed after an evaluation (default: every metric).
    ema_decay: keep an exponential moving average of the weights with this decay per update, in
      (0, 1) (e.g. 0.999: about the last 1,000 updates; None: none), written to checkpoint_dir (which
      it needs). See the module docstring.
    seed: seeds the RNG dropout draws from (a fork: the caller's RNG state is left alone).
    pause_at: stop after this many updates (counted from the run's start, resumed updates included),
      checkpointed as a Ctrl-C stop is, the schedule still planned over ``steps``: a resume without it
      continues exactly, so a chosen update's weights can be taken and the run go on. None: run to the end.

    -> {"loss": [float per step], "lr": [...], "step_seconds": [wall seconds of each update, without
    evaluations and checkpoints: a learning curve against training time sums them], "eval": [{"step": s,
    **metrics}], "best": {"step", metric} or None, and with ema_decay "ema": {"decay", "from_step"}};
    on resume, the lists include the steps before the stop. The model is left in eval mode.
    """
    steps = check_int_arg(steps, "steps")
    if max_seconds is not None:
        if isinstance(max_seconds, bool) or not isinstance(max_seconds, numbers.Real) or not 0 < max_seconds < math.inf:
            raise ValueError(f"max_seconds must be a positive number of seconds or None, got {max_seconds!r}")
        if warmup is None:  # its default is a tenth of ``steps``, which a budget makes only a bound
            raise ValueError("with max_seconds, give warmup (in updates): steps is only a bound then")
    warmup = min(1000, steps // 10) if warmup is None else check_int_arg(warmup, "warmup", minimum=0)
    if pause_at is not None and not 1 <= check_int_arg(pause_at, "pause_at") < steps:
        raise ValueError(f"pause_at must lie in [1, steps) = [1, {steps}), got {pause_at}: the run ends at steps anyway")
    if pause_at is not None and checkpoint_dir is None:
        raise ValueError("pause_at needs a checkpoint_dir: a paused run is only worth its checkpoint")
    check_hyperparameters(lr=lr, weight_decay=weight_decay, min_lr_ratio=min_lr_ratio, grad_clip=grad_clip, seed=seed)
    eval_every = None if eval_every is None else check_int_arg(eval_every, "eval_every")
    eval_at = {check_int_arg(done, "eval_at") for done in eval_at}
    checkpoint_every = None if checkpoint_every is None else check_int_arg(checkpoint_every, "checkpoint_every")
    if ema_decay is not None and (isinstance(ema_decay, bool) or not isinstance(ema_decay, numbers.Real)
                                  or not 0 < ema_decay < 1):
        raise ValueError(f"ema_decay must be a number in (0, 1) or None, got {ema_decay!r}")
    if ema_decay is not None and checkpoint_dir is None:
        raise ValueError("ema_decay needs a checkpoint_dir: the average is written there (ema.safetensors)")
    if select is not None and (evaluate is None or len(select) != 2 or select[1] not in ("max", "min")):
        raise ValueError(f"select must be (metric, 'max' | 'min') and needs evaluate, got {select!r}")
    if checkpoint_dir is not None:
        from ..models.checkpoint import check_saveable
        check_saveable(model)
        checkpoint_dir = os.fspath(checkpoint_dir)
        os.makedirs(checkpoint_dir, exist_ok=True)
    elif resume:
        raise ValueError("resume=True needs a checkpoint_dir to resume from")
    settings = {**(settings or {}), "steps": steps, "lr": lr, "weight_decay": weight_decay, "warmup": warmup,
                "min_lr_ratio": min_lr_ratio, "grad_clip": grad_clip, "seed": seed}
    if max_seconds is not None:  # only then, so states saved before budgets existed still resume
        settings["max_seconds"] = float(max_seconds)
    settings = json.loads(json.dumps(settings))  # as it will read back: tuples become lists

    rank, world = init_distributed()
    device = next(model.parameters()).device
    optimizer = make_optimizer(model, lr=lr, weight_decay=weight_decay)
    history = {"loss": [], "lr": [], "step_seconds": [], "eval": [], "best": None}
    saved = _load_state(checkpoint_dir, model, optimizer, settings, world) if resume else None
    start = 0 if saved is None else saved["step"]
    if pause_at is not None and pause_at <= start:
        raise ValueError(f"pause_at {pause_at}: {checkpoint_dir} has already made {start} updates")
    if saved is not None:
        history = saved["history"]
        history.setdefault("step_seconds", [None] * len(history["loss"]))  # a state saved before they were kept
    ema = _weight_average(model, ema_decay, saved, history, start, checkpoint_dir)
    trained = model
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.type == "cuda" and device.index != local:
            raise ValueError(f"under torchrun, rank {rank} must train on cuda:{local} (its LOCAL_RANK), but the "
                             f"model is on {device}: move it with model.to(fastwave.training.loop.training_device())")
        from torch.nn.parallel import DistributedDataParallel
        trained = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    cuda_devices = [device] if device.type == "cuda" else []
    clock = _Budget(max_seconds, warmup, history["step_seconds"])
    # the bar counts updates, or under a budget the seconds spent
    bar_args = (dict(total=steps, initial=start) if max_seconds is None
                else dict(total=float(max_seconds), initial=min(clock.elapsed, max_seconds),
                          bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s "
                                     "[{elapsed}<{remaining}{postfix}]"))

    def checkpoint(done: int) -> None:
        rng = _rng_states(device, world)  # collective under DDP: every rank calls it
        if checkpoint_dir is not None and rank == 0:
            _save_state(checkpoint_dir, model, optimizer, done, history, settings, rng, ema)

    from tqdm.auto import tqdm

    model.train()
    try:
        with torch.random.fork_rng(devices=cuda_devices), \
                tqdm(**bar_args, desc=desc, disable=not progress or rank != 0) as bar:
            if saved is None:
                torch.manual_seed(seed + rank)  # dropout: reproducible, different on each rank
            else:
                _set_rng(saved["rng"][rank], device)
            done = start
            with _deferred_interrupt(enabled=world == 1) as interrupted:
                running = history["loss"][-1] if history["loss"] else None
                for step in range(start, steps):
                    if clock.spent():
                        break
                    began = time.perf_counter()
                    step_lr = lr_at(step, lr=lr, steps=steps, warmup=warmup, min_lr_ratio=min_lr_ratio,
                                    progress=clock.progress())
                    for group in optimizer.param_groups:
                        group["lr"] = step_lr
                    with autocast_for(device):
                        loss = loss_of(trained, batch_at(step, rank, world))
                    loss = apply_update(model, optimizer, loss.float(), grad_clip)
                    if ema is not None:
                        ema.update_parameters(model)
                    seconds = time.perf_counter() - began  # the update alone (loss.item() synced)
                    if world > 1:  # the whole batch's loss, not this rank's share; one clock for every rank
                        loss, seconds = _mean_over_ranks([loss, seconds], device)
                    history["loss"].append(loss)
                    history["lr"].append(step_lr)
                    history["step_seconds"].append(seconds)
                    clock.add(seconds)
                    running = loss if running is None else 0.95 * running + 0.05 * loss  # smoothed for display
                    bar.set_postfix(loss=f"{running:.4f}", lr=f"{step_lr:.2e}", refresh=False)
                    bar.update(1 if max_seconds is None else min(seconds, max(max_seconds - bar.n, 0.0)))
                    done = step + 1
                    last = done == steps or clock.spent()
                    evaluating = evaluate is not None and (last or done in eval_at
                                                          or (eval_every and done % eval_every == 0))
                    if evaluating:
                        _evaluate(model, evaluate, done, history, select, rank, world, checkpoint_dir,
                                  bar if progress and rank == 0 else None, describe_eval, ema)
                    stopping, pausing = interrupted(), done == pause_at
                    if evaluating or stopping or pausing or last or (checkpoint_every and done % checkpoint_every == 0):
                        checkpoint(done)
                    if stopping:
                        raise KeyboardInterrupt
                    if last or pausing:
                        break
            if world > 1:  # no rank returns before rank 0's last checkpoint is on disk
                dist.barrier()
    finally:
        model.eval()  # also when a step raises or the run is interrupted
    return history


@contextmanager
def _deferred_interrupt(enabled: bool = True):
    """Within: the first Ctrl-C (SIGINT) only raises a flag, read by calling the yielded function, so
    the loop stops at the end of a whole step and saves it (a step cut in half, its dropout drawn or
    some parameters updated, would not resume exactly); a second Ctrl-C interrupts at once. Outside
    the main thread signals cannot be caught, and under torchrun (``enabled`` False) the launcher
    handles them: there, Ctrl-C interrupts as usual."""
    import signal
    import threading

    flag = []
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum, frame):
        if flag:
            raise KeyboardInterrupt
        flag.append(signum)
        print("\nfastwave: stopping after this step (Ctrl-C again to stop now, without a checkpoint)",
              file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: bool(flag)
    finally:
        signal.signal(signal.SIGINT, previous)


def _mean_over_ranks(values: list[float], device: torch.device) -> list[float]:
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return (tensor / dist.get_world_size()).tolist()


class _Budget:
    """The time budget of a run (``max_seconds``; None: none), kept from the updates' seconds: those
    of a resumed run's earlier updates count, so a resume continues the same schedule."""

    def __init__(self, max_seconds: float | None, warmup: int, step_seconds: list):
        # (None entries: a state saved before updates were timed; it holds no max_seconds, so
        # _load_state refuses to resume it with one, and the sums only serve the display then.)
        self.max_seconds, self.warmup = max_seconds, warmup
        self.updates = len(step_seconds)
        self.elapsed = float(sum(s for s in step_seconds if s is not None))
        self.warmup_seconds = float(sum(s for s in step_seconds[:warmup] if s is not None))

    def add(self, seconds: float) -> None:
        self.elapsed += seconds
        if self.updates < self.warmup:
            self.warmup_seconds += seconds
        self.updates += 1

    def spent(self) -> bool:
        return self.max_seconds is not None and self.elapsed >= self.max_seconds

    def progress(self) -> float | None:
        """The fraction of the post-warm-up seconds spent (None without a budget: lr_at counts updates)."""
        if self.max_seconds is None:
            return None
        left = self.max_seconds - self.warmup_seconds
        return 1.0 if left <= 0 else (self.elapsed - self.warmup_seconds) / left


def _weight_average(model, decay, saved, history, start: int, checkpoint_dir):
    """The run's AveragedModel (None without ``decay``): restored from ``saved`` where it kept one,
    else begun at the model's present weights (step ``start``). A state that keeps an average is
    resumed with the same decay, or refused: its average would silently end or change meaning."""
    kept = saved.get("ema") if saved is not None else None
    if kept is not None and decay != kept["decay"]:
        raise ValueError(f"{checkpoint_dir} keeps a weight average with ema_decay {kept['decay']}: resume it "
                         f"with that ema_decay, not {decay!r}")
    if decay is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
    ema.eval()  # never trained: evaluated as it would be shipped (no dropout)
    if kept is None:
        ema.update_parameters(model)  # the first update copies: the average begins at these weights
        history["ema"] = {"decay": decay, "from_step": start}
    else:
        ema.load_state_dict(kept["state"])
    return ema


def _evaluate(model, evaluate, done, history, select, rank, world, checkpoint_dir, bar, describe,
              ema=None) -> None:
    if rank == 0:
        model.eval()
        with torch.no_grad():
            result = {name: float(value) for name, value in evaluate(model).items()}
            if ema is not None:
                result.update({f"ema_{name}": float(value) for name, value in evaluate(ema.module).items()})
        model.train()
        history["eval"].append({"step": done, **result})
        if select is not None:
            name, mode = select
            if name not in result:
                raise ValueError(f"select names {name!r} but evaluate returned {sorted(result)}")
            best = history["best"]
            better = best is None or (result[name] > best[name] if mode == "max" else result[name] < best[name])
            if better:  # the file first: history never names weights that were not written
                if checkpoint_dir is not None:
                    _save_model(model, os.path.join(checkpoint_dir, BEST))  # atomic
                history["best"] = {"step": done, name: result[name]}
        if bar is not None:
            line = describe(result) if describe else ", ".join(f"{k} {v:.4f}" for k, v in result.items())
            bar.write(f"step {done}: {line}")
    if world > 1:
        dist.barrier()  # the other ranks wait for rank 0's evaluation


def _rng_states(device: torch.device, world: int) -> list:
    """[per rank: {"cpu": ByteTensor, "cuda": ByteTensor or None}] (gathered to every rank under DDP)."""
    state = {"cpu": torch.get_rng_state(),
             "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}
    if world == 1:
        return [state]
    states = [None] * world
    dist.all_gather_object(states, state)
    return states


def _set_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)


def _save_model(model, path: str) -> None:
    from ..models.checkpoint import save_checkpoint
    save_checkpoint(model, path)


def _save_state(folder: str, model, optimizer, step: int, history: dict, settings: dict, rng: list,
                ema=None) -> None:
    # The weights go into the state too: resuming reads this one file, so a run killed between the
    # two renames cannot pair one step's weights with another step's optimizer.
    weights = {k: v.detach().to("cpu") for k, v in model.state_dict().items()}
    state = {"format": STATE_FORMAT, "step": step, "model": weights, "optimizer": optimizer.state_dict(), "rng": rng,
             "history": history, "settings": settings, "model_config": json.dumps(model.config.to_dict())}
    if ema is not None:
        state["ema"] = {"decay": history["ema"]["decay"],
                        "state": {k: v.detach().to("cpu") for k, v in ema.state_dict().items()}}
        _save_model(ema.module, os.path.join(folder, EMA))
    _save_model(model, os.path.join(folder, LAST))  # atomic, as every write below
    write_atomically(os.path.join(folder, STATE), lambda path: torch.save(state, path))
    text = json.dumps({"step": step, "settings": settings, **history}, indent=1)
    with open_atomically(os.path.join(folder, HISTORY)) as f:
        f.write(text)


def _load_state(folder: str, model, optimizer, settings: dict, world: int) -> dict | None:
    """Restore model and optimizer from ``folder`` -> the saved state, or None if it holds none."""
    path = os.path.join(folder, STATE)
    if not os.path.exists(path):
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated or foreign: refuse rather than silently start over
        raise ValueError(f"{path} is not a readable training state: {err}") from None
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise ValueError(f"{path} is not a fastwave training state (format {STATE_FORMAT})")
    if state["model_config"] != json.dumps(model.config.to_dict()):
        raise ValueError(f"{path} was written for another model config: {state['model_config']}")
    differing = sorted(k for k in set(settings) | set(state["settings"])
                       if settings.get(k) != state["settings"].get(k))
    if differing:
        raise ValueError(f"{folder} was trained with other settings, so resuming would not be exact: " +
                         ", ".join(f"{k}: saved {state['settings'].get(k)!r}, now {settings.get(k)!r}"
                                   for k in differing))
    if len(state["rng"]) != world:
        raise ValueError(f"{folder} was written by {len(state['rng'])} processes; resume it with as many")
    model.load_state_dict(state["model"], strict=True)
    optimizer.load_state_dict(state["optimizer"])
    return state
