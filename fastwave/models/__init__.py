"""Sample-level audio models; every model exports its weights in one format for the engines."""
from .checkpoint import load_model, register_model, save_checkpoint
from .transformer import SampleTransformer, SampleTransformerConfig
from .wavenet import WaveNet, WaveNetConfig

register_model(WaveNet)
register_model(SampleTransformer)

__all__ = ["SampleTransformer", "SampleTransformerConfig", "WaveNet", "WaveNetConfig", "load_model",
           "save_checkpoint"]
