"""Kedro datasets that kedro-datasets lacks: a Hugging Face model directory, a LoRA adapter
and a directory of files (GX Data Docs)."""

from .adapter_dataset import LoraAdapterDataset
from .atomic import AtomicCSVDataset, AtomicJSONDataset, AtomicParquetDataset
from .file_tree_dataset import FileTreeDataset
from .model_dataset import HFModelDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicParquetDataset",
    "FileTreeDataset",
    "HFModelDataset",
    "LoraAdapterDataset",
]
