"""The benchmark: ``python -m ecomeasure.bench --model mistral --quant int8_pure``.

Measures the energy per generated token of each (model, quantization, batch size) with the
native meter and with the seed study's 10 Hz reference method, on the same iterations, and
writes the results described in ``docs/results-format.md``.
"""
from .cli import build_parser, main

__all__ = ["build_parser", "main"]
