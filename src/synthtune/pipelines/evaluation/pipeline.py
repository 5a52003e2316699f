"""Wiring of the evaluation pipeline, built from the list of evaluation sets in
``conf/base/parameters_evaluation.yml`` (``evaluation.sets``): one prediction node per set
and model, so adding a set is one line there."""

from collections.abc import Callable
from pathlib import Path

import yaml
from kedro.pipeline import Pipeline, node

from synthtune.config import check_set_names

from . import behaviour, nodes, report, scores
from .nodes import MODELS

PARAMETERS = Path("conf") / "base" / "parameters_evaluation.yml"
MODEL_DATASETS = {"tuned": "tuned_model", "base": "base_model"}


def evaluation_sets(parameters: Path | None = None) -> dict[str, str]:
    """``evaluation.sets`` (set name -> catalog dataset) from the project's base parameters.

    Read from the working directory's ``conf/`` (Kedro runs from the project root), or
    else from the source tree's, which an editable install keeps beside ``src/``.
    """
    candidates = [parameters] if parameters else [PARAMETERS, Path(__file__).resolve().parents[4] / PARAMETERS]
    for path in candidates:
        if path.is_file():
            sets = dict(yaml.safe_load(path.read_text())["evaluation"]["sets"])
            check_set_names(sets)  # before parameters are checked: the names shape the pipeline
            return sets
    raise FileNotFoundError(f"evaluation sets: no {PARAMETERS} in {Path.cwd()} or beside the source tree")


def predictor(model: str, name: str, sample: bool = True) -> Callable:
    """The node function answering set ``name`` with ``model``."""

    def predict(language_model, rows, task_name, params):
        return nodes.predict_eval_set(language_model, rows, task_name, params, model, name, sample)

    predict.__name__ = predict.__qualname__ = f"predict_{model}_{name}"
    predict.__doc__ = f"Answer and score the {name} set with the {model} model (see predict_eval_set)."
    return predict


def perplexity_of(model: str) -> Callable:
    """The node function measuring ``model``'s perplexity of plain text."""

    def perplexity(language_model, texts, params):
        return nodes.measure_perplexity(language_model, texts, params)

    perplexity.__name__ = perplexity.__qualname__ = f"measure_{model}_perplexity"
    return perplexity


def create_pipeline(**kwargs) -> Pipeline:
    """Checked sets -> predictions of each model on each set -> scores, slices, behaviour
    checks and perplexity -> metrics, figures and the HTML report."""
    sets = evaluation_sets()
    checked = {name: f"checked_{name}" for name in sets}
    prediction = {(m, name): f"{m}_{name}_predictions" for m in MODELS for name in [*sets, "behaviour"]}
    behaviour_models = ("tuned",)  # the checks ask whether fine-tuning taught the skill
    task, params = "params:generation.task", "params:evaluation"
    pipeline = [
        node(
            nodes.check_evaluation_inputs,
            {"task_name": task, "params": params, **sets},
            checked,
            name="check_evaluation_inputs",
        ),
        node(nodes.load_tuned_model, ["base_model", "fine_tuned"], "tuned_model", name="load_tuned_model"),
        node(
            behaviour.make_behaviour_set,
            [checked["test"], "vocabulary", task, params],
            "behaviour_set",
            name="make_behaviour_set",
        ),
    ]
    for model in MODELS:
        for name in sets:
            pipeline.append(
                node(
                    predictor(model, name),
                    [MODEL_DATASETS[model], checked[name], task, params],
                    prediction[model, name],
                    name=f"predict_{model}_{name}",
                    tags=[model],
                )
            )
        if model in behaviour_models:
            pipeline.append(
                node(
                    predictor(model, "behaviour", sample=False),
                    [MODEL_DATASETS[model], "behaviour_set", task, params],
                    prediction[model, "behaviour"],
                    name=f"predict_{model}_behaviour",
                    tags=[model],
                )
            )
        pipeline += [
            node(
                perplexity_of(model),
                [MODEL_DATASETS[model], "cute_sentences", params],
                f"{model}_perplexity",
                name=f"measure_{model}_perplexity",
                tags=[model],
            ),
        ]
    pipeline += [
        node(
            scores.describe_predictions,
            {
                "train_rows": "model_input_train",
                "subskill_rows": "curated_subskill",
                "task_name": task,
                **{f"{m}_{name}": prediction[m, name] for m in MODELS for name in sets},
            },
            "evaluation_predictions",
            name="describe_predictions",
        ),
        node(scores.score_parts, "evaluation_predictions", "set_scores", name="score_sets"),
        node(scores.score_slices, "evaluation_predictions", "evaluation_slices", name="score_slices"),
        node(scores.select_worst_slices, ["evaluation_slices", params], "worst_slices", name="select_worst_slices"),
        node(
            scores.score_behaviour,
            {m: prediction[m, "behaviour"] for m in behaviour_models},
            "behaviour_scores",
            name="score_behaviour",
        ),
        node(
            scores.summarise_evaluation,
            ["set_scores", "behaviour_scores", "tuned_perplexity", "base_perplexity"],
            "metrics",
            name="summarise_evaluation",
        ),
        node(report.plot_model_comparison, "set_scores", "evaluation_models_figure", name="plot_model_comparison"),
        node(report.plot_slice_accuracy, "evaluation_slices", "evaluation_slices_figure", name="plot_slice_accuracy"),
        node(
            report.render_evaluation_report,
            [
                "metrics",
                "set_scores",
                "behaviour_scores",
                "evaluation_slices",
                "worst_slices",
                "evaluation_predictions",
                task,
                params,
            ],
            "evaluation_report",
            name="render_evaluation_report",
        ),
    ]
    return Pipeline(pipeline)
