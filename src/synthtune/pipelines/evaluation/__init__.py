"""Evaluation: greedy decoding on the test split, exact-match accuracy as a metrics JSON."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
