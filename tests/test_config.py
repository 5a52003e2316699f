import copy

import pytest
import yaml

from synthtune.config import EvaluationParams, check_parameters, parse, reference

from .conftest import PROJECT_ROOT

BASE = yaml.safe_load((PROJECT_ROOT / "conf/base/parameters_evaluation.yml").read_text())["evaluation"]


def with_change(path: str, value):
    params = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node = params
    for key in parents:
        node = node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return params


def test_the_base_parameters_are_valid():
    config = parse(EvaluationParams, BASE, "evaluation")
    assert config.sets["test"] == "test_set" and config.decoding.max_new_tokens >= config.decoding.min_new_tokens


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("batch_size", 0, r"evaluation\.batch_size=0: Input should be greater than or equal to 1"),
        ("batch_size", "32", r"evaluation\.batch_size='32': Input should be a valid integer"),
        ("device", "tpu", r"evaluation\.device='tpu': Input should be 'auto', 'cpu' or 'cuda'"),
        ("decoding.max_new_tokens", -1, r"evaluation\.decoding\.max_new_tokens=-1"),
        ("decoding.min_new_tokens", KeyError, r"evaluation\.decoding\.min_new_tokens=\(missing\): Field required"),
        ("decoding.max_new_token", 5, r"evaluation\.decoding\.max_new_token=5: Extra inputs are not permitted"),
        ("models.base.max_rows", 0, r"evaluation\.models\.base\.max_rows=0"),
        ("models.tuned.fast_path", "yes", r"evaluation\.models\.tuned\.fast_path='yes': Input should be a valid bool"),
        ("sets", {}, r"evaluation\.sets=\{\}"),
        ("sets", {"my set": "x"}, r"set names must be identifiers"),
        ("sets", {"test": "x", "params": "y"}, r"\['params'\] reserved \(not allowed: \['behaviour',"),
    ],
)
def test_a_bad_value_names_its_key_the_value_and_what_is_allowed(path, value, message):
    with pytest.raises(ValueError, match=message):
        parse(EvaluationParams, with_change(path, value), "evaluation")


def test_ranges_must_be_ordered():
    with pytest.raises(ValueError, match=r"max_new_tokens=8 is below evaluation\.decoding\.min_new_tokens=32"):
        parse(EvaluationParams, with_change("decoding.max_new_tokens", 8), "evaluation")


def test_the_readme_parameter_reference_is_the_schemas():
    """The schema is the documentation: the README's reference is generated from it."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    start, end = "<!-- parameter-reference:start -->\n", "<!-- parameter-reference:end -->"
    assert readme[readme.index(start) + len(start) : readme.index(end)] == reference()


def test_every_block_reports_all_its_problems_at_once():
    from synthtune.experiments import kedro_parameters

    params = kedro_parameters(
        PROJECT_ROOT, "base", {"training": {"learning_rate": -1}, "curation": {"balance": {"by": "x"}}}
    )
    with pytest.raises(ValueError) as error:
        check_parameters(params)
    assert "training.learning_rate=-1: Input should be greater than 0" in str(error.value)
    assert "curation.balance.by='x': Input should be 'n_words' or 'label'" in str(error.value)
