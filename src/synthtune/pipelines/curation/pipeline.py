"""Wiring of the curation pipeline."""

from kedro.pipeline import Pipeline, node

from . import nodes

TASK = "params:generation.task"


def create_pipeline(**kwargs) -> Pipeline:
    """raw rows -> normalise -> quality -> labels -> PII -> exact/near duplicates ->
    decontamination -> balance -> curated rows, all dropped rows and per-step counts; and
    sub-skill rows verified, de-duplicated and decontaminated the same way."""
    return Pipeline(
        [
            node(
                nodes.normalise_rows,
                ["raw_train", TASK, "params:curation.normalise"],
                "normalised_train",
                name="normalise_rows",
            ),
            node(
                nodes.filter_quality,
                ["normalised_train", TASK, "params:curation.quality_filter"],
                ["quality_kept", "quality_dropped"],
                name="filter_quality",
            ),
            node(
                nodes.verify_row_labels,
                ["quality_kept", TASK, "params:curation.verify_labels"],
                ["verified_kept", "verified_dropped"],
                name="verify_row_labels",
            ),
            node(
                nodes.scrub_row_pii,
                ["verified_kept", TASK, "params:curation.scrub_pii"],
                ["pii_kept", "pii_dropped"],
                name="scrub_row_pii",
            ),
            node(
                nodes.drop_exact_duplicates,
                ["pii_kept", "params:curation.deduplicate_exact"],
                ["exact_kept", "exact_dropped"],
                name="drop_exact_duplicates",
            ),
            node(
                nodes.drop_near_duplicates,
                ["exact_kept", "params:curation.deduplicate_near"],
                ["near_kept", "near_dropped"],
                name="drop_near_duplicates",
            ),
            node(
                nodes.decontaminate_rows,
                [
                    "near_kept",
                    "test_set",
                    "probe_set",
                    "heldout_template_set",
                    "external_set",
                    "params:curation.decontaminate",
                ],
                ["clean_kept", "contaminated_dropped"],
                name="decontaminate_rows",
            ),
            node(
                nodes.balance_rows,
                ["clean_kept", "params:curation.balance"],
                ["curated_train", "balance_dropped"],
                name="balance_rows",
            ),
            node(
                nodes.curate_subskill_rows,
                [
                    "raw_subskill",
                    TASK,
                    "test_set",
                    "probe_set",
                    "heldout_template_set",
                    "external_set",
                    "params:curation",
                ],
                ["curated_subskill", "rejected_subskill"],
                name="curate_subskill_rows",
            ),
            node(
                nodes.summarise_curation,
                [
                    "raw_train",
                    "curated_train",
                    "quality_dropped",
                    "verified_dropped",
                    "pii_dropped",
                    "exact_dropped",
                    "near_dropped",
                    "contaminated_dropped",
                    "balance_dropped",
                ],
                ["rejected_train", "curation_counts"],
                name="summarise_curation",
            ),
        ]
    )
