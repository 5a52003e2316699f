"""Every shipped configuration environment composes into parameters the pipelines accept."""

import pytest
from kedro.config import OmegaConfigLoader

from synthtune.pipelines.training.loop import check_training_params
from synthtune.profiles import check_profile_params

from .conftest import PROJECT_ROOT


@pytest.mark.parametrize("env", ["base", "smoke", "direct"])
def test_environment_composes_into_valid_parameters(env):
    loader = OmegaConfigLoader(
        str(PROJECT_ROOT / "conf"), base_env="base", default_run_env=env, merge_strategy={"parameters": "soft"}
    )
    params = loader["parameters"]
    generation = params["generation"]
    check_profile_params(generation["profile"], generation["profiles"][generation["profile"]])
    check_training_params(params["training"])
    assert params["evaluation"]["system_prompt"] == params["training"]["system_prompt"]
