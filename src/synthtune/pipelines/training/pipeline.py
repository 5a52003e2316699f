"""Wiring of the training pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import prepare_base_model, train_lora


def create_pipeline(**kwargs) -> Pipeline:
    """GGUF -> plain base model; base model + validated rows -> LoRA adapter + log."""
    return Pipeline(
        [
            node(prepare_base_model, "params:training.base_model", "base_model", name="prepare_base_model"),
            node(
                train_lora,
                ["base_model", "model_input_train", "params:training"],
                ["lora_adapter", "training_log"],
                name="train_lora",
            ),
        ]
    )
