"""Curation: normalise rows and remove exact duplicates, keeping every dropped row with its reason."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
