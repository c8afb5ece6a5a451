import math

import numpy as np
import pytest
import torch

import fastwave
from fastwave.training.evaluation import (
    SampleMetrics,
    evaluate_sample_model,
    next_sample_metrics,
)
from fastwave.training.loop import lr_at
from fastwave.training.sample_models import sample_crops, train_sample_model


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_wavenet(seed=0, **kw):
    torch.manual_seed(seed)
    args = {"layers": 4, "cycles": 1, "residual_channels": 16, "gate_channels": 32, "skip_channels": 32,
            "classes": 16}
    return fastwave.WaveNet(**{**args, **kw})


class LookBack(torch.nn.Module):
    """A fake sample model with a known receptive field: logits[:, :, t] favour (tokens[t] +
    tokens[t - 1] + 1) % classes (``lag=1``; tokens before the window count as 0) or
    (tokens[t] + 1) % classes (``lag=0``), with a fixed table of position-independent offsets."""

    def __init__(self, classes=7, lag=0):
        super().__init__()
        self.config = type("Config", (), {"classes": classes})()
        self.lag = lag
        self.offsets = torch.nn.Parameter(torch.randn(classes, generator=torch.Generator().manual_seed(0)))

    def forward(self, tokens):
        key = tokens + 1
        if self.lag:
            key = key + torch.nn.functional.pad(tokens, (1, 0))[:, :-1]
        hot = torch.nn.functional.one_hot(key % self.config.classes, self.config.classes).float()
        return (2.0 * hot + self.offsets).transpose(1, 2)


def whole_stream_metrics(model, streams):
    """The reference: every stream in one window, every target scored."""
    total = SampleMetrics()
    with torch.no_grad():
        for s in streams:
            s = torch.as_tensor(s).reshape(1, -1)
            total = total.merge(next_sample_metrics(model(s[:, :-1]), s[:, 1:]))
    return total.summary()


def assert_same_metrics(a, b, rel=1e-9):
    assert (a["positions"], a["top1"], a["top5"]) == (b["positions"], b["top1"], b["top5"])
    assert a["nll_nats"] == pytest.approx(b["nll_nats"], rel=rel)
    assert a["bits_per_sample"] == pytest.approx(b["bits_per_sample"], rel=rel)


# ---- next_sample_metrics ------------------------------------------------------------------------

def test_metrics_by_hand():
    ramp = torch.arange(6.0)  # logits 0..5 at every position: class 5 ranks first, class 0 last
    logits = ramp.reshape(1, 6, 1).expand(1, 6, 3)
    targets = torch.tensor([[5, 0, 1]])  # ranks 1, 6 and 5
    m = next_sample_metrics(logits, targets)
    lse = math.log(sum(math.exp(k) for k in range(6)))
    nll = (lse - 5) + (lse - 0) + (lse - 1)
    assert (m.positions, m.top1_correct, m.top5_correct) == (3, 1, 2)
    assert m.nll_nats_sum == pytest.approx(nll, rel=1e-6)
    s = m.summary()
    assert s["top1"] == pytest.approx(1 / 3) and s["top5"] == pytest.approx(2 / 3)
    assert s["bits_per_sample"] == pytest.approx(nll / 3 / math.log(2), rel=1e-6)


def test_metrics_ties_are_pessimistic_and_nan_earns_nothing():
    flat = torch.zeros(1, 6, 1)  # a constant model: no class is the prediction
    m = next_sample_metrics(flat, torch.tensor([[2]]))
    assert (m.top1_correct, m.top5_correct) == (0, 0)
    assert m.nll_nats_sum == pytest.approx(math.log(6))
    tie_for_first = torch.tensor([[[3.0], [3.0], [0.0]]])
    assert next_sample_metrics(tie_for_first, torch.tensor([[0]])).top1_correct == 0
    nan = torch.tensor([[[float("nan")], [0.0], [1.0]]])
    assert next_sample_metrics(nan, torch.tensor([[0]])).top1_correct == 0
    assert next_sample_metrics(nan, torch.tensor([[2]])).top1_correct == 0  # a NaN rival counts as above


@pytest.mark.parametrize("classes", [2, 3, 5])
def test_top5_always_correct_with_at_most_5_classes(classes):
    logits = torch.randn(2, classes, 9, generator=torch.Generator().manual_seed(classes))
    targets = torch.randint(0, classes, (2, 9))
    m = next_sample_metrics(logits, targets)
    assert m.top5_correct == m.positions == 18
    assert m.top1_correct == int((logits.argmax(1) == targets).sum())


def test_metrics_accumulate_exactly_across_batches():
    g = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(4, 10, 50, generator=g), torch.randint(0, 10, (4, 50), generator=g)
    whole = next_sample_metrics(logits, targets)
    parts = SampleMetrics()
    for b in range(4):
        for t0 in range(0, 50, 17):
            parts = parts + next_sample_metrics(logits[b:b + 1, :, t0:t0 + 17], targets[b:b + 1, t0:t0 + 17])
    assert (parts.positions, parts.top1_correct, parts.top5_correct) == (
        whole.positions, whole.top1_correct, whole.top5_correct)
    assert parts.nll_nats_sum == pytest.approx(whole.nll_nats_sum, rel=1e-12)
    assert next_sample_metrics(logits.bfloat16(), targets).positions == 200  # low precision logits work


def test_metrics_refuse_bad_inputs():
    logits = torch.zeros(1, 4, 3)
    with pytest.raises(ValueError, match="targets must lie in"):
        next_sample_metrics(logits, torch.tensor([[0, 4, 1]]))
    with pytest.raises(ValueError, match="targets must be"):
        next_sample_metrics(logits, torch.tensor([[0, 1]]))
    with pytest.raises(TypeError, match="logits"):
        next_sample_metrics(torch.zeros(1, 4, 3, dtype=torch.long), torch.tensor([[0, 1, 2]]))
    with pytest.raises(ValueError, match="empty"):
        SampleMetrics().summary()


# ---- evaluate_sample_model ----------------------------------------------------------------------

def random_streams(lengths, classes, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, classes, (n,), generator=g) for n in lengths]


@pytest.mark.parametrize("segment,burn_in,batch_size", [(1, 0, 1), (5, 0, 3), (8, 3, 2), (9, 8, 8), (1000, 0, 8)])
def test_evaluate_scores_every_target_once(segment, burn_in, batch_size):
    model = LookBack(lag=0)  # sees one token: any windowing must reproduce the whole-stream metrics
    streams = random_streams([2, 3, 40, 97], 7)
    result = evaluate_sample_model(model, streams, segment=segment, burn_in=burn_in, batch_size=batch_size)
    assert result["positions"] == 1 + 2 + 39 + 96
    assert_same_metrics(result, whole_stream_metrics(model, streams))


def test_burn_in_gives_every_scored_target_its_past():
    model = LookBack(lag=1)  # needs the previous token too: window starts lose it unless burned in
    streams = []
    for n, noise in ((60, random_streams([60], 7, seed=1)[0]), (75, random_streams([75], 7, seed=2)[0])):
        s = noise.clone()  # follows the model's rule except at every 5th token
        for t in range(2, n):
            s[t] = noise[t] if t % 5 == 0 else (s[t - 1] + s[t - 2] + 1) % 7
        streams.append(s)
    reference = whole_stream_metrics(model, streams)
    for segment in (2, 7, 16):
        assert_same_metrics(evaluate_sample_model(model, streams, segment=segment, burn_in=1), reference)
    cut = evaluate_sample_model(model, streams, segment=7, burn_in=0)
    assert cut["positions"] == reference["positions"] and cut["top1"] < reference["top1"]


def test_evaluate_wavenet_independent_of_segment_with_burn_in():
    model = tiny_wavenet()
    rf = model.receptive_field
    tokens = torch.randint(0, 16, (2, 300), generator=torch.Generator().manual_seed(2))
    model.train()
    results = [evaluate_sample_model(model, tokens, segment=seg, burn_in=rf - 1, batch_size=bs)
               for seg, bs in ((rf + 4, 3), (50, 8), (299, 1))]
    for r in results[1:]:
        assert_same_metrics(r, results[0], rel=1e-5)
    assert model.training  # the caller's mode is restored
    assert all(p.grad is None for p in model.parameters())
    short = evaluate_sample_model(model, tokens, segment=rf // 2)  # no burn-in: a shorter past
    assert short["nll_nats"] != pytest.approx(results[0]["nll_nats"], rel=1e-5)


def test_evaluate_token_formats():
    model = LookBack(classes=5)
    stream = np.random.default_rng(0).integers(0, 5, 33).astype(np.uint8)
    one = evaluate_sample_model(model, stream, segment=10)
    assert one["positions"] == 32
    assert_same_metrics(evaluate_sample_model(model, torch.from_numpy(stream)[None]), one)
    assert_same_metrics(evaluate_sample_model(model, [stream]), one)
    assert_same_metrics(evaluate_sample_model(model, stream.tolist()), one)
    assert evaluate_sample_model(model, np.stack([stream, stream]))["positions"] == 64


def test_evaluate_refuses_bad_inputs():
    model = LookBack(classes=5)
    with pytest.raises(ValueError, match="at least 2"):
        evaluate_sample_model(model, [3])
    with pytest.raises(ValueError, match="stream 1 has 1 tokens"):
        evaluate_sample_model(model, [np.array([1, 2]), np.array([1])])
    with pytest.raises(ValueError, match=r"tokens must lie in \[0, 5\)"):
        evaluate_sample_model(model, [1, 2, 5])
    with pytest.raises(TypeError, match="integer tokens"):
        evaluate_sample_model(model, np.zeros(4))
    with pytest.raises(ValueError, match=r"\(T,\), \(N, T\)"):
        evaluate_sample_model(model, np.zeros((2, 2, 4), dtype=np.int64))
    with pytest.raises(ValueError, match="segment"):
        evaluate_sample_model(model, [1, 2, 3], segment=0)
    with pytest.raises(ValueError, match="burn_in"):
        evaluate_sample_model(model, [1, 2, 3], segment=4, burn_in=4)
    with pytest.raises(TypeError, match="sample model"):
        evaluate_sample_model(torch.nn.Linear(2, 2), [1, 2, 3])


# ---- training -----------------------------------------------------------------------------------

def test_lr_schedule():
    kw = {"lr": 1.0, "steps": 100, "warmup": 10, "min_lr_ratio": 0.1}
    warm = [lr_at(s, **kw) for s in range(11)]
    assert warm[0] == pytest.approx(1 / 11) and warm[10] == 1.0  # from ~0, linear, peak at warmup
    assert np.allclose(np.diff(warm), 1 / 11)
    decay = [lr_at(s, **kw) for s in range(10, 101)]
    assert bool((np.diff(decay) < 0).all())
    assert lr_at(55, **kw) == pytest.approx(0.55)  # half way down the cosine: (peak + min) / 2
    assert lr_at(100, **kw) == pytest.approx(0.1) and lr_at(500, **kw) == pytest.approx(0.1)
    assert lr_at(0, lr=1.0, steps=5, warmup=0) == 1.0


def test_sample_crops_are_slices_weighted_by_starts():
    streams = [torch.arange(100, 110), torch.arange(0, 40)]  # 7 and 37 starts for length 4
    crops, which, starts = sample_crops(streams, 4000, 4, torch.Generator().manual_seed(0))
    assert bool((crops[:, 0] == torch.where(which == 0, 100, 0) + starts).all())
    assert crops.shape == (4000, 4) and bool((crops.diff(dim=1) == 1).all())
    assert bool(((crops[:, 0] >= 100) == (which == 0)).all())
    assert bool((crops[:, -1] < 40).sum() == (which == 1).sum())
    assert float((which == 0).float().mean()) == pytest.approx(7 / 44, abs=0.02)


def test_training_overfits_a_periodic_pattern():
    model = tiny_wavenet()  # receptive field 16 >= the period: the pattern is fully predictable
    pattern = torch.randint(0, 16, (12,), generator=torch.Generator().manual_seed(1))
    tokens = pattern.repeat(40)
    history = train_sample_model(model, tokens, steps=80, batch_size=8, segment=48, lr=3e-3, warmup=8,
                                 progress=False, eval_tokens=tokens, eval_every=40)
    assert len(history["loss"]) == len(history["lr"]) == 80
    assert history["lr"][8] == pytest.approx(3e-3)
    assert np.mean(history["loss"][-10:]) < 0.1 * history["loss"][0]
    assert [e["step"] for e in history["eval"]] == [40, 80]
    assert history["eval"][-1]["top1"] > 0.95 and history["eval"][-1]["positions"] == 479
    assert not model.training


def test_training_is_deterministic_for_a_seed():
    tokens = [torch.randint(0, 16, (n,), generator=torch.Generator().manual_seed(n)) for n in (40, 70)]

    def run(seed):
        model = tiny_wavenet()
        history = train_sample_model(model, tokens, steps=4, batch_size=2, segment=20, seed=seed, progress=False)
        return history["loss"], model.state_dict()

    rng = torch.get_rng_state()
    (loss_a, state_a), (loss_b, state_b), (loss_c, _) = run(0), run(0), run(1)
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    assert loss_a == loss_b and loss_a != loss_c
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_training_with_global_conditioning():
    model = tiny_wavenet(global_classes=2)
    streams = random_streams([60, 60], 16, seed=3)
    history = train_sample_model(model, streams, steps=2, batch_size=2, segment=16, cond={"global_cond": [0, 1]},
                                 eval_tokens=streams, eval_cond={"global_cond": [0, 1]}, progress=False)
    right = history["eval"][-1]
    swapped = evaluate_sample_model(model, streams, cond={"global_cond": [1, 0]})
    assert right["positions"] == swapped["positions"] == 118
    assert right["nll_nats"] != swapped["nll_nats"]


def test_sample_crops_start_on_frames_when_aligned():
    streams = [torch.arange(0, 100), torch.arange(1000, 1030)]
    crops, which, starts = sample_crops(streams, 2000, 9, torch.Generator().manual_seed(0), align=8)
    assert bool((starts % 8 == 0).all()) and set(starts[which == 1].tolist()) == {0, 8, 16}
    assert set(starts[which == 0].tolist()) == set(range(0, 92, 8))  # every frame start that fits 9 tokens
    first = torch.where(which == 0, 0, 1000)
    assert bool((crops[:, 0] == first + starts).all()) and bool((crops.diff(dim=1) == 1).all())


def frame_label_streams(lengths, hop, classes, seed):
    """Streams that repeat, one position late, a random label per frame, and one-hot features of those
    labels: the target of input position t is the label of t's own frame. At a frame's first position
    that label is new, so only a model that reads its features can predict it."""
    g = torch.Generator().manual_seed(seed)
    streams, feats = [], []
    for n in lengths:
        labels = torch.randint(classes, (-(-n // hop),), generator=g)
        streams.append(torch.cat([labels[:1], labels.repeat_interleave(hop)])[:n])
        feats.append(torch.nn.functional.one_hot(labels, classes).T.float())
    return streams, feats


def test_training_with_local_conditioning_learns_from_the_features():
    hop, classes = 4, 16
    streams, feats = frame_label_streams([400, 300], hop, classes, seed=0)
    held_out, held_out_feats = frame_label_streams([200], hop, classes, seed=1)
    model = tiny_wavenet(local_channels=classes, cond_hop=hop)

    def evaluate(local_cond, segment=32):
        return evaluate_sample_model(model, held_out, segment=segment, cond={"local_cond": local_cond})

    before = evaluate(held_out_feats)
    train_sample_model(model, streams, steps=150, batch_size=8, segment=32, lr=1e-2, warmup=10,
                       cond={"local_cond": feats}, eval_tokens=held_out, eval_cond={"local_cond": held_out_feats},
                       eval_every=50, progress=False)
    after = evaluate(held_out_feats)
    assert after["positions"] == before["positions"] == 199
    assert after["top1"] > 0.98 and after["bits_per_sample"] < 0.2 < 3.0 < before["bits_per_sample"]
    # With another stream's features the new label of each frame's first position is missed.
    _, wrong_feats = frame_label_streams([200], hop, classes, seed=2)
    assert evaluate(wrong_feats)["top1"] < 0.85
    # With burn_in >= the receptive field the score does not depend on how the stream is cut into
    # windows: each window reads the frames of its own positions.
    scores = [evaluate_sample_model(model, held_out, segment=segment, burn_in=16,
                                    cond={"local_cond": held_out_feats})["nll_nats"] for segment in (32, 64, 200)]
    assert scores == pytest.approx([scores[-1]] * 3, rel=1e-5)


def test_local_conditioning_refuses_bad_features():
    hop = 4
    streams, feats = frame_label_streams([41, 20], hop, 3, seed=0)
    model = tiny_wavenet(local_channels=3, cond_hop=hop)

    def evaluate(local_cond, segment=16):
        evaluate_sample_model(model, streams, segment=segment, cond={"local_cond": local_cond})

    with pytest.raises(ValueError, match="features for 1 streams, but there are 2"):
        evaluate(feats[:1])
    with pytest.raises(ValueError, match=r"local_cond\[1\] must be float \(3, frames\)"):
        evaluate([feats[0], feats[1][:2]])
    with pytest.raises(ValueError, match=r"local_cond\[0\] has 9 frames; its stream's 40 inputs at cond_hop=4 need 10"):
        evaluate([feats[0][:, :9], feats[1]])
    with pytest.raises(ValueError, match="non-finite"):
        evaluate([feats[0], feats[1] * float("nan")])
    with pytest.raises(ValueError, match="multiple of the model's cond_hop"):
        evaluate(feats, segment=18)
    evaluate([feats[0][:, :10], feats[1]])  # exactly enough frames


def test_training_refuses_bad_inputs():
    model = tiny_wavenet()
    tokens = torch.randint(0, 16, (50,))

    def train(tokens=tokens, model=model, **kw):
        train_sample_model(model, tokens, **{"steps": 1, "segment": 16, "progress": False, **kw})

    with pytest.raises(ValueError, match="has 10 tokens; at least 17"):
        train(tokens=tokens[:10])
    with pytest.raises(ValueError, match="stream 1 has 12 tokens"):
        train(tokens=[tokens, tokens[:12]])
    with pytest.raises(ValueError, match="must lie in"):
        train(tokens=tokens + 10)
    with pytest.raises(TypeError, match="integer tokens"):
        train(tokens=tokens.float())
    with pytest.raises(ValueError, match="steps"):
        train(steps=0)
    with pytest.raises(ValueError, match="lr"):
        train(lr=-1.0)
    with pytest.raises(ValueError, match="min_lr_ratio"):
        train(min_lr_ratio=2.0)
    with pytest.raises(ValueError, match="grad_clip"):
        train(grad_clip=0.0)
    with pytest.raises(ValueError, match="eval_tokens has 1 tokens"):
        train(eval_tokens=tokens[:1])
    with pytest.raises(ValueError, match=r"local_cond'\] is required"):
        train(model=tiny_wavenet(local_channels=3))
    with pytest.raises(ValueError, match="no local conditioning"):
        train(cond={"local_cond": [torch.zeros(3, 50)]})
    with pytest.raises(ValueError, match="global_cond is required"):
        train(model=tiny_wavenet(global_classes=2))
    with pytest.raises(ValueError, match="no global conditioning"):
        train(cond={"global_cond": 0})
    with pytest.raises(ValueError, match="unknown keys"):
        train(cond={"speaker": 0})


def test_short_streams_are_padded_and_not_scored():
    from fastwave.training.sample_models import PAD, train_step

    streams = [torch.arange(10), torch.tensor([3, 4])]
    crops, which, _ = sample_crops(streams, 400, 6, torch.Generator().manual_seed(0))
    short = crops[which == 1]
    assert len(short) > 0 and (short == torch.tensor([3, 4, PAD, PAD, PAD, PAD])).all()
    assert (crops[which == 0] >= 0).all()
    # The loss of a padded batch is the loss of its real targets alone.
    torch.manual_seed(0)
    model = fastwave.SampleTransformer(layers=1, heads=2, width=32, context=8, classes=16)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    padded = torch.tensor([[3, 4, 5, PAD, PAD, PAD]])
    loss = train_step(model, optimizer, padded, None)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(torch.tensor([[3, 4]])), torch.tensor([[4, 5]]))
    assert abs(loss - float(expected)) < 1e-5
    with pytest.raises(ValueError, match="has 2 tokens"):
        train_sample_model(model, streams, steps=1, segment=5, progress=False)


def test_padded_crops_of_short_streams_get_zero_features_past_the_end():
    from fastwave.training.stream_cond import StreamCond
    feats = [torch.arange(6.0).reshape(2, 3)]  # 3 frames of a 10-token stream at hop 4
    cut = StreamCond(None, feats, hop=4).for_windows([0, 0], [0, 4], 16, "cpu")["local_cond"]
    assert cut.shape == (2, 2, 4)
    assert cut[0].tolist() == [[0, 1, 2, 0], [3, 4, 5, 0]] and cut[1].tolist() == [[1, 2, 0, 0], [4, 5, 0, 0]]


class Recorder(torch.nn.Module):
    """A fake sample model that keeps what it was fed and predicts uniformly."""

    def __init__(self, classes):
        super().__init__()
        self.classes, self.fed = classes, None
        self.bias = torch.nn.Parameter(torch.zeros(()))

    def forward(self, tokens):
        self.fed = tokens.clone()
        return self.bias + torch.zeros(tokens.shape[0], self.classes, tokens.shape[1])


def test_input_noise_moves_what_the_model_reads_within_the_levels_never_the_targets_or_padding():
    from fastwave.training.sample_models import PAD, crop_loss

    crops = torch.tensor([[0, 15, 7, 7, 3], [5, 6, PAD, PAD, PAD]])
    noise = torch.tensor([[-3, 4, 1, 0], [2, -9, 5, 5]])
    model = Recorder(16)
    plain = crop_loss(model, crops)
    loss = crop_loss(model, crops, 0, noise, 16)
    assert torch.equal(model.fed, torch.tensor([[0, 15, 8, 7], [7, 0, 0, 0]]))  # clipped; PAD fed as 0 as before
    assert loss == plain  # the same targets scored: a uniform model's loss does not move
    with pytest.raises(ValueError, match="classes"):
        crop_loss(model, crops, 0, noise)


def test_training_with_input_noise_is_seeded_and_keeps_the_crops():
    tokens = [torch.randint(0, 16, (n,), generator=torch.Generator().manual_seed(n)) for n in (40, 70)]

    def run(**kw):
        model = tiny_wavenet()
        return train_sample_model(model, tokens, steps=3, batch_size=2, segment=20, progress=False, **kw)["loss"]

    noisy = run(input_noise=2.0)
    assert noisy == run(input_noise=2.0) and noisy != run() != run(input_noise=0.5)
    for bad in (-1.0, float("inf"), True):
        with pytest.raises(ValueError, match="input_noise"):
            run(input_noise=bad)
