"""Wiring of the generation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import build_word_list, sample_rows, split_train_test


def create_pipeline(**kwargs) -> Pipeline:
    """word list -> drawn rows -> train split + disjoint test split."""
    return Pipeline(
        [
            node(build_word_list, "params:generation.word_list", "word_list", name="build_word_list"),
            node(sample_rows, ["word_list", "params:generation"], "sampled_rows", name="sample_rows"),
            node(
                split_train_test,
                ["sampled_rows", "params:generation.n_test"],
                ["raw_train", "test_set"],
                name="split_train_test",
            ),
        ]
    )
