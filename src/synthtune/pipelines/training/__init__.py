"""Training: convert the base model once, hold out validation rows, then fine-tune it (LoRA with
peft, or full) on the validated rows and the curated sub-skill exercises; ``export`` merges the
result into one model directory for serving."""

from .pipeline import create_export_pipeline, create_pipeline

__all__ = ["create_export_pipeline", "create_pipeline"]
