"""Training and scoring the code LM (``fastwave.CodeLM``) on clips of codes: the sample models'
teacher-forced loop and metrics (``fastwave.training``), with clips kept apart.

    metrics = train_code_lm(lm, clip_codes, steps=1000)   # clip_codes: list of 1-D int code sequences
    print(code_lm_metrics(lm, clip_codes)["perplexity"])
"""
from __future__ import annotations

import math

from ..models.code_lm import CodeLM, code_clips
from ..training.evaluation import evaluate_sample_model
from ..training.sample_models import train_sample_model


def code_lm_metrics(model: CodeLM, codes, segment: int | None = None) -> dict:
    """Teacher-forced next-code metrics over clips (as ``code_clips``, each >= 2 codes): {"top1",
    "top5", "perplexity" (exp of the mean NLL per code), "nll_nats", "bits_per_code", "positions"}."""
    clips = code_clips(codes, model.config.classes, min_length=2)
    result = evaluate_sample_model(model, clips, segment=segment or model.config.context)
    return {"top1": result["top1"], "top5": result["top5"], "perplexity": math.exp(result["nll_nats"]),
            "nll_nats": result["nll_nats"], "bits_per_code": result["bits_per_sample"],
            "positions": result["positions"]}


def train_code_lm(model: CodeLM, codes, *, steps: int, segment: int | None = None, **kwargs) -> dict:
    """Train ``model`` on clips of codes (each >= 2) with ``fastwave.training.sample_models.train_sample_model``
    (teacher forcing on random crops; its keyword arguments pass through). ``segment``, the input
    length per crop, defaults to the context; clips shorter than a crop are taken whole and padded
    (``pad_short``), and clips are never joined, so no prediction reads across two recordings."""
    clips = code_clips(codes, model.config.classes, min_length=2)
    return train_sample_model(model, clips, steps=steps, segment=segment or model.config.context, pad_short=True,
                              **kwargs)
