"""Kedro datasets that kedro-datasets lacks: a Hugging Face model directory, a LoRA adapter
and a directory of files (GX Data Docs)."""

from .adapter_dataset import LoraAdapterDataset
from .file_tree_dataset import FileTreeDataset
from .model_dataset import HFModelDataset

__all__ = ["FileTreeDataset", "HFModelDataset", "LoraAdapterDataset"]
