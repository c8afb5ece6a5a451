"""Clip tagging: training, scoring and applying clip classifiers (the wavelet Audio Transformer of
Verma & Berger, 2021, and the log-mel CNN baseline), and what a raw-waveform front end learned.

    history = fastwave.tagging.train_classifier(model, train, val, epochs=10)  # ``classify``
    probs = fastwave.tagging.classify_audio(model, audio, sample_rate)
    fastwave.tagging.plot_frontend(model, "frontend.png")                       # ``frontend_analysis``
"""
from .classify import ClassifierReport, classify_audio, evaluate_classifier, train_classifier
from .frontend_analysis import FrontendAnalysis, analyze_frontend, plot_frontend

__all__ = ["ClassifierReport", "FrontendAnalysis", "analyze_frontend", "classify_audio", "evaluate_classifier",
           "plot_frontend", "train_classifier"]
