"""fastwave: fast generation and kernels for sample-level audio models.

    model = fastwave.WaveNet()                      # or fastwave.SampleTransformer(), fastwave.load_model(path)
    tokens = fastwave.generate(model, 16000, seed=0)  # (1, 16000) mu-law tokens
    audio = model.tokens_to_audio(tokens)          # mu-law decoded (and de-emphasised where the model says)

    piano = fastwave.pretrained.piano_wavenet()     # shipped: a WaveNet that plays piano scores
    tokens = fastwave.generate(piano, 64000, cond=fastwave.pretrained.piano_cond(64000, [0]))  # random score 0

    tokenizer = fastwave.CodeTokenizer(codes=16)    # audio -> codes (spectrogram patches, autoencoder, k-means)
    lm = fastwave.CodeLM(classes=16)                # a GPT over the codes; lm.embed(codes) -> one vector per clip
    clf = fastwave.WaveletClassifier()              # Audio Transformer classifier: (B, 16000) audio -> (B, 200) logits
    cnn = fastwave.LogMelCNN(num_classes=16)       # the log-mel CNN baseline, trained the same way
"""
__version__ = "0.1.0"

from .audio import load_audio, mulaw_decode, mulaw_encode, save_audio
from .engines import SamplingParams, available_engines, generate, stream
from .models import (CodeLM, CodeLMConfig, LogMelCNN, LogMelCNNConfig, SampleTransformer, SampleTransformerConfig, WaveNet, WaveNetConfig,
                     WaveletClassifier, WaveletClassifierConfig, load_model, save_checkpoint)
from .codes.tokenizer import CodeTokenizer, TokenizerConfig
from . import pretrained  # the shipped models: fastwave.pretrained.piano_wavenet()
from . import codes, tagging, training  # the pipelines: fastwave.training.train_sample_model, ...

__all__ = ["CodeLM", "CodeLMConfig", "CodeTokenizer", "LogMelCNN", "LogMelCNNConfig", "SampleTransformer", "SampleTransformerConfig", "SamplingParams",
           "TokenizerConfig", "WaveNet", "WaveNetConfig", "WaveletClassifier", "WaveletClassifierConfig",
           "available_engines", "codes", "generate", "load_audio", "pretrained", "load_model", "mulaw_decode", "mulaw_encode",
           "save_audio", "save_checkpoint", "stream", "tagging", "training"]
