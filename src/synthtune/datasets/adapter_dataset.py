"""A peft LoRA adapter directory (``adapter_config.json`` + ``adapter_model.safetensors``)."""

from typing import Any

from kedro.io import AbstractDataset, DatasetError

from synthtune.llm import LoraAdapter

from ._atomic import LocalPathDataset, atomic_directory


class LoraAdapterDataset(LocalPathDataset, AbstractDataset[Any, LoraAdapter]):
    """Saves a ``PeftModel`` (or a :class:`LoraAdapter`) with peft's ``save_pretrained``;
    loads a :class:`LoraAdapter`: the peft config and the adapter weights, ready to be put
    on a base model with ``get_peft_model`` + ``set_peft_model_state_dict``.

    Loading does not need the base model, so the adapter can be inspected on its own.

    Example catalog entry::

        lora_adapter:
          type: synthtune.datasets.LoraAdapterDataset
          filepath: data/06_models/lora_adapter
    """

    def load(self) -> LoraAdapter:
        from peft import PeftConfig
        from peft.utils import load_peft_weights

        if not (self._filepath / "adapter_config.json").is_file():
            raise DatasetError(f"No adapter at {self._filepath}: expected adapter_config.json there")
        return LoraAdapter(config=PeftConfig.from_pretrained(self._filepath), weights=load_peft_weights(self._filepath))

    def save(self, data: Any) -> None:
        from safetensors.torch import save_file

        with atomic_directory(self._filepath) as staging:
            if isinstance(data, LoraAdapter):
                data.config.save_pretrained(staging)
                save_file(data.weights, staging / "adapter_model.safetensors", metadata={"format": "pt"})
            else:
                data.save_pretrained(staging)

    def _exists(self) -> bool:
        return (self._filepath / "adapter_config.json").is_file()
