"""decode_attention: the Triton kernel (forced; the interpreter on CPU) against the float64 reference
and against causal attention over the whole sequence (what a KV-cache engine relies on); ragged,
empty and out-of-range lengths, forced and chosen splits, cache layouts; custom-op registration,
torch.compile, bad input."""
import pytest
import torch
import torch.nn.functional as F
from ops_cases import kernel_targets, needs_triton

from fastwave import ops
from fastwave.ops.decode_attention import decode_attention, decode_attention_reference
from fastwave.ops.verify import (
    TOLERANCE,
    decode_attention_errors,
    random_decode,
    rel_error,
)

pytestmark = needs_triton

# (lengths per batch row, L_max, D, splits (0: the op chooses), tile rows BLOCK_N (None: the default)).
# Splits are cut in whole tiles: 16-row tiles put several splits to work on these short caches.
CASES = [
    ([1, 17, 64, 5], 67, 48, 1, None),
    ([1, 17, 64, 5], 67, 48, 3, 16),
    ([0, 67, 200, 3], 67, 16, 3, 16),  # an empty row, a full one, one past L_max (clamped)
    ([-4, 40], 40, 64, 8, 16),  # a negative length (clamped to 0); more splits than tiles
    ([130, 1, 77], 130, 128, 0, None),
    ([130, 1, 77], 130, 128, 5, 16),
    ([9], 9, 8, 2, None),  # a head narrower than a tile's minimum (masked to 16)
]


def small_tiles(monkeypatch, block_n=16):
    """The decode kernel with BLOCK_N-row tiles (through the tuning hook)."""
    from fastwave.ops.kernels import shifted_matmul
    monkeypatch.setitem(shifted_matmul.TUNING, "decode_attention", {"BLOCK_N": block_n})


@pytest.mark.parametrize("device,dtype", kernel_targets())
@pytest.mark.parametrize("lens,max_len,head_dim,splits,block_n", CASES)
def test_decode_attention_matches_reference(device, dtype, lens, max_len, head_dim, splits, block_n, monkeypatch):
    if block_n is not None:
        small_tiles(monkeypatch, block_n)
    q, k, v = random_decode(len(lens), 2, max_len, head_dim)
    cache_lens = torch.tensor(lens, dtype=torch.int32)
    errors = decode_attention_errors(q, k, v, cache_lens, dtype, device, splits=splits)
    assert errors["out"] < TOLERANCE[dtype], errors


@pytest.mark.parametrize("splits", [1, 4])
def test_empty_rows_give_zeros_and_the_reference_agrees(splits, monkeypatch):
    small_tiles(monkeypatch)
    q, k, v = random_decode(3, 2, 20, 16)
    cache_lens = torch.tensor([0, 5, -1])
    with ops.backend("triton"):
        out = decode_attention(q, k, v, cache_lens, _splits=splits)
    ref = decode_attention_reference(q, k, v, cache_lens)
    assert torch.equal(out[0], torch.zeros_like(out[0])) and torch.equal(out[2], torch.zeros_like(out[2]))
    assert torch.equal(ref[0], torch.zeros_like(ref[0])) and not ref.isnan().any()
    assert rel_error(out, ref) < 1e-5


def test_lengths_past_the_cache_are_clamped(monkeypatch):
    small_tiles(monkeypatch)
    q, k, v = random_decode(2, 2, 33, 32)
    with ops.backend("triton"):
        clamped = decode_attention(q, k, v, torch.tensor([2 ** 40, 34]), _splits=3)  # past int32, too
    full = decode_attention_reference(q.double(), k.double(), v.double(), torch.tensor([33, 33]))
    assert rel_error(clamped, full) < 1e-5


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("splits", [1, 3])
def test_decode_is_the_last_row_of_causal_attention(backend, splits, monkeypatch):
    """Step t of generation, with the cache holding steps 0..t, gives row t of causal attention over
    the whole sequence; rows of one batch may be at different steps."""
    small_tiles(monkeypatch)
    g = torch.Generator().manual_seed(1)
    batch, heads, length, head_dim = 2, 3, 37, 32
    q, k, v = (torch.randn(batch, heads, length, head_dim, generator=g) for _ in range(3))
    full = F.scaled_dot_product_attention(q.double(), k.double(), v.double(), is_causal=True)
    buffer_len = 48  # the cache is preallocated longer than the sequence; the rest is junk
    k_cache = torch.randn(batch, heads, buffer_len, head_dim, generator=g)
    v_cache = torch.randn(batch, heads, buffer_len, head_dim, generator=g)
    k_cache[:, :, :length], v_cache[:, :, :length] = k, v
    for steps in ([0, 0], [1, 20], [36, 5], [36, 36]):
        rows = torch.arange(batch)
        t = torch.tensor(steps)
        with ops.backend(backend):
            out = decode_attention(q[rows, :, t], k_cache, v_cache, t + 1, _splits=splits)
        assert rel_error(out, full[rows, :, t]) < 1e-5, steps


def test_slot_order_does_not_matter(monkeypatch):
    small_tiles(monkeypatch)
    q, k, v = random_decode(2, 2, 50, 24)
    cache_lens = torch.tensor([50, 31])
    perm = torch.randperm(50, generator=torch.Generator().manual_seed(3))
    perm_short = torch.cat([torch.randperm(31, generator=torch.Generator().manual_seed(4)), torch.arange(31, 50)])
    k2, v2 = k.clone(), v.clone()
    k2[0], v2[0] = k[0][:, perm], v[0][:, perm]
    k2[1], v2[1] = k[1][:, perm_short], v[1][:, perm_short]
    with ops.backend("triton"):
        out = decode_attention(q, k, v, cache_lens, _splits=2)
        shuffled = decode_attention(q, k2, v2, cache_lens, _splits=2)
    assert rel_error(shuffled, out) < 1e-6


def test_cache_as_a_view_of_a_larger_buffer_and_other_layouts(monkeypatch):
    """A (B, L, H, D) buffer longer and wider than the cache, sliced and transposed: strides on B, H
    and L are read as they are; D with a stride is copied; q with any strides."""
    small_tiles(monkeypatch)
    g = torch.Generator().manual_seed(2)
    head_dim = 24
    k_buf = torch.randn(6, 90, 5, head_dim, generator=g)
    v_buf = torch.randn(6, 90, 5, head_dim, generator=g)
    k, v = k_buf[1:5, :67, 1:4].transpose(1, 2), v_buf[1:5, :67, 1:4].transpose(1, 2)  # (4, 3, 67, D)
    assert k.shape == (4, 3, 67, head_dim) and not k.is_contiguous()
    q_buf = torch.randn(3, 4, 2 * head_dim, generator=g)
    q = q_buf.transpose(0, 1)[..., ::2]  # (4, 3, D), stride 2 on D
    cache_lens = torch.tensor([1, 67, 30, 12])
    d_strided = k.contiguous().transpose(2, 3).contiguous().transpose(2, 3)  # stride L_max on D
    lens_strided = torch.stack([cache_lens, cache_lens], 1)[:, 0]
    before = k_buf.clone()
    with ops.backend("triton"):
        out = decode_attention(q, k, v, cache_lens, _splits=3)
        contiguous = decode_attention(q.contiguous(), k.contiguous(), v.contiguous(), cache_lens, _splits=3)
        copied = decode_attention(q, d_strided, v, lens_strided, _splits=3)
    assert torch.equal(out, contiguous) and torch.equal(copied, contiguous)
    assert torch.equal(k_buf, before)
    ref = decode_attention_reference(q.double(), k.double(), v.double(), cache_lens)
    assert rel_error(out, ref) < 1e-5


@pytest.mark.parametrize("scale", [0.3, 0.0, -1.5])
def test_explicit_scale(scale):
    q, k, v = random_decode(2, 2, 30, 16)
    cache_lens = torch.tensor([30, 7])
    errors = decode_attention_errors(q, k, v, cache_lens, torch.float32, "cpu", scale=scale, splits=2)
    assert errors["out"] < 1e-5
    if scale == 0.0:  # uniform weights: the mean of the values in range
        with ops.backend("triton"):
            out = decode_attention(q, k, v, cache_lens, scale)
        torch.testing.assert_close(out[1], v[1, :, :7].mean(1), rtol=1e-5, atol=1e-6)


def test_int32_and_int64_lengths_agree():
    q, k, v = random_decode(3, 2, 25, 16)
    lens = [25, 3, 11]
    with ops.backend("triton"):
        a = decode_attention(q, k, v, torch.tensor(lens, dtype=torch.int32))
        b = decode_attention(q, k, v, torch.tensor(lens, dtype=torch.int64))
    assert torch.equal(a, b)


def test_split_choice_depends_on_shapes_only(monkeypatch):
    from fastwave.ops.kernels import decode_attention as kernels
    monkeypatch.setattr(kernels, "_parallel_programs", lambda device: 528)  # 4 x 132 SMs (H100)
    cpu = torch.device("cpu")
    assert kernels.num_splits(16, 100, cpu) == 1  # a short cache: no split is worth it
    assert kernels.num_splits(16, 16384, cpu) == 33  # B * H * splits fills the device
    assert kernels.num_splits(1, 1 << 20, cpu) == kernels.MAX_SPLITS
    assert kernels.num_splits(1024, 16384, cpu) == 1  # B * H alone fills it
    assert kernels.num_splits(4, 1024, cpu) == 4  # at least MIN_SLOTS_PER_SPLIT slots per split
    # The chosen split runs (as it would on a large GPU).
    q, k, v = random_decode(1, 2, 1024, 16)
    cache_lens = torch.tensor([700])
    errors = decode_attention_errors(q, k, v, cache_lens, torch.float32, "cpu")
    assert errors["out"] < 1e-5


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("splits", [1, 3])
def test_custom_op_passes_opcheck(backend, splits, monkeypatch):
    small_tiles(monkeypatch)
    q, k, v = random_decode(2, 3, 19, 16)
    strided_k = torch.randn(2, 25, 3, 16)[:, 3:22].transpose(1, 2)
    with ops.backend(backend):
        for cache in (k, strided_k):
            torch.library.opcheck(torch.ops.fastwave.decode_attention,
                                  (q, cache, v, torch.tensor([19, 4]), 0.25, splits))


def test_torch_compile_of_a_decode_step():
    q, k, v = random_decode(2, 2, 21, 16)
    cache_lens = torch.tensor([21, 9])

    def step(q, k, v, cache_lens):
        return decode_attention(q * 2, k, v, cache_lens).sum(-1)

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    with ops.backend("triton"):
        torch.testing.assert_close(compiled(q, k, v, cache_lens), step(q, k, v, cache_lens))


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_degenerate_shapes(backend):
    q, k, v = random_decode(2, 2, 0, 16)
    with ops.backend(backend):
        assert torch.equal(decode_attention(q, k, v, torch.tensor([0, 3])), torch.zeros(2, 2, 16))
        empty = decode_attention(q[:0], k[:0], v[:0], torch.zeros(0, dtype=torch.int64))
    assert empty.shape == (0, 2, 16)


def test_heads_wider_than_the_kernel_run_the_reference():
    q, k, v = random_decode(1, 1, 5, 300)
    errors = decode_attention_errors(q, k, v, torch.tensor([4]), torch.float32, "cpu")
    assert errors["out"] < 1e-5


def test_autocast_computes_in_the_autocast_dtype():
    q, k, v = random_decode(2, 2, 12, 16)
    cache_lens = torch.tensor([12, 6])
    with ops.backend("triton"), torch.autocast("cpu", dtype=torch.float16):
        out = decode_attention(q, k, v, cache_lens)
    assert out.dtype == torch.float16
    assert rel_error(out, decode_attention_reference(q.double(), k.double(), v.double(), cache_lens)) < 1e-2


def test_backward_is_an_error_not_a_wrong_gradient():
    q, k, v = random_decode(1, 2, 8, 16)
    q.requires_grad_()
    out = decode_attention(q, k, v, torch.tensor([8]))  # the forward runs (generation without no_grad)
    with pytest.raises(RuntimeError, match="no autograd formula"):
        out.sum().backward()


@pytest.mark.parametrize("case,error,message", [
    (lambda q, k, v, n: (q, k, v, n.float()), TypeError, "cache_lens must be int32 or int64"),
    (lambda q, k, v, n: (q, k, v, [3, 3]), TypeError, "cache_lens must be a torch.Tensor"),
    (lambda q, k, v, n: (q, k, v, n[:1]), ValueError, r"cache_lens must have shape \(2\)"),
    (lambda q, k, v, n: (q, k, v, n.to("meta")), ValueError, "cache_lens is on meta"),
    (lambda q, k, v, n: (q[None], k, v, n), ValueError, "q must have 3 dimensions"),
    (lambda q, k, v, n: (q.long(), k, v, n), TypeError, "q must be float16"),
    (lambda q, k, v, n: (q, k.half(), v, n), TypeError, "k_cache has dtype torch.float16"),
    (lambda q, k, v, n: (q, k[:, :1], v, n), ValueError, r"k_cache must have shape \(2, 3, \*, 16\)"),
    (lambda q, k, v, n: (q, k, v[..., :8], n), ValueError, r"v_cache must have shape \(2, 3, 10, 16\)"),
    (lambda q, k, v, n: (q, k, v.to("meta"), n), ValueError, "v_cache is on meta"),
    (lambda q, k, v, n: (q[..., :0], k[..., :0], v[..., :0], n), ValueError, "D >= 1"),
    (lambda q, k, v, n: (q, k, v, n, "0.5"), TypeError, "scale must be a float"),
    (lambda q, k, v, n: (q, k, v, n, float("nan")), ValueError, "scale must be finite"),
])
def test_decode_attention_refuses_bad_arguments(case, error, message):
    q, k, v = random_decode(2, 3, 10, 16)
    with pytest.raises(error, match=message):
        decode_attention(*case(q, k, v, torch.tensor([10, 2])))


def test_forced_splits_must_be_a_count():
    q, k, v = random_decode(1, 1, 4, 16)
    with pytest.raises(ValueError, match="_splits must be an int >= 0"):
        decode_attention(q, k, v, torch.tensor([4]), _splits=-1)
