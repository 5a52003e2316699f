"""Validation: a Great Expectations suite gates the curated rows before training."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
