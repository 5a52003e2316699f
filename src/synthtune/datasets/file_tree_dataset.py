"""A directory of files (e.g. a static HTML site), saved and loaded as ``{relative path: bytes}``."""

from kedro.io import AbstractDataset, DatasetError

from ._atomic import LocalPathDataset, atomic_directory


class FileTreeDataset(LocalPathDataset, AbstractDataset[dict[str, bytes], dict[str, bytes]]):
    """Writes every ``{relative path: bytes}`` item under ``filepath`` at once (the old tree
    is replaced atomically); loads the tree back the same way.

    Example catalog entry::

        validation_data_docs:
          type: synthtune.datasets.FileTreeDataset
          filepath: data/08_reporting/data_docs
    """

    def load(self) -> dict[str, bytes]:
        if not self._filepath.is_dir():
            raise DatasetError(f"No directory at {self._filepath}")
        return {
            str(p.relative_to(self._filepath)): p.read_bytes() for p in sorted(self._filepath.rglob("*")) if p.is_file()
        }

    def save(self, data: dict[str, bytes]) -> None:
        with atomic_directory(self._filepath) as staging:
            for relative, content in data.items():
                target = staging / relative
                if not target.resolve().is_relative_to(staging.resolve()):
                    raise DatasetError(f"{relative!r} would be written outside {self._filepath}")
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)

    def _exists(self) -> bool:
        return self._filepath.is_dir()
