import pytest
import yaml

from synthtune.pipelines.evaluation.pipeline import create_pipeline, evaluation_sets

from ...conftest import PROJECT_ROOT


def test_one_prediction_node_per_model_and_set_from_the_parameters():
    sets = evaluation_sets()
    assert (
        sets == yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]["sets"]
    )
    nodes = {n.name.split(".")[-1]: n for n in create_pipeline().nodes if "predict_" in n.name}
    expected = [f"predict_{m}_{name}" for m in ("tuned", "base") for name in sets] + ["predict_tuned_behaviour"]
    assert sorted(nodes) == sorted(expected)
    for name in sets:
        assert nodes[f"predict_tuned_{name}"].outputs == [f"tuned_{name}_predictions"]
        assert f"checked_{name}" in nodes[f"predict_base_{name}"].inputs


@pytest.mark.parametrize("name", ["params", "behaviour"])
def test_a_set_named_like_another_input_of_the_prediction_node_is_refused(tmp_path, name):
    path = tmp_path / "parameters_evaluation.yml"
    path.write_text(yaml.safe_dump({"evaluation": {"sets": {"test": "test_set", name: "other_set"}}}))
    with pytest.raises(ValueError, match=rf"evaluation\.sets: \['{name}'\] reserved"):
        evaluation_sets(path)
