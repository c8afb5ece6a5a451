"""fastwave: fast generation and kernels for sample-level audio models.

    model = fastwave.WaveNet()                      # or fastwave.SampleTransformer(), fastwave.load_model(path)
    tokens = fastwave.generate(model, 16000, seed=0)  # (1, 16000) mu-law tokens
    audio = fastwave.mulaw_decode(tokens)
"""
__version__ = "0.1.0"

from .audio import load_audio, mulaw_decode, mulaw_encode, save_audio
from .engines import SamplingParams, available_engines, generate, stream
from .models import SampleTransformer, SampleTransformerConfig, WaveNet, WaveNetConfig, load_model, save_checkpoint

__all__ = ["SampleTransformer", "SampleTransformerConfig", "SamplingParams", "WaveNet", "WaveNetConfig", "available_engines", "generate", "load_audio",
           "load_model", "mulaw_decode", "mulaw_encode", "save_audio", "save_checkpoint", "stream"]
