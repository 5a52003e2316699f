"""The project's pipelines, registered explicitly.

Kedro >= 1.5 imports only the requested pipeline packages, so ``full`` is built here from
the five named pipelines rather than discovered with ``find_pipelines()``. Each pipeline's
nodes carry its name as their namespace (``generation.build_vocabulary``), so kedro-viz
draws ``full`` as five collapsible stages; datasets and parameters keep their names
(``prefix_datasets_with_namespace=False``), so the catalog and every stage see the same ones.
"""

from kedro.pipeline import Pipeline

from synthtune.pipelines import curation, evaluation, generation, training, validation

STAGES = ("generation", "curation", "validation", "training", "evaluation")


def stage(name: str, pipeline: Pipeline) -> Pipeline:
    """``pipeline`` with its nodes in the namespace ``name`` and its datasets unchanged."""
    return Pipeline(pipeline, namespace=name, prefix_datasets_with_namespace=False)


def register_pipelines() -> dict[str, Pipeline]:
    """Register the five stage pipelines, ``full`` (all five), the default (``full``) and
    ``export`` (merge the fine-tuned weights into the base model; run on demand)."""
    pipelines = {
        "generation": stage("generation", generation.create_pipeline()),
        "curation": stage("curation", curation.create_pipeline()),
        "validation": stage("validation", validation.create_pipeline()),
        "training": stage("training", training.create_pipeline()),
        "evaluation": stage("evaluation", evaluation.create_pipeline()),
    }
    pipelines["full"] = sum(pipelines.values(), Pipeline([]))
    pipelines["__default__"] = pipelines["full"]
    pipelines["export"] = stage("export", training.create_export_pipeline())
    return pipelines
