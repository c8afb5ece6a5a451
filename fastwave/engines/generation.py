"""``fastwave.generate`` and ``fastwave.stream``: one entry point over every engine.

Engines: "naive" (the model over its receptive field per sample, the baseline), "torch" (cached
activations in torch, the reference: ring buffers for WaveNet, a KV cache for the sample
Transformer), "cpu" (the C++ engine: WaveNet and the sample Transformer on the CPU). "auto" picks the
fastest available for the model and device.
"""
from __future__ import annotations

from typing import Iterator

import torch

from ..audio import mulaw_silence
from .._checks import as_tensor, check_finite_parameters, check_int_arg, check_tokens
from .naive import NaiveEngine
from .sampling import SamplingParams, _seed_words
from .transformer_cpu import CpuTransformerEngine
from .transformer_torch import TorchTransformerEngine
from .wavenet_cpu import CpuWaveNetEngine
from .wavenet_torch import TorchWaveNetEngine

ENGINES = ("naive", "torch", "cpu")
PRECISIONS = ("fp32", "fp16", "int8")
# The weight precisions each model's C++ engine ("cpu") stores; every other engine is fp32 only.
CPU_PRECISIONS = {"wavenet": ("fp32", "fp16", "int8"), "transformer": ("fp32", "fp16", "int8")}
_CACHED_TORCH_ENGINES = {"wavenet": TorchWaveNetEngine, "transformer": TorchTransformerEngine}
_CPU_ENGINES = {"wavenet": CpuWaveNetEngine, "transformer": CpuTransformerEngine}
DEFAULT_CHUNK = 1600  # 100 ms at 16 kHz: the streaming latency


def available_engines(model) -> list[str]:
    """The engine names that can run ``model`` where it is (device, model type, dtype), slowest first."""
    _check_sample_model(model)
    names = ["naive"]
    fp32 = all(p.dtype == torch.float32 for p in model.parameters())
    if model.model_type in _CACHED_TORCH_ENGINES and fp32:  # the reference engine runs fp32
        names.append("torch")
    # The C++ engine computes in fp32 from the exported (fp32) weights, whatever the model's dtype.
    if model.model_type in _CPU_ENGINES and next(model.parameters()).device.type == "cpu":
        names.append("cpu")
    return names


def cpu_precisions(model) -> tuple[str, ...]:
    """The precisions ``generate(..., engine="cpu", precision=...)`` takes for this model."""
    return CPU_PRECISIONS.get(getattr(model, "model_type", None), ("fp32",))


def resolve_engine(model, engine: str) -> str:
    if not isinstance(engine, str) or engine not in ENGINES + ("auto",):
        raise ValueError(f"engine must be one of {', '.join(ENGINES + ('auto',))}, got {engine!r}")
    available = available_engines(model)
    if engine == "auto":
        return available[-1]
    if engine not in available:
        raise ValueError(f"engine {engine!r} cannot run this {type(model).__name__} "
                         f"({next(model.parameters()).dtype}); available: {available}")
    return engine


def _check_sample_model(model) -> None:
    if not isinstance(model, torch.nn.Module) or getattr(model, "model_type", None) not in _CACHED_TORCH_ENGINES:
        raise TypeError("model must be a fastwave sample model (fastwave.WaveNet, fastwave.SampleTransformer), "
                        f"got {type(model).__name__}")


def stream(model, n_samples: int, *, batch: int = 1, prompt=None, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, seed: int = 0, engine: str = "auto",
           cond: dict | None = None, progress: bool = False, chunk_size: int = DEFAULT_CHUNK,
           threads: int | None = None, precision: str = "fp32") -> Iterator[torch.Tensor]:
    """Generate ``n_samples`` tokens per stream, yielding int64 CPU chunks (B, <= chunk_size) as made.

    model: a fastwave sample model (``fastwave.WaveNet``, ``fastwave.SampleTransformer``), on the
      device to generate on.
    prompt: None (start from the silence token), (P,) for every stream, or (B, P) int tokens; the
      output continues the prompt and does not repeat it.
    temperature / top_k / top_p: the sampling policy (temperature 0 is greedy); the contract is in
      ``fastwave.engines.sampling``.
    seed: 0 <= seed < 2**64; sample n of stream b uses Philox uniform (seed, n, b), so the same seed
      gives the same tokens on every engine and for every chunk size.
    cond: the model's conditioning, e.g. ``{"global_cond": ids (B,), "local_cond": (B, C, F)}`` for
      WaveNet; local features must cover the P + n_samples - 1 positions the model reads. The
      sample Transformer takes none (its conditioned variant reads its own past audio).
    threads: worker threads of the "cpu" engine (default: physical cores); the torch-based engines
      use torch's own thread settings and ignore it.
    precision: "fp32" (every engine; the parity contract), or for the "cpu" engine (``cpu_precisions``):
      "fp16": matrices stored in half precision, arithmetic in fp32 (the sample Transformer's KV
        cache too): half the weight bytes per step; logits differ from fp32 by ~1e-3 relative.
      "int8": int8 weights with an fp32 scale per output channel, each step's inputs
        quantised per stream to 7 bits, integer dot products: a quarter of the weight bytes (the
        sample Transformer's KV cache too, with a scale per position and head).
      Tokens match fp32 only until the first near tie; docs/generation.md gives the measured cost in
      bits/sample.
    """
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p)
    n_samples = check_int_arg(n_samples, "n_samples")
    if n_samples > 2 ** 32:  # the Philox counter holds the step in 32 bits
        raise ValueError(f"n_samples must be <= 2**32 per call, got {n_samples}")
    batch = check_int_arg(batch, "batch")
    chunk_size = check_int_arg(chunk_size, "chunk_size")
    if threads is not None:
        threads = check_int_arg(threads, "threads")
    if isinstance(seed, bool):
        raise TypeError("seed must be an integer, got bool")
    _seed_words(seed)  # validates: an integer in [0, 2**64)
    name = resolve_engine(model, engine)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision not in cpu_precisions(model) or (precision != "fp32" and name != "cpu"):
        raise ValueError(f"precision {precision!r} needs engine='cpu' and a model whose C++ engine stores it "
                         f"(got engine {name!r}, a {type(model).__name__}, which takes "
                         f"{', '.join(cpu_precisions(model))} on 'cpu' and fp32 elsewhere)")
    check_finite_parameters(model)
    if model.training and any(isinstance(m, torch.nn.Dropout) and m.p > 0 for m in model.modules()):
        # The parallel passes would drop activations and the cached steps would not: the same seed
        # would no longer give the same audio.
        raise ValueError("model is in training mode with dropout; call model.eval() before generating")
    prompt = _prompt_tokens(model, prompt, batch)
    cond = model.prepare_cond(cond, batch, prompt.shape[1] + n_samples - 1)
    # Built here, not in the generator, so that every refusal comes at the call.
    if name == "cpu":
        options = {"precision": precision} if precision != "fp32" else {}
        engine = _CPU_ENGINES[model.model_type](model, batch, cond, threads=threads, **options)
    else:
        engine = (NaiveEngine if name == "naive" else _CACHED_TORCH_ENGINES[model.model_type])(model, batch, cond)
    return _run(engine, name, prompt, n_samples, chunk_size, params, int(seed), progress)


def generate(model, n_samples: int, *, chunk_size: int = 16384, **kwargs) -> torch.Tensor:
    """Generate ``n_samples`` tokens per stream -> int64 CPU tensor (B, n_samples); arguments as ``stream``."""
    return torch.cat(list(stream(model, n_samples, chunk_size=chunk_size, **kwargs)), dim=1)


@torch.inference_mode()
def _run(engine, name, prompt, n_samples, chunk_size, params, seed, progress):
    from tqdm.auto import tqdm

    with tqdm(total=n_samples, unit="sample", disable=not progress, desc=f"generate ({name})") as bar:
        for chunk in engine.chunks(prompt, n_samples, chunk_size, params, seed):
            bar.update(chunk.shape[1])
            yield chunk


def _prompt_tokens(model, prompt, batch: int) -> torch.Tensor:
    """None / (P,) / (1, P) / (B, P) -> (B, P) int64 on the model's device."""
    classes = model.config.classes
    device = next(model.parameters()).device
    if prompt is None:
        return torch.full((batch, 1), mulaw_silence(classes), dtype=torch.long, device=device)
    prompt = as_tensor(prompt, "prompt")
    if prompt.dim() == 1:
        prompt = prompt.unsqueeze(0)
    prompt = check_tokens(prompt, classes, "prompt")
    if prompt.shape[0] not in (1, batch):
        raise ValueError(f"prompt must be (P,), (1, P) or (B, P) with B = batch = {batch}, got {tuple(prompt.shape)}")
    return prompt.expand(batch, -1).to(device)
