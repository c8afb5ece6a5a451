"""The shared training loop: checkpoints, exact resume, refusal of a mismatched resume, and
data-parallel training under torchrun (gloo on the CPU) matching one process."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

import fastwave
from fastwave.training.sample_models import crop_loss, train_sample_model
from fastwave.training.loop import BEST, HISTORY, LAST, STATE, lr_at, run_training, step_generator

HERE = os.path.dirname(__file__)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_transformer(seed=0, dropout=0.1):
    torch.manual_seed(seed)
    return fastwave.SampleTransformer(layers=1, heads=1, width=16, context=8, classes=8, dropout=dropout)


def random_batch(step, rank, world, batch=4):
    """Crops of 9 tokens, a pure function of the step; this rank's rows."""
    crops = torch.randint(8, (batch, 9), generator=step_generator(7, step))
    return crops[rank::world]


def loss_of(model, crops):
    return crop_loss(model, crops)


def train(model, steps=6, **kw):
    return run_training(model, steps=steps, batch_at=random_batch, loss_of=loss_of, lr=1e-2, warmup=2,
                        progress=False, **kw)


def weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_step_generator_is_a_pure_function_of_seed_and_step():
    draw = lambda seed, step: torch.rand(4, generator=step_generator(seed, step))  # noqa: E731
    assert torch.equal(draw(0, 5), draw(0, 5))
    assert not torch.equal(draw(0, 5), draw(0, 6))
    assert not torch.equal(draw(0, 5), draw(1, 5))


def test_checkpoint_files_and_history(tmp_path):
    model = tiny_transformer()
    evaluations = []

    def evaluate(m):
        evaluations.append(m.training)
        return {"score": float(len(evaluations) % 2)}  # 1, 0, 1: the best is the first

    history = train(model, evaluate=evaluate, eval_every=2, select=("score", "max"), checkpoint_dir=tmp_path)
    assert evaluations == [False, False, False]  # evaluated in eval mode
    assert [e["step"] for e in history["eval"]] == [2, 4, 6]
    assert history["best"] == {"step": 2, "score": 1.0}
    assert len(history["loss"]) == len(history["lr"]) == 6
    assert history["lr"] == [lr_at(s, lr=1e-2, steps=6, warmup=2, min_lr_ratio=0.1) for s in range(6)]
    assert {LAST, BEST, STATE, HISTORY} <= set(os.listdir(tmp_path))
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]
    last = fastwave.load_model(tmp_path / LAST)
    assert_same(weights(last), weights(model))
    saved = json.loads((tmp_path / HISTORY).read_text())
    assert saved["step"] == 6 and saved["loss"] == history["loss"]
    assert not model.training


@pytest.fixture
def one_second_updates(monkeypatch):
    """A fake clock that reads one second later at every read: the loop reads it before and after
    each update, so every update takes exactly 1 s."""
    import fastwave.training.loop as loop

    ticks = {"now": 0.0}

    def perf_counter():
        ticks["now"] += 1.0
        return ticks["now"]

    monkeypatch.setattr(loop.time, "perf_counter", perf_counter)
    return ticks  # a test moves the clock on by adding to ticks["now"]


def test_step_seconds_time_the_updates_alone(one_second_updates):
    """An evaluation jumps the clock by 100 s: the updates' times leave the evaluations out (a
    learning curve against training time must)."""
    clock = iter(range(10_000))

    def evaluate(m):
        one_second_updates["now"] += 100.0
        return {"score": float(next(clock))}

    history = train(tiny_transformer(), evaluate=evaluate, eval_every=2)
    assert history["step_seconds"] == [1.0] * 6


def time_progress(step, *, warmup, budget):
    """The decay's progress before update ``step`` of 1-second updates: post-warm-up seconds spent
    over those left after the warm-up."""
    return (step - warmup) / (budget - warmup)


def test_a_time_budget_stops_the_run_and_keys_the_decay_to_seconds(one_second_updates):
    """max_seconds=4.5 of 1-s updates: five updates (the last ends past the budget), the last one
    evaluated; the cosine decays over the seconds after the warm-up, not over ``steps``; with a
    budget longer than ``steps`` the run stops at ``steps``."""
    kw = dict(lr=1e-2, steps=100, warmup=2, min_lr_ratio=0.1)
    history = train(tiny_transformer(), steps=100, max_seconds=4.5, evaluate=lambda m: {"x": 0.0})
    assert len(history["loss"]) == 5 and history["step_seconds"] == [1.0] * 5
    assert [e["step"] for e in history["eval"]] == [5]
    expected = [lr_at(s, **kw, progress=None if s < 2 else time_progress(s, warmup=2, budget=4.5)) for s in range(5)]
    assert history["lr"] == pytest.approx(expected)
    assert history["lr"][2] == pytest.approx(1e-2)  # the peak after the warm-up
    assert history["lr"][4] < lr_at(4, **kw)  # further down than 4 of 100 updates would be
    assert len(train(tiny_transformer(), steps=3, max_seconds=1000.0)["loss"]) == 3


def test_a_time_budget_resumes_with_the_seconds_already_spent(tmp_path, one_second_updates):
    """A crash at update 4, resumed from the checkpoint of update 3 (past the warm-up): the resumed
    run counts the seconds already spent, warm-up's included, so it ends where and as the run that
    never stopped did (the fake clock makes both exact)."""
    straight_model = tiny_transformer()
    straight = train(straight_model, steps=100, max_seconds=5.5)

    def crash_at_step_4(step, rank, world):
        if step == 4:
            raise RuntimeError("node lost")
        return random_batch(step, rank, world)

    with pytest.raises(RuntimeError):
        run_training(tiny_transformer(), steps=100, max_seconds=5.5, batch_at=crash_at_step_4, loss_of=loss_of,
                     lr=1e-2, warmup=2, progress=False, checkpoint_dir=tmp_path, checkpoint_every=3)
    resumed_model = tiny_transformer(seed=5)
    resumed = train(resumed_model, steps=100, max_seconds=5.5, checkpoint_dir=tmp_path, resume=True)
    assert len(resumed["loss"]) == 6 and resumed["lr"] == pytest.approx(straight["lr"])
    assert_same(weights(resumed_model), weights(straight_model))
    with pytest.raises(ValueError, match="max_seconds"):  # another budget is another run
        train(tiny_transformer(), steps=100, max_seconds=9.0, checkpoint_dir=tmp_path, resume=True)


@pytest.mark.parametrize("bad", [0, -1.0, float("nan"), float("inf"), True, "60"])
def test_a_bad_time_budget_is_refused(bad):
    with pytest.raises(ValueError, match="max_seconds must be a positive number"):
        train(tiny_transformer(), max_seconds=bad)


def test_a_time_budget_needs_a_warmup_in_updates():
    """steps is only a bound under a budget, so a warm-up of a tenth of it would mean nothing."""
    with pytest.raises(ValueError, match="give warmup"):
        run_training(tiny_transformer(), steps=100, max_seconds=10.0, batch_at=random_batch, loss_of=loss_of,
                     lr=1e-2, progress=False)
    history = train(tiny_transformer(), steps=3, max_seconds=np.float32(1000.0))  # numpy numbers are numbers
    assert len(history["loss"]) == 3


def test_eval_at_adds_evaluations_at_given_step_counts():
    """Evaluations at eval_every's multiples, at each of eval_at's counts, and after the last step, each
    once; a step count that is not a positive int is refused before training."""
    seen = []
    history = train(tiny_transformer(), steps=12, evaluate=lambda m: seen.append(1) or {"n": float(len(seen))},
                    eval_every=5, eval_at=[1, 2, 10, 12, 40])
    assert [e["step"] for e in history["eval"]] == [1, 2, 5, 10, 12]
    with pytest.raises(ValueError, match="eval_at must be an int >= 1"):
        train(tiny_transformer(), evaluate=lambda m: {}, eval_at=[0])


def ctrl_c():
    os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("where", ["batch", "forward"])
def test_ctrl_c_stops_after_the_step_and_resumes_exactly(tmp_path, where):
    """Ctrl-C in the middle of update 3 (before its batch, or after the forward has drawn its
    dropout): the step completes and is saved, and the resumed run ends where an uninterrupted one does."""
    straight = tiny_transformer()
    train(straight)

    def batch_at(step, rank, world):
        if step == 2 and where == "batch":
            ctrl_c()
        return random_batch(step, rank, world)

    def interrupted_loss(model, crops):
        loss = loss_of(model, crops)
        if len(calls) == 2 and where == "forward":
            ctrl_c()
        calls.append(1)
        return loss

    calls = []
    with pytest.raises(KeyboardInterrupt):
        run_training(tiny_transformer(), steps=6, batch_at=batch_at, loss_of=interrupted_loss, lr=1e-2, warmup=2,
                     progress=False, checkpoint_dir=tmp_path)
    assert torch.load(tmp_path / STATE, weights_only=True)["step"] == 3
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    resumed = tiny_transformer(seed=123)  # other initial weights: all must come from the checkpoint
    history = train(resumed, checkpoint_dir=tmp_path, resume=True)
    assert_same(weights(resumed), weights(straight))  # dropout RNG, AdamW moments, schedule, data
    assert len(history["loss"]) == 6


def test_pause_at_stops_at_the_update_and_a_resume_ends_where_a_straight_run_does(tmp_path):
    """pause_at: the weights (and their average) after exactly that update, saved; the schedule is
    still the whole run's, so resuming without it gives the uninterrupted run's weights."""
    from fastwave.training.loop import EMA

    straight, paused_ref = tiny_transformer(), tiny_transformer()
    train(straight, ema_decay=0.5, checkpoint_dir=tmp_path / "straight")
    train(paused_ref, steps=6, pause_at=4, ema_decay=0.5, checkpoint_dir=tmp_path / "paused")
    state = torch.load(tmp_path / "paused" / STATE, weights_only=True)
    assert state["step"] == 4
    history = json.loads((tmp_path / "paused" / HISTORY).read_text())
    assert history["lr"] == [lr_at(s, lr=1e-2, steps=6, warmup=2) for s in range(4)]  # the 6-step schedule
    with pytest.raises(ValueError, match="already made 4 updates"):
        train(tiny_transformer(), pause_at=3, checkpoint_dir=tmp_path / "paused", resume=True)
    resumed = tiny_transformer(seed=123)
    train(resumed, ema_decay=0.5, checkpoint_dir=tmp_path / "paused", resume=True)
    assert_same(weights(resumed), weights(straight))
    assert_same(fastwave.load_model(str(tmp_path / "paused" / EMA)).state_dict(),
                fastwave.load_model(str(tmp_path / "straight" / EMA)).state_dict())


@pytest.mark.parametrize("pause_at, checkpoints, message", [(6, True, r"\[1, 6\)"), (0, True, "int >= 1"),
                                                            (3, False, "needs a checkpoint_dir")])
def test_pause_at_refuses_what_would_not_pause(tmp_path, pause_at, checkpoints, message):
    with pytest.raises(ValueError, match=message):
        train(tiny_transformer(), pause_at=pause_at, checkpoint_dir=tmp_path if checkpoints else None)


def test_resume_from_a_periodic_checkpoint_after_a_crash(tmp_path):
    straight = tiny_transformer()
    train(straight, steps=5)

    def crash_at_step_3(step, rank, world):
        if step == 3:
            raise RuntimeError("node lost")
        return random_batch(step, rank, world)

    with pytest.raises(RuntimeError):
        run_training(tiny_transformer(), steps=5, batch_at=crash_at_step_3, loss_of=loss_of, lr=1e-2, warmup=2,
                     progress=False, checkpoint_dir=tmp_path, checkpoint_every=2)
    resumed = tiny_transformer(seed=5)
    train(resumed, steps=5, checkpoint_dir=tmp_path, resume=True)
    assert_same(weights(resumed), weights(straight))


def test_resume_without_a_state_starts_afresh_and_a_finished_run_does_nothing(tmp_path):
    a, b = tiny_transformer(), tiny_transformer()
    train(a, checkpoint_dir=tmp_path, resume=True)
    train(b)
    assert_same(weights(a), weights(b))
    c = tiny_transformer(seed=9)
    history = train(c, checkpoint_dir=tmp_path, resume=True)
    assert_same(weights(c), weights(a))
    assert len(history["loss"]) == 6


def test_resume_refuses_other_settings_or_model(tmp_path):
    train(tiny_transformer(), checkpoint_dir=tmp_path)
    with pytest.raises(ValueError, match="other settings.*lr"):
        run_training(tiny_transformer(), steps=6, batch_at=random_batch, loss_of=loss_of, lr=2e-2, warmup=2,
                     progress=False, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="another model config"):
        train(fastwave.SampleTransformer(layers=2, heads=1, width=16, context=8, classes=8),
              checkpoint_dir=tmp_path, resume=True)
    (tmp_path / STATE).write_bytes(b"not a state")
    with pytest.raises(ValueError, match="not a readable training state"):
        train(tiny_transformer(), checkpoint_dir=tmp_path, resume=True)


def test_bad_arguments():
    model = tiny_transformer()
    with pytest.raises(ValueError, match="checkpoint_dir"):
        train(model, resume=True)
    with pytest.raises(ValueError, match="select"):
        train(model, select=("score", "max"))
    with pytest.raises(TypeError, match="fastwave model"):
        train(torch.nn.Linear(2, 2), checkpoint_dir="unused")
    with pytest.raises(ValueError, match="steps"):
        train(model, steps=0)


def test_sample_model_training_resumes_exactly(tmp_path, monkeypatch):
    import fastwave.training.sample_models

    tokens = torch.randint(8, (3, 200), generator=torch.Generator().manual_seed(0))
    args = dict(steps=6, batch_size=4, segment=16, lr=1e-2, progress=False, eval_tokens=tokens[:1], eval_every=3)
    straight = tiny_transformer()
    reference = train_sample_model(straight, tokens, **args)

    real, calls = fastwave.training.sample_models.sample_crops, []

    def interrupted(*a, **k):
        calls.append(1)
        if len(calls) == 4:  # Ctrl-C during update 4, after the checkpoint of the step-3 evaluation
            os.kill(os.getpid(), signal.SIGINT)
        return real(*a, **k)

    monkeypatch.setattr(fastwave.training.sample_models, "sample_crops", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_sample_model(tiny_transformer(), tokens, **args, checkpoint_dir=tmp_path)
    monkeypatch.setattr(fastwave.training.sample_models, "sample_crops", real)
    assert torch.load(tmp_path / STATE, weights_only=True)["step"] == 4
    resumed = tiny_transformer(seed=3)
    history = train_sample_model(resumed, tokens, **args, checkpoint_dir=tmp_path, resume=True)
    assert_same(weights(resumed), weights(straight))
    assert history["loss"] == reference["loss"] and history["eval"] == reference["eval"]
    assert len(history["step_seconds"]) == 6 and all(t > 0 for t in history["step_seconds"])
    assert history["best"]["step"] in (3, 6)
    with pytest.raises(ValueError, match="other settings.*batch_size"):
        train_sample_model(tiny_transformer(), tokens, **{**args, "batch_size": 2}, checkpoint_dir=tmp_path,
                           resume=True)


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun with gloo is exercised on Linux")
def test_data_parallel_under_torchrun_matches_one_process(tmp_path):
    """Two CPU processes (gloo), each with half of every batch, end with the weights of one process
    training on the whole batches: DDP averages the two halves' gradients."""
    script = os.path.join(HERE, "ddp_train_script.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          script, str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "rank 0: done" in run.stderr and "rank 1: done" in run.stderr, run.stderr[-3000:]
    parallel = fastwave.load_model(tmp_path / LAST)
    single = tiny_transformer(dropout=0.0)
    train(single)
    # Equal up to rounding: the all-reduced mean of two half-batch gradients is the full-batch one
    # within float error, which AdamW magnifies only where a gradient is ~0 (the key bias, which
    # softmax ignores): measured max |diff| 2.8e-6 there, <= 2e-7 elsewhere. A missing all-reduce
    # (each rank on its half) moves weights by ~lr = 1e-2.
    for name, value in weights(single).items():
        torch.testing.assert_close(parallel.state_dict()[name], value, rtol=0, atol=2e-5, msg=name)
    state = torch.load(tmp_path / STATE, weights_only=True)
    assert len(state["rng"]) == 2  # one RNG state per rank, for an exact resume on two processes


def test_weight_average_is_the_moving_average_and_resumes_exactly(tmp_path):
    """ema.safetensors holds e_s = d e_(s-1) + (1 - d) w_s from e_0 = the starting weights; a run
    crashed and resumed keeps the same average bit for bit, and each evaluation scores it too."""
    from fastwave.training.loop import EMA

    model, seen = tiny_transformer(dropout=0.0), []

    def recording(step, rank, world):  # called before update ``step``: the weights after ``step`` updates
        seen.append(weights(model))
        return random_batch(step, rank, world)

    history = run_training(model, steps=4, batch_at=recording, loss_of=loss_of, lr=1e-2, warmup=2, progress=False,
                           checkpoint_dir=tmp_path / "straight", ema_decay=0.5, eval_every=2,
                           evaluate=lambda m: {"loss": float(loss_of(m, random_batch(99, 0, 1))),
                                               "training": float(m.training)})
    seen.append(weights(model))
    expected = {k: v.clone() for k, v in seen[0].items()}
    for step_weights in seen[1:]:
        for k in expected:
            if expected[k].is_floating_point():
                expected[k] = 0.5 * expected[k] + 0.5 * step_weights[k]
    average = fastwave.load_model(str(tmp_path / "straight" / EMA)).state_dict()
    for k, v in expected.items():
        torch.testing.assert_close(average[k], v, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(average["head.weight"], seen[-1]["head.weight"])  # an average, not the last weights
    assert history["ema"] == {"decay": 0.5, "from_step": 0}
    assert [sorted(e) for e in history["eval"]] == [["ema_loss", "ema_training", "loss", "step", "training"]] * 2
    assert all(e["ema_training"] == 0.0 for e in history["eval"])  # the average is scored in eval mode

    def crash_at_step_3(step, rank, world):
        if step == 3:
            raise RuntimeError("node lost")
        return random_batch(step, rank, world)

    with pytest.raises(RuntimeError):
        run_training(tiny_transformer(dropout=0.0), steps=4, batch_at=crash_at_step_3, loss_of=loss_of, lr=1e-2,
                     warmup=2, progress=False, checkpoint_dir=tmp_path / "resumed", checkpoint_every=2, ema_decay=0.5)
    train(tiny_transformer(seed=5, dropout=0.0), steps=4, checkpoint_dir=tmp_path / "resumed", resume=True,
          ema_decay=0.5)
    assert_same(fastwave.load_model(str(tmp_path / "resumed" / EMA)).state_dict(), average)


def test_a_weight_average_begins_when_a_resumed_run_asks_and_is_not_dropped(tmp_path):
    from fastwave.training.loop import EMA

    with pytest.raises(RuntimeError):
        def crash_at_step_3(step, rank, world):
            if step == 3:
                raise RuntimeError("node lost")
            return random_batch(step, rank, world)
        run_training(tiny_transformer(), steps=6, batch_at=crash_at_step_3, loss_of=loss_of, lr=1e-2, warmup=2,
                     progress=False, checkpoint_dir=tmp_path, checkpoint_every=3)
    plain = tiny_transformer()
    train(plain)  # the same run without an average: the average must not change the trained weights
    model = tiny_transformer(seed=5)
    history = train(model, checkpoint_dir=tmp_path, resume=True, ema_decay=0.9)
    assert history["ema"] == {"decay": 0.9, "from_step": 3}
    assert_same(weights(model), weights(plain))
    assert (tmp_path / EMA).is_file()
    for decay, match in ((None, "ema_decay 0.9"), (0.99, "ema_decay 0.9")):  # its average would end or change
        with pytest.raises(ValueError, match=match):
            train(tiny_transformer(), checkpoint_dir=tmp_path, resume=True, ema_decay=decay)
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match="ema_decay"):
            train(tiny_transformer(), ema_decay=bad)
    with pytest.raises(ValueError, match="needs a checkpoint_dir"):  # else the average would be lost
        train(tiny_transformer(), ema_decay=0.9)
