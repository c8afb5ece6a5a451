"""Sample-level audio models; every model exports its weights in one format for the engines."""
from .checkpoint import load_model, register_model, save_checkpoint
from .wavenet import WaveNet, WaveNetConfig

register_model(WaveNet)

__all__ = ["WaveNet", "WaveNetConfig", "load_model", "save_checkpoint"]
