"""Table and report datasets that never leave a half-written file behind.

kedro-datasets' file datasets write straight into their target, so a run killed or failing
mid-save corrupts the previous version. These subclasses write to a temporary sibling and
rename it over the target (atomic on POSIX), so readers see the old file or the new one;
the new file and its folder are fsynced, and a temporary file left by a killed run is removed
by the next save.
"""

import os
from pathlib import Path, PurePosixPath
from typing import Any

from kedro_datasets.json import JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset
from kedro_datasets.pandas import CSVDataset, ParquetDataset
from kedro_datasets.text import TextDataset

from ._atomic import fsync_path, remove_stale_siblings


class _AtomicSave:
    _staging: PurePosixPath | None = None

    def _get_save_path(self) -> PurePosixPath:
        return self._staging if self._staging is not None else super()._get_save_path()

    def save(self, data: Any) -> None:
        target = super()._get_save_path()
        remove_stale_siblings(Path(target))
        self._staging = target.parent / f".{target.name}.tmp-{os.getpid()}"
        try:
            super().save(data)
            fsync_path(Path(self._staging))
            os.replace(self._staging, target)
            fsync_path(Path(target).parent)
        finally:
            if os.path.exists(self._staging):
                os.remove(self._staging)
            self._staging = None


class AtomicParquetDataset(_AtomicSave, ParquetDataset):
    """``pandas.ParquetDataset`` with an atomic save (local files)."""


class AtomicCSVDataset(_AtomicSave, CSVDataset):
    """``pandas.CSVDataset`` with an atomic save (local files)."""


class AtomicJSONDataset(_AtomicSave, JSONDataset):
    """``json.JSONDataset`` with an atomic save (local files), writing standard JSON only: a
    NaN or infinity fails the save (naming the dataset) instead of writing ``NaN``, which
    Python reads back but browsers (kedro-viz's preview), DVC and other tools do not."""

    DEFAULT_SAVE_ARGS: dict[str, Any] = {**JSONDataset.DEFAULT_SAVE_ARGS, "allow_nan": False}


class AtomicTextDataset(_AtomicSave, TextDataset):
    """``text.TextDataset`` with an atomic save (local files), e.g. an HTML report."""


class AtomicMatplotlibDataset(_AtomicSave, MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` with an atomic save of a single figure (local files)."""
