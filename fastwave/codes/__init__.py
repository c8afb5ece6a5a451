"""Audio as a language (Verma & Smith, 2020): audio -> discrete codes -> a GPT over the codes -> a
linear probe of what it learned.

    tokenizer = fastwave.CodeTokenizer(codes=16)                         # ``tokenizer`` (k-means: ``kmeans``)
    tokenizer.fit(["clips/"])
    codes = [tokenizer.encode(clip) for clip in clips]
    lm = fastwave.CodeLM(classes=16)
    fastwave.codes.train_code_lm(lm, codes, steps=2000)                  # ``lm_training``
    rows = fastwave.codes.probe_report(lm, codes, targets, splits)       # ``probing``, ``linear_probe``
    more, sweep = fastwave.codes.probe_baselines(tokenizer, lm, clips, targets, splits)   # ``baselines``
    books = fastwave.codes.fit_residual_codebooks(latents, first=tokenizer.centroids, stages=2)   # ``residual``
    tokens = fastwave.codes.flatten_stages(fastwave.codes.residual_quantise(latents, books)[0], 16)  # a CodeLM's
"""
from .baselines import probe_baselines, probe_layers
from .linear_probe import LinearProbe, chance_accuracy, evaluate_probe, fit_linear_probe
from .lm_training import code_lm_metrics, train_code_lm
from .probing import codes_sweep, format_table, probe_report
from .residual import fit_residual_codebooks, flatten_stages, residual_quantise
from .tokenizer import CodeTokenizer, TokenizerConfig, load_codes, save_codes

__all__ = ["CodeTokenizer", "LinearProbe", "TokenizerConfig", "chance_accuracy", "code_lm_metrics", "codes_sweep",
           "evaluate_probe", "fit_linear_probe", "fit_residual_codebooks", "flatten_stages", "format_table", "load_codes",
           "probe_baselines", "probe_layers", "probe_report", "residual_quantise", "save_codes", "train_code_lm"]
