"""A Hugging Face causal LM and its tokenizer, saved as one plain directory."""

from kedro.io import AbstractDataset, DatasetError

from synthtune.llm import LanguageModel

from ._atomic import LocalPathDataset, atomic_directory


class HFModelDataset(LocalPathDataset, AbstractDataset[LanguageModel, LanguageModel]):
    """Saves a :class:`LanguageModel` with ``save_pretrained`` (safetensors + tokenizer)
    and loads it back with ``AutoModelForCausalLM`` / ``AutoTokenizer``.

    Example catalog entry::

        base_model:
          type: synthtune.datasets.HFModelDataset
          filepath: data/06_models/base_model
    """

    def load(self) -> LanguageModel:
        from safetensors import SafetensorError
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not (self._filepath / "config.json").is_file():
            raise DatasetError(
                f"No model at {self._filepath}: expected a config.json there (run the training pipeline first)"
            )
        try:
            model = AutoModelForCausalLM.from_pretrained(self._filepath)
            return LanguageModel(model=model, tokenizer=AutoTokenizer.from_pretrained(self._filepath))
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise self._damaged(error) from error

    def save(self, data: LanguageModel) -> None:
        with atomic_directory(self._filepath) as staging:
            data.model.save_pretrained(staging)
            data.tokenizer.save_pretrained(staging)

    def _exists(self) -> bool:
        return (self._filepath / "config.json").is_file()
