"""Training and evaluation that every model shares.

    history = fastwave.training.train_sample_model(model, tokens, steps=2000, eval_tokens=valid)
    metrics = fastwave.training.evaluate_sample_model(model, test_tokens)   # top1, top5, bits/sample

- ``loop``: the training loop (AdamW, warm-up + cosine, checkpoints, exact resume, torchrun).
- ``sample_models``, ``evaluation``, ``stream_cond``: sample models (WaveNet, sample Transformers,
  code LMs) trained and scored teacher-forced on token streams, with their per-stream conditioning.
- ``data``, ``clip_windows``: labelled clips, their splits, and clips cut into classifier windows.
- ``metrics``: the classification metrics the code probes and the clip classifiers report.
- ``intervals``: comparing models: t-intervals over seeds, bootstrap intervals over test items
  clustered by source, and the smallest difference a test set can detect.
"""
from .clip_windows import WindowedClips, average_by_clip
from .data import LabelledClips, audio_files, clip_splits, clips_from_csv, clips_from_folders, split_indices
from .evaluation import SampleMetrics, evaluate_sample_model, next_sample_metrics
from .intervals import cluster_bootstrap, detectable_difference, t_interval
from .loop import run_training
from .metrics import accuracy, average_precision, multilabel_metrics, roc_auc
from .sample_models import train_sample_model

__all__ = ["LabelledClips", "SampleMetrics", "WindowedClips", "accuracy", "audio_files", "average_by_clip",
           "average_precision", "clip_splits", "clips_from_csv", "clips_from_folders", "cluster_bootstrap",
           "detectable_difference", "evaluate_sample_model", "multilabel_metrics", "next_sample_metrics",
           "roc_auc", "run_training", "split_indices", "t_interval", "train_sample_model"]
