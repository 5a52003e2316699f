"""Training: convert the base model once, then LoRA-fine-tune it with peft on the validated rows."""

from .pipeline import create_pipeline

__all__ = ["create_pipeline"]
