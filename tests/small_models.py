"""Small models and helpers shared by the test folders (``pythonpath = ["tests"]`` in pyproject)."""
import torch

import fastwave
from fastwave import SampleTransformer
from fastwave.models.code_lm import CodeLM

TINY_TRANSFORMER = dict(layers=2, heads=2, width=32, mlp_ratio=2, context=12, classes=32)
CONDITIONED_TRANSFORMER = dict(TINY_TRANSFORMER, cond_window=16, cond_hop=4, cond_channels=8, cond_kernel=2)


def make_transformer(seed=0, **kw) -> SampleTransformer:
    """A tiny sample Transformer (``TINY_TRANSFORMER`` updated by ``kw``), seeded, in eval mode."""
    torch.manual_seed(seed)
    model = SampleTransformer(**{**TINY_TRANSFORMER, **kw}).eval()
    with torch.no_grad():  # larger logits than the init's, so sampling policies meet real distributions
        model.head.weight.mul_(20)
        for p in model.parameters():  # and every layer matters (GPT init makes them near-identities)
            p.add_(0.05 * torch.randn_like(p))
    return model


TINY_CODE_LM = {"layers": 2, "heads": 2, "width": 32, "context": 32}  # the code tests' LM (without its classes)


def small_code_lm(**overrides) -> CodeLM:
    """A 2-layer, width-32 code LM over 8 codes with context 16, seeded, in eval mode."""
    torch.manual_seed(0)
    return CodeLM(**{"classes": 8, "layers": 2, "heads": 2, "width": 32, "context": 16, **overrides}).eval()


def rel_error(a, b) -> float:
    """Largest absolute difference relative to the largest magnitude of the reference ``b``."""
    return float((a - b).abs().max() / b.abs().max())


def greedy_on_every_engine(model, prompt, n, cond=None):
    """The greedy continuation on naive, torch and cpu -> one tensor, after checking they agree."""
    runs = {engine: fastwave.generate(model, n, prompt=prompt, batch=prompt.shape[0], temperature=0, engine=engine,
                                      cond=cond) for engine in ("naive", "torch", "cpu")}
    for engine, tokens in runs.items():
        assert torch.equal(tokens, runs["naive"]), engine
    return runs["naive"]
