"""Kedro datasets that kedro-datasets lacks: a Hugging Face model directory, the result of
fine-tuning (LoRA adapter or whole model) and a directory of files (GX Data Docs)."""

from .atomic import (
    AtomicCSVDataset,
    AtomicJSONDataset,
    AtomicMatplotlibDataset,
    AtomicParquetDataset,
    AtomicTextDataset,
)
from .file_tree_dataset import FileTreeDataset
from .fine_tuned_dataset import FineTunedDataset
from .model_dataset import HFModelDataset

__all__ = [
    "AtomicCSVDataset",
    "AtomicJSONDataset",
    "AtomicMatplotlibDataset",
    "AtomicParquetDataset",
    "AtomicTextDataset",
    "FileTreeDataset",
    "FineTunedDataset",
    "HFModelDataset",
]
