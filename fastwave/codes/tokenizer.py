"""Audio -> a sequence of discrete codes without labels (Verma & Smith, 2020).

    tokenizer = fastwave.CodeTokenizer(codes=16)
    tokenizer.fit(["clips/"])            # folders, files, or arrays at tokenizer.sample_rate
    codes = tokenizer.encode(audio)      # (T,) audio -> (T // patch_samples,) int64 codes
    patches = tokenizer.decode(codes)    # (N, feature_bins, patch_frames): the centroids' spectrograms

The pipeline: a log-mel (or log-magnitude STFT) spectrogram; non-overlapping patches of
``patch_frames`` frames spanning every frequency, flattened and standardised per dimension; a small
fully connected autoencoder (``hidden`` then ``bottleneck`` on each side, GELU between layers)
trained on them by mean squared error; k-means (``fastwave.codes.kmeans``) over the bottleneck vectors. A
patch's code is its nearest centroid; ``decode`` runs a centroid through the decoder, so
reconstructions are the dictionary's spectrogram patches. Code i is frames [i * patch_frames,
(i + 1) * patch_frames), centred on samples i * patch_samples + j * hop_length: it stands for samples
[i * patch_samples, (i + 1) * patch_samples) and its windows reach n_fft / 2 samples to either side
(zero padding at the ends); samples after the last whole patch are dropped. Checkpoints are
safetensors with the config inside (no pickled code runs on load); there is no torch.save format.

Why these defaults: 10 ms hops and 4-frame patches give 25 codes per second, short enough that a
code is one acoustic event and a 10 s clip is 250 codes; 16 codes is the paper's example dictionary
(too few average notes away, too many stop being robust to noise; ``with_codes`` refits the
dictionary for a sweep); 64 mel bands at 16 kHz resolve pitch classes in the low octaves while
keeping a patch at 256 numbers.
"""
from __future__ import annotations

import copy
import os
import zipfile
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._files import open_atomically
from .._checks import check_config_ints, check_int_arg, check_tokens
from ..audio import load_audio, log_mel_spectrogram, log_spectrogram
from .kmeans import kmeans, nearest_centroid
from ..models.checkpoint import ConfiguredModule, load_model, register_model

FEATURES = ("logmel", "stft")


@dataclass
class TokenizerConfig:
    sample_rate: int = 16000
    features: str = "logmel"  # "logmel" or "stft" (log magnitude)
    n_fft: int = 512  # 32 ms at 16 kHz
    hop_length: int = 160  # 10 ms at 16 kHz
    n_mels: int = 64  # "logmel" only
    patch_frames: int = 4  # frames per patch: one code per 40 ms
    hidden: tuple = (512, 256)  # autoencoder widths between a patch and the bottleneck (mirrored)
    bottleneck: int = 64
    codes: int = 16  # the dictionary size K (k-means clusters), 2 .. 65,536

    def __post_init__(self):
        if isinstance(self.hidden, list):  # from JSON
            self.hidden = tuple(self.hidden)
        if not isinstance(self.hidden, tuple):
            raise ValueError(f"CodeTokenizer hidden must be a tuple of layer widths, got {self.hidden!r}")
        check_config_ints(self, "CodeTokenizer", ("sample_rate", "n_fft", "hop_length", "n_mels", "patch_frames",
                                                  "bottleneck"))
        check_config_ints(self, "CodeTokenizer", ("codes",), 2, 2 ** 16)
        for width in self.hidden:
            if isinstance(width, bool) or not isinstance(width, int) or width < 1:
                raise ValueError(f"CodeTokenizer hidden must hold positive ints, got {self.hidden!r}")
        if self.features not in FEATURES:
            raise ValueError(f"CodeTokenizer features must be one of {FEATURES}, got {self.features!r}")

    @property
    def feature_bins(self) -> int:
        return self.n_mels if self.features == "logmel" else self.n_fft // 2 + 1

    @property
    def patch_size(self) -> int:
        """Numbers in one flattened patch: feature_bins * patch_frames."""
        return self.feature_bins * self.patch_frames

    @property
    def patch_samples(self) -> int:
        """Audio samples per code."""
        return self.patch_frames * self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)


class PatchAutoencoder(nn.Module):
    """patch_size -> hidden... -> bottleneck -> ...hidden -> patch_size, GELU between layers."""

    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = [config.patch_size, *config.hidden, config.bottleneck]
        self.encoder = _mlp(widths)
        self.decoder = _mlp(widths[::-1])

    def forward(self, x):
        return self.decoder(self.encoder(x))


def _mlp(widths: list[int]) -> nn.Sequential:
    layers = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers += [nn.Linear(fan_in, fan_out)] + ([nn.GELU()] if i < len(widths) - 2 else [])
    return nn.Sequential(*layers)


@register_model
class CodeTokenizer(ConfiguredModule):
    """Spectrogram patches -> autoencoder -> k-means codes; see the module docstring.
    ``CodeTokenizer(codes=64, features="stft")`` or from a ``TokenizerConfig``."""

    model_type = "code_tokenizer"
    config_class = TokenizerConfig

    def __init__(self, config: TokenizerConfig | None = None, **overrides):
        super().__init__(config, **overrides)
        c = self.config
        self.autoencoder = PatchAutoencoder(c)
        self.register_buffer("patch_mean", torch.zeros(c.patch_size))
        self.register_buffer("patch_std", torch.ones(c.patch_size))
        self.register_buffer("centroids", torch.zeros(c.codes, c.bottleneck))
        self.register_buffer("fitted", torch.zeros(()))  # 1 once fit: a float, as checkpoints hold one dtype
        self.eval()  # nothing here behaves differently in training; fit trains the autoencoder itself

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def is_fitted(self) -> bool:
        return bool(self.fitted)

    @classmethod
    def load(cls, path, map_location="cpu") -> CodeTokenizer:
        """A tokenizer saved with ``save`` (safetensors, config inside)."""
        tokenizer = load_model(path, map_location)
        if not isinstance(tokenizer, cls):
            raise ValueError(f"{path} holds a {tokenizer.model_type}, not a code tokenizer")
        return tokenizer

    def save(self, path) -> None:
        self._check_fitted()
        super().save(path)

    # ---- features --------------------------------------------------------------------------------

    def patches(self, audio, sample_rate: int | None = None) -> torch.Tensor:
        """audio (T,) or (B, T) at ``sample_rate`` (default: the tokenizer's; another rate is refused)
        -> flattened patches (N, patch_size) or (B, N, patch_size), N = T // patch_samples, each
        patch frequency-major: (feature_bins, patch_frames) flattened."""
        c = self.config
        audio = _check_clip(audio, sample_rate, c)
        device = self.patch_mean.device
        if c.features == "logmel":
            spec = log_mel_spectrogram(audio.to(device), c.sample_rate, c.n_fft, c.hop_length, c.n_mels)
        else:
            spec = log_spectrogram(audio.to(device), c.n_fft, c.hop_length)
        count = audio.shape[-1] // c.patch_samples
        spec = spec[..., :count * c.patch_frames].float()  # (..., bins, count * frames)
        spec = spec.unflatten(-1, (count, c.patch_frames)).movedim(-3, -2)  # (..., count, bins, frames)
        return spec.flatten(-2)

    def features_of(self, items, progress: bool = False) -> torch.Tensor:
        """Patches of every clip in ``items`` stacked: (sum of N_i, patch_size) on the tokenizer's
        device. items: a list (or iterable) of clips, each an audio array (T,) at the tokenizer's
        rate, an (audio, sample_rate) pair, a file path (read and resampled to the tokenizer's rate)
        or a folder (every audio file under it, as ``fastwave.training.data.audio_files``); or one array:
        (T,) one clip, (B, T) B clips."""
        from tqdm.auto import tqdm

        from ..training.data import audio_files

        if isinstance(items, (str, os.PathLike, np.ndarray, torch.Tensor)):
            items = list(items) if getattr(items, "ndim", 0) == 2 else [items]
        expanded = []
        for item in items:
            is_path = isinstance(item, (str, os.PathLike))
            expanded += audio_files(item) if is_path and os.path.isdir(item) else [item]
        if not expanded:
            raise ValueError("no audio was given")
        rows = [self.clip_patches(item, index)
                for index, item in enumerate(tqdm(expanded, desc="features", unit="clip", disable=not progress))]
        return torch.cat([r.reshape(-1, self.config.patch_size) for r in rows])

    def clip_patches(self, item, index: int | None = None) -> torch.Tensor:
        """Patches (N, patch_size) of one clip given as ``features_of`` takes it; errors name the file
        (or ``item {index}``)."""
        try:
            if isinstance(item, (str, os.PathLike)):
                return self.patches(load_audio(item, sample_rate=self.sample_rate)[0])
            if isinstance(item, tuple) and len(item) == 2:
                return self.patches(*item)
            return self.patches(item)
        except (ValueError, TypeError) as err:
            name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"item {index}"
            raise type(err)(f"{name}: {err}") from None

    # ---- fitting ---------------------------------------------------------------------------------

    def fit(self, audio, *, steps: int = 2000, batch_size: int = 256, lr: float = 1e-3,
            kmeans_iterations: int = 100, seed: int = 0, progress: bool = True) -> dict:
        """Fit the autoencoder then the k-means dictionary on ``audio`` (as ``features_of``), on the
        tokenizer's device; deterministic on the CPU for a seed. The autoencoder takes ``steps``
        Adam updates on mini-batches from reshuffled passes over the patches (warm-up then cosine
        decay, ``fastwave.training.sample_models.lr_at``): a count of updates rather than epochs, so small and large
        corpora both train enough. -> {"patches", "autoencoder_loss" (per step, on standardised
        patches), "kmeans_inertia", "kmeans_iterations"}. ValueError before any training if there
        are fewer patches than codes."""
        from ..training.loop import check_hyperparameters
        from ..training.sample_models import seeded_rng

        steps, batch_size = check_int_arg(steps, "steps"), check_int_arg(batch_size, "batch_size")
        kmeans_iterations = check_int_arg(kmeans_iterations, "kmeans_iterations", minimum=0)
        check_hyperparameters(lr=lr, seed=seed)  # every argument checked before anything changes
        if torch.is_inference_mode_enabled():
            raise ValueError("CodeTokenizer.fit trains the autoencoder: call it outside torch.inference_mode()")
        patches = self.features_of(audio, progress)
        self._check_enough(patches)
        self.fitted.fill_(0.0)  # until the dictionary matches the new autoencoder
        with seeded_rng(seed, patches.device):
            for module in self.autoencoder.modules():  # a fresh start from the seed on every fit
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
            self.patch_mean.copy_(patches.mean(0))
            self.patch_std.copy_(patches.std(0, correction=0).clamp_min(1e-5))  # constant bins: no 0/0
            losses = self._train_autoencoder(self._standardise(patches), steps, batch_size, lr, seed, progress)
        result = self._fit_codebook(patches, kmeans_iterations, seed, progress)
        return {"patches": len(patches), "autoencoder_loss": losses, **result}

    def with_codes(self, codes: int, audio=None, *, patches=None, kmeans_iterations: int = 100, seed: int = 0,
                   progress: bool = False) -> CodeTokenizer:
        """A copy with the same features and autoencoder and a new dictionary of ``codes`` fitted on
        ``audio`` (as ``features_of``) or on ``patches`` (N, patch_size) already computed: a sweep
        over dictionary sizes trains the autoencoder and reads the audio once."""
        self._check_fitted()
        codes = check_int_arg(codes, "codes", 2)
        if (audio is None) == (patches is None):
            raise ValueError("with_codes takes audio or patches (one of them)")
        other = copy.deepcopy(self)
        other.config = TokenizerConfig(**{**self.config.to_dict(), "codes": codes})
        other.centroids = torch.zeros(codes, other.config.bottleneck, device=self.centroids.device)
        patches = other.features_of(audio, progress) if patches is None else _check_patches(patches, self.config)
        other._check_enough(patches)
        other._fit_codebook(patches.to(self.centroids.device), kmeans_iterations, seed, progress)
        return other

    def _train_autoencoder(self, patches, steps, batch_size, lr, seed, progress) -> list[float]:
        from tqdm.auto import tqdm

        from ..training.loop import lr_at

        optimizer = torch.optim.Adam(self.autoencoder.parameters(), lr=lr)
        generator = torch.Generator().manual_seed(seed)
        batches = iter(())
        losses, running = [], None
        self.autoencoder.train()
        # enable_grad: a caller's no_grad() must not silently stop training (inference_mode refuses).
        with torch.enable_grad(), tqdm(range(steps), desc="autoencoder", disable=not progress) as bar:
            for step in bar:
                index = next(batches, None)
                if index is None:  # a new pass in a new order
                    batches = iter(torch.randperm(len(patches), generator=generator).split(batch_size))
                    index = next(batches)
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(step, lr=lr, steps=steps, warmup=steps // 20)
                batch = patches[index.to(patches.device)]
                loss = F.mse_loss(self.autoencoder(batch), batch)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.item())
                running = losses[-1] if running is None else 0.95 * running + 0.05 * losses[-1]
                bar.set_postfix(mse=f"{running:.4f}", refresh=False)
        self.autoencoder.eval()
        return losses

    @torch.no_grad()
    def _fit_codebook(self, patches, iterations, seed, progress) -> dict:
        result = kmeans(self._bottleneck(patches), self.config.codes, iterations=iterations, seed=seed,
                        progress=progress)
        self.centroids.copy_(result.centroids)
        self.fitted.fill_(1.0)
        return {"kmeans_inertia": result.inertia, "kmeans_iterations": result.iterations}

    def _check_enough(self, patches) -> None:
        if len(patches) < self.config.codes:
            raise ValueError(f"codes={self.config.codes} but the audio gives only {len(patches)} patches of "
                             f"{self.config.patch_samples} samples: k-means needs at least one patch per code "
                             "(use fewer codes or more audio)")

    # ---- codes -----------------------------------------------------------------------------------

    def _standardise(self, patches):
        return (patches - self.patch_mean) / self.patch_std

    @torch.no_grad()
    def _bottleneck(self, patches):
        return self.autoencoder.encoder(self._standardise(patches))

    def encode(self, audio, sample_rate: int | None = None) -> torch.Tensor:
        """audio (T,) or (B, T) at the tokenizer's rate -> codes (N,) or (B, N) int64 on the CPU,
        N = T // patch_samples >= 1; the nearest centroid of each patch (lowest index on ties)."""
        self._check_fitted()
        return self.encode_patches(self.patches(audio, sample_rate))

    def encode_item(self, item) -> torch.Tensor:
        """One clip as ``features_of`` takes it (an array at the tokenizer's rate, an (audio,
        sample_rate) pair, or a file path: resampled, channels mixed to mono) -> codes (N,); errors
        name the file."""
        self._check_fitted()
        return self.encode_patches(self.clip_patches(item))

    @torch.no_grad()
    def encode_patches(self, patches) -> torch.Tensor:
        """Patches (..., patch_size) from ``patches`` -> codes (...) int64 on the CPU."""
        self._check_fitted()
        patches = _check_patches(patches, self.config).to(self.centroids.device)
        codes, _ = nearest_centroid(self._bottleneck(patches.reshape(-1, patches.shape[-1])), self.centroids)
        return codes.reshape(patches.shape[:-1]).cpu()

    @torch.no_grad()
    def latents(self, patches) -> torch.Tensor:
        """Patches (..., patch_size) from ``patches`` -> the autoencoder's bottleneck vectors
        (..., bottleneck) float32 on the CPU: what k-means quantises into codes (a probe on them
        measures what the quantisation loses)."""
        self._check_fitted()
        patches = _check_patches(patches, self.config).to(self.centroids.device)
        flat = self._bottleneck(patches.reshape(-1, patches.shape[-1]))
        return flat.reshape(*patches.shape[:-1], -1).float().cpu()

    @torch.no_grad()
    def decode(self, codes) -> torch.Tensor:
        """codes (..., N) int in [0, codes) -> patches (..., N, feature_bins, patch_frames): each code's
        centroid through the decoder, in the feature's units (log magnitude). ``decoded.movedim(-3,
        -2).flatten(-2)`` lays them end to end as a (..., feature_bins, N * patch_frames) spectrogram."""
        self._check_fitted()
        codes = check_tokens(codes, self.config.codes, "codes", rank=None).to(self.centroids.device)
        flat = self.autoencoder.decoder(self.centroids[codes]) * self.patch_std + self.patch_mean
        return flat.unflatten(-1, (self.config.feature_bins, self.config.patch_frames))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise ValueError("this CodeTokenizer is not fitted: call fit(audio) or CodeTokenizer.load(path)")


def _check_patches(patches, config: TokenizerConfig) -> torch.Tensor:
    from .._checks import as_tensor

    patches = as_tensor(patches, "patches")
    if not patches.dtype.is_floating_point or patches.dim() < 1 or patches.shape[-1] != config.patch_size:
        raise ValueError(f"patches must be floating (..., {config.patch_size}) from CodeTokenizer.patches, got "
                         f"{patches.dtype} {tuple(patches.shape)}")
    return patches


def _check_clip(audio, sample_rate, config: TokenizerConfig) -> torch.Tensor:
    """Audio (T,) or (B, T), float, at the tokenizer's rate and at least one patch long -> a tensor."""
    from .._checks import as_tensor

    if sample_rate is not None and sample_rate != config.sample_rate:
        raise ValueError(f"audio is at {sample_rate} Hz but this tokenizer works at {config.sample_rate} Hz: "
                         f"resample it first (fastwave.audio.resample) or pass file paths, which are resampled")
    tensor = as_tensor(np.asarray(audio) if isinstance(audio, (list, tuple)) else audio, "audio")
    if not tensor.dtype.is_floating_point:
        raise TypeError(f"audio must be floating point samples in [-1, 1], got dtype {tensor.dtype}")
    if tensor.dim() not in (1, 2):
        raise ValueError(f"audio must be (T,) or (B, T), got shape {tuple(tensor.shape)}")
    if tensor.shape[-1] < config.patch_samples:
        raise ValueError(f"audio has {tensor.shape[-1]} samples; one code needs at least {config.patch_samples} "
                         f"(patch_frames {config.patch_frames} x hop_length {config.hop_length}) at "
                         f"{config.sample_rate} Hz")
    return tensor


# ---- codes files ---------------------------------------------------------------------------------

def save_codes(path, names, codes, classes: int) -> None:
    """Write clips' code sequences to an .npz (no pickles): ``names`` (N,) str, ``codes`` the
    sequences end to end, ``lengths`` (N,), ``classes`` the dictionary size."""
    codes = [check_tokens(c, classes, f"codes[{i}]", rank=1) for i, c in enumerate(codes)]
    if len(codes) != len(names):
        raise ValueError(f"{len(names)} names for {len(codes)} code sequences")
    flat = torch.cat(codes).numpy().astype(np.int32) if codes else np.zeros(0, np.int32)
    with open_atomically(path, "wb") as f:  # a file object: numpy would append ".npz" to a bare path
        np.savez(f, names=np.array([str(n) for n in names]), codes=flat,
                 lengths=np.array([len(c) for c in codes], np.int64), classes=np.int64(classes))


def load_codes(path) -> tuple[list[str], list[torch.Tensor], int]:
    """-> (names, one int64 (T_i,) tensor per clip, classes) from ``save_codes``'s file."""
    from .._checks import check_file

    path = check_file(path, "path")
    try:
        with np.load(path, allow_pickle=False) as data:
            names, flat, lengths, classes = (data["names"], data["codes"], data["lengths"], int(data["classes"]))
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path} is not a codes file written by `fastwave encode` / save_codes: {err}") from None
    for name, array in (("names", names), ("codes", flat), ("lengths", lengths)):
        if array.ndim != 1:
            raise ValueError(f"{path}: {name} must be one-dimensional, got shape {array.shape} (an edited file?)")
    if flat.dtype.kind not in "iu" or lengths.dtype.kind not in "iu" or classes < 1:
        raise ValueError(f"{path}: codes and lengths must be integers and classes >= 1, got {flat.dtype}, "
                         f"{lengths.dtype} and {classes} (an edited file?)")
    if (lengths < 0).any() or lengths.sum() != len(flat) or len(names) != len(lengths):
        raise ValueError(f"{path}: the lengths do not add up to the codes stored (truncated or edited file?)")
    clips = list(torch.from_numpy(flat.astype(np.int64)).split(lengths.tolist()))
    return [str(n) for n in names], [check_tokens(c, classes, f"{path} clip {i}", rank=1, allow_empty=True)
                                     for i, c in enumerate(clips)], classes
