"""Generation: synthetic letter-counting rows, a train split and a disjoint test split."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
