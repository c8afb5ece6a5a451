"""Rendering clip plans to audio with a General MIDI SoundFont.

The default SoundFont is FluidR3_GM (148 MB of sampled instruments: Debian's `fluid-soundfont-gm`
puts it at /usr/share/sounds/sf2/FluidR3_GM.sf2), played in-process by `tinysoundfont`
(`pip install --no-deps tinysoundfont`: its pyaudio dependency is for playback only). Rendering is
deterministic: the same plan gives the same samples. A renderer given several SoundFonts plays
instrument ``program + 128 * i`` with the i-th (``fastwave.corpora.gm``): Debian's
`timgm6mb-soundfont` (TimGM6mb, 6 MB) is a second GM set that doubles the instruments.
"""
from __future__ import annotations

import os

import numpy as np

from .._checks import MissingFileError
from . import gm
from .plans import Clip, Source

DEFAULT_SOUNDFONT = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PEAK = 0.99  # a clip louder than this is scaled down to it (whole clip: the mix keeps its balance)


class SoundFontRenderer:
    """Renders a Clip to mono float32 at ``sample_rate``: each source alone on a fresh voice set,
    summed at its gain; stereo output is averaged to mono.

    Args:
        soundfont: path of an .sf2 file, or a list of up to ``gm.MAX_SOUNDFONTS`` of them (the i-th
            plays instruments 128 i to 128 i + 127); default: FluidR3_GM where Debian installs it.
        sample_rate: Hz (default 16,000).

    Attributes: ``soundfonts`` (the paths, in order) and ``soundfont`` (the first).
    """

    def __init__(self, soundfont=None, sample_rate: int = 16000):
        try:
            import tinysoundfont
        except ImportError as err:
            raise ImportError("rendering corpora needs tinysoundfont: pip install --no-deps tinysoundfont") from err
        given = [soundfont] if soundfont is None or isinstance(soundfont, (str, os.PathLike)) else list(soundfont)
        if not 1 <= len(given) <= gm.MAX_SOUNDFONTS:
            raise ValueError(f"soundfont must be a path or a list of 1 to {gm.MAX_SOUNDFONTS} paths, got {soundfont!r}")
        paths = [os.fspath(path) if path is not None else DEFAULT_SOUNDFONT for path in given]
        for path, asked in zip(paths, given):  # every file checked before any is loaded (150 MB each)
            if not os.path.isfile(path):
                hint = " (Debian: apt install fluid-soundfont-gm)" if asked is None else ""
                raise MissingFileError(2, f"soundfont: no such file{hint}", path)
        if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or not 8000 <= sample_rate <= 96000:
            raise ValueError(f"sample_rate must be an int in [8000, 96000], got {sample_rate!r}")
        self.soundfonts, self.soundfont, self.sample_rate = paths, paths[0], sample_rate
        self._synth = tinysoundfont.Synth(samplerate=sample_rate)
        self._fonts = [self._synth.sfload(path) for path in paths]

    def _source(self, source: Source, samples: int) -> np.ndarray:
        font, program = divmod(source.program, 128)
        if not 0 <= font < len(self._fonts):
            raise ValueError(f"instrument {source.program} is program {program} of the SoundFont at index {font} "
                             f"(0-based): it needs {font + 1} SoundFonts, this renderer has {len(self._fonts)}: "
                             f"{self.soundfonts}")
        synth = self._synth
        synth.sounds_off()  # the last clip's voices only begin a quick release (about 10 ms) here:
        synth.generate(round(0.1 * self.sample_rate))  # let it end unheard, or it opens this clip
        synth.program_select(0, self._fonts[font], 0, program)
        events = sorted([(round(n.start * self.sample_rate), 1, n.pitch, n.velocity) for n in source.notes]
                        + [(round((n.start + n.duration) * self.sample_rate), 0, n.pitch, 0) for n in source.notes])
        out, done = np.zeros(samples, dtype=np.float32), 0
        for at, on, pitch, velocity in events + [(samples, -1, 0, 0)]:
            at = min(at, samples)
            if at > done:
                stereo = np.frombuffer(synth.generate(at - done), dtype=np.float32)
                out[done:at] = stereo.reshape(-1, 2).mean(axis=1)
                done = at
            if on == 1:
                synth.noteon(0, pitch, velocity)
            elif on == 0:
                synth.noteoff(0, pitch)
        return out

    def render(self, clip: Clip, gain_db: float = 0.0) -> np.ndarray:
        """The clip's audio, ``gain_db`` louder than the SoundFont plays it: float32
        (round(seconds * sample_rate),), peak at most PEAK."""
        samples = round(clip.seconds * self.sample_rate)
        mix = np.zeros(samples, dtype=np.float32)
        for source in clip.sources:
            mix += source.gain * 10.0 ** (gain_db / 20.0) * self._source(source, samples)
        peak = float(np.abs(mix).max()) if samples else 0.0
        return mix * (PEAK / peak) if peak > PEAK else mix
