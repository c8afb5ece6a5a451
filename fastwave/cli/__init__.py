"""The `fastwave` command line: ``main`` is the entry point (``entry_point.py``); one module per command group
(``generation``, ``codes``, ``tagging``, ``corpus``), and ``bench``, the measurements `fastwave bench`
prints."""
from .entry_point import build_parser, main

__all__ = ["build_parser", "main"]
