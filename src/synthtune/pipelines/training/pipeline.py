"""Wiring of the training pipeline, and of ``export`` (merge the fine-tuning into the base)."""

from kedro.pipeline import Pipeline, node

from .loop import fine_tune
from .nodes import add_subskill_rows, merge_fine_tuned, prepare_base_model, split_training_log, split_validation_rows


def create_pipeline(**kwargs) -> Pipeline:
    """GGUF -> plain base model; base model + validated rows + sub-skill exercises -> fine-tuned
    weights, the training log and the speed log."""
    return Pipeline(
        [
            node(prepare_base_model, "params:training.base_model", "base_model", name="prepare_base_model"),
            node(
                split_validation_rows,
                ["model_input_train", "params:training.validation", "params:training.seed"],
                ["training_rows", "validation_rows"],
                name="split_validation_rows",
            ),
            node(add_subskill_rows, ["training_rows", "curated_subskill"], "fitting_rows", name="add_subskill_rows"),
            node(
                fine_tune,
                ["base_model", "fitting_rows", "validation_rows", "params:training", "probe_set"],
                ["fine_tuned", "full_training_log"],
                name="fine_tune",
            ),
            node(
                split_training_log, "full_training_log", ["training_log", "training_speed"], name="split_training_log"
            ),
        ]
    )


def create_export_pipeline(**kwargs) -> Pipeline:
    """Base model + fine-tuned weights -> one merged model directory, for serving."""
    return Pipeline([node(merge_fine_tuned, ["base_model", "fine_tuned"], "merged_model", name="merge_fine_tuned")])
