"""Every shipped configuration environment composes into parameters the pipelines accept."""

import pandas as pd
import pytest
from kedro.config import OmegaConfigLoader

from synthtune.config import SCHEMAS, check_parameters
from synthtune.pipelines.generation.nodes import check_generation_params, draw_rows, make_subskill_set

from .conftest import PROJECT_ROOT

ENVIRONMENTS = ["base", "smoke", "gpu", "local"]  # the direct format is a Hydra option: format=direct


def load_parameters(env: str) -> dict:
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env, merge_strategy={"parameters": "soft"}
    )
    return loader["parameters"]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_composes_into_valid_parameters(env):
    params = load_parameters(env)
    check_parameters(params)  # every block through its schema, as the run's hook does
    assert set(SCHEMAS) | {"evaluation"} <= set(params)
    check_generation_params(params["generation"])  # and what only the task knows
    assert params["evaluation"]["system_prompt"] == params["training"]["system_prompt"]


def test_gpu_profile_is_the_case_studys_full_range_and_generates_at_a_tiny_size():
    """The GPU profile cannot train here (no GPU in CI); its data side runs, shrunk, on the CPU."""
    params = load_parameters("gpu")
    generation = params["generation"]
    assert generation["profile"] == "balanced" and generation["profiles"]["balanced"]["long_max"] == 99
    assert params["training"]["device"] == "cuda" and params["evaluation"]["models"]["tuned"]["max_rows"] is None
    from wordfreq import top_n_list

    words = top_n_list("en", generation["vocabulary"]["top_n"])
    vocabulary = pd.DataFrame({"word": words, "frequency": 1.0})
    tiny = {
        **generation,
        "n_train": 40,
        "n_test": 10,
        "subskills": {"letter_count": {"word_lengths": {"rows": 30, "words": [4, 12]}}},
    }
    rows = draw_rows(vocabulary, tiny)
    assert len(rows) == 50 and rows["text"].str.split().str.len().max() <= 99
    exercises = make_subskill_set(vocabulary, tiny)
    assert len(exercises) == 30 and set(" ".join(exercises["text"]).split()) <= set(words)
