"""Generation engines and the sampling contract they share (see sampling.py)."""
from .generation import ENGINES, available_engines, generate, stream
from .sampling import SamplingParams, philox_uniform, sample_tokens

__all__ = ["ENGINES", "SamplingParams", "available_engines", "generate", "philox_uniform",
           "sample_tokens", "stream"]
