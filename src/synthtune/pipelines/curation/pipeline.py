"""Wiring of the curation pipeline."""

from kedro.pipeline import Pipeline, node

from .nodes import count_curation, drop_exact_duplicates, normalise_rows


def create_pipeline(**kwargs) -> Pipeline:
    """raw train rows -> normalised -> de-duplicated, with rejects and counts."""
    return Pipeline(
        [
            node(
                normalise_rows,
                ["raw_train", "params:generation.task", "params:curation.normalise"],
                "normalised_train",
                name="normalise_rows",
            ),
            node(
                drop_exact_duplicates,
                ["normalised_train", "params:curation.deduplicate_exact"],
                ["curated_train", "rejected_train"],
                name="drop_exact_duplicates",
            ),
            node(
                count_curation,
                ["raw_train", "curated_train", "rejected_train"],
                "curation_counts",
                name="count_curation",
            ),
        ]
    )
