"""The result of fine-tuning: a peft LoRA adapter directory, or a whole model directory."""

from typing import Any

from kedro.io import AbstractDataset, DatasetError

from synthtune.llm import LoraAdapter

from ._atomic import LocalPathDataset, atomic_directory


class FineTunedDataset(LocalPathDataset, AbstractDataset[Any, Any]):
    """Saves what training returns with ``save_pretrained``: a ``PeftModel`` (or a
    :class:`LoraAdapter`) as ``adapter_config.json`` + ``adapter_model.safetensors``, or a
    fully fine-tuned model as ``config.json`` + ``model.safetensors``.

    Loads a :class:`LoraAdapter` (peft config and adapter weights, ready to be put on a base
    model; no base model is needed to inspect it) or the full model, whichever is there.

    Example catalog entry::

        fine_tuned:
          type: synthtune.datasets.FineTunedDataset
          filepath: data/06_models/fine_tuned
    """

    def load(self) -> Any:
        from safetensors import SafetensorError

        try:
            return self._read()
        except (OSError, ValueError, RuntimeError, SafetensorError) as error:
            raise self._damaged(error) from error

    def _read(self) -> Any:  # not `_load`: Kedro would take that for the load method
        if (self._filepath / "adapter_config.json").is_file():
            from peft import PeftConfig
            from peft.utils import load_peft_weights

            return LoraAdapter(
                config=PeftConfig.from_pretrained(self._filepath), weights=load_peft_weights(self._filepath)
            )
        if (self._filepath / "config.json").is_file():
            from transformers import AutoModelForCausalLM

            return AutoModelForCausalLM.from_pretrained(self._filepath)
        raise DatasetError(
            f"Nothing fine-tuned at {self._filepath}: expected adapter_config.json (LoRA) or config.json (full)"
        )

    def save(self, data: Any) -> None:
        from safetensors.torch import save_file

        with atomic_directory(self._filepath) as staging:
            if isinstance(data, LoraAdapter):
                data.config.save_pretrained(staging)
                save_file(data.weights, staging / "adapter_model.safetensors", metadata={"format": "pt"})
            else:
                data.save_pretrained(staging)

    def _exists(self) -> bool:
        return (self._filepath / "adapter_config.json").is_file() or (self._filepath / "config.json").is_file()
