"""Kedro datasets that kedro-datasets lacks: a Hugging Face model directory and a LoRA adapter."""

from .adapter_dataset import LoraAdapterDataset
from .model_dataset import HFModelDataset

__all__ = ["HFModelDataset", "LoraAdapterDataset"]
