"""Sample-level audio models, the code LM, the wavelet audio classifier and the log-mel CNN baseline; every model saves with its config
(``load_model``)."""
from .checkpoint import load_model, register_model, save_checkpoint
from .classifier import WaveletClassifier, WaveletClassifierConfig
from .code_lm import CodeLM, CodeLMConfig
from .mel_cnn import LogMelCNN, LogMelCNNConfig
from .transformer import SampleTransformer, SampleTransformerConfig
from .wavenet import WaveNet, WaveNetConfig

register_model(WaveNet)
register_model(SampleTransformer)
register_model(CodeLM)

__all__ = ["CodeLM", "CodeLMConfig", "LogMelCNN", "LogMelCNNConfig", "SampleTransformer", "SampleTransformerConfig", "WaveNet", "WaveNetConfig",
           "WaveletClassifier", "WaveletClassifierConfig", "load_model", "save_checkpoint"]
