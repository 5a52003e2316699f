"""A Hugging Face causal LM and its tokenizer, saved as one plain directory."""

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError

from synthtune.llm import LanguageModel

from ._atomic import atomic_directory


class HFModelDataset(AbstractDataset[LanguageModel, LanguageModel]):
    """Saves a :class:`LanguageModel` with ``save_pretrained`` (safetensors + tokenizer)
    and loads it back with ``AutoModelForCausalLM`` / ``AutoTokenizer``.

    Example catalog entry::

        base_model:
          type: synthtune.datasets.HFModelDataset
          filepath: data/06_models/base_model
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._filepath = Path(filepath)
        self.metadata = metadata

    def load(self) -> LanguageModel:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (self._filepath / "config.json").is_file():
            raise DatasetError(
                f"No model at {self._filepath}: expected a config.json there (run the training pipeline first)"
            )
        model = AutoModelForCausalLM.from_pretrained(self._filepath)
        return LanguageModel(model=model, tokenizer=AutoTokenizer.from_pretrained(self._filepath))

    def save(self, data: LanguageModel) -> None:
        with atomic_directory(self._filepath) as staging:
            data.model.save_pretrained(staging)
            data.tokenizer.save_pretrained(staging)

    def _exists(self) -> bool:
        return (self._filepath / "config.json").is_file()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._filepath)}
