"""The project's pipelines, registered explicitly.

Kedro >= 1.5 imports only the requested pipeline packages, so ``full`` is built here from
the five named pipelines rather than discovered with ``find_pipelines()``.
"""

from kedro.pipeline import Pipeline

from synthtune.pipelines import curation, evaluation, generation, training, validation

STAGES = ("generation", "curation", "validation", "training", "evaluation")


def register_pipelines() -> dict[str, Pipeline]:
    """Register the five stage pipelines, ``full`` (all five), the default (``full``) and
    ``export`` (merge the fine-tuned weights into the base model; run on demand)."""
    pipelines = {
        "generation": generation.create_pipeline(),
        "curation": curation.create_pipeline(),
        "validation": validation.create_pipeline(),
        "training": training.create_pipeline(),
        "evaluation": evaluation.create_pipeline(),
    }
    pipelines["full"] = sum(pipelines.values(), Pipeline([]))
    pipelines["__default__"] = pipelines["full"]
    pipelines["export"] = training.create_export_pipeline()
    return pipelines
