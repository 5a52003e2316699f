"""Curation: normalise rows, then filter them step by step (quality, labels, PII, exact and near
duplicates, decontamination against every evaluation set, per-stratum caps), keeping every
dropped row with the step and reason that dropped it. Sub-skill exercises are verified,
de-duplicated and decontaminated the same way."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
