"""A sample model's own token <-> audio mapping: mu-law, after pre-emphasis where its config sets one."""
import numpy as np
import pytest

import fastwave
from fastwave import SampleTransformer, WaveNet, load_model
from fastwave.audio import de_emphasis, pre_emphasis

TINY = {WaveNet: dict(layers=2, cycles=1, residual_channels=4, gate_channels=4, skip_channels=4),
        SampleTransformer: dict(layers=1, heads=1, width=16, context=16)}


@pytest.mark.parametrize("kind", [WaveNet, SampleTransformer])
def test_tokens_are_mulaw_of_the_pre_emphasised_audio(kind, tmp_path):
    audio = (0.4 * np.sin(np.linspace(0, 300, 4000))).astype(np.float32)
    plain, shaped = kind(**TINY[kind]), kind(pre_emphasis=0.85, **TINY[kind])
    np.testing.assert_array_equal(plain.audio_to_tokens(audio), fastwave.mulaw_encode(audio))
    tokens = shaped.audio_to_tokens(audio)
    np.testing.assert_array_equal(tokens, fastwave.mulaw_encode(pre_emphasis(audio, 0.85)))
    np.testing.assert_allclose(shaped.tokens_to_audio(tokens), de_emphasis(fastwave.mulaw_decode(tokens), 0.85))
    assert np.sqrt(np.mean((shaped.tokens_to_audio(tokens) - audio) ** 2)) < 0.02 * np.sqrt(np.mean(audio ** 2))
    shaped.save(tmp_path / "m.safetensors")
    assert load_model(tmp_path / "m.safetensors").config.pre_emphasis == 0.85


@pytest.mark.parametrize("kind", [WaveNet, SampleTransformer])
@pytest.mark.parametrize("bad", [1.0, -0.5, "0.9"])
def test_a_bad_pre_emphasis_is_refused(kind, bad):
    with pytest.raises(ValueError, match="pre_emphasis"):
        kind(pre_emphasis=bad, **TINY[kind])
