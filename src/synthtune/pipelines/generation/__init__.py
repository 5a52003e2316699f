"""Generation: a vocabulary, task rows drawn from a profile, the train split and the evaluation
sets (test, probes, held-out templates, the external CUTE benchmark), the task's sub-skill
exercises (e.g. each word's letter count), and a distribution report comparing each evaluation
set with train."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
