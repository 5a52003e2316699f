"""Curation and validation throughput: rows/s per step on generated rows, run by hand.

    python benchmarks/curation.py [--rows 1000000] [--profile usage]

Generates the rows and evaluation sets as the generation pipeline does, then times each
curation step and the validation (check columns + the GX suite over the whole table).
"""

import argparse
import time

import pandas as pd
import yaml

from synthtune.pipelines.curation import nodes as curation
from synthtune.pipelines.generation import nodes as generation
from synthtune.pipelines.validation import nodes as validation


def load(name: str) -> dict:
    return yaml.safe_load(open(f"conf/base/parameters_{name}.yml"))[name]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--profile", default="usage")
    args = parser.parse_args()
    gen = {**load("generation"), "profile": args.profile, "n_train": args.rows, "n_test": 200}
    cur, val = load("curation"), {**load("validation"), "severity_overrides": {"distribution": "warning"}}
    task = gen["task"]
    # naive and balanced need the case study's 3,432-word list; the default reads 1,000 words
    vocabulary = generation.build_vocabulary({**gen["vocabulary"], "top_n": 20000})
    train_draws, test_draws = generation.split_train_test(generation.draw_rows(vocabulary, gen), gen["n_test"])
    rows = generation.make_train_set(train_draws, gen)
    test = generation.make_test_set(test_draws, gen)
    heldout = generation.make_heldout_template_set(test_draws, gen)
    probes = generation.make_probe_set(yaml.safe_load(open("conf/base/probes.yml")), gen)
    cute = "../shared/benchmarks/cute/"
    external = generation.make_external_set(
        pd.read_json(cute + "sentences.jsonl", lines=True), pd.read_json(cute + "words.jsonl", lines=True), gen
    )
    steps = [
        ("normalise", lambda r: (curation.normalise_rows(r, task, cur["normalise"]), None)),
        ("quality_filter", lambda r: curation.filter_quality(r, task, cur["quality_filter"])),
        ("verify_labels", lambda r: curation.verify_row_labels(r, task, cur["verify_labels"])),
        ("scrub_pii", lambda r: curation.scrub_row_pii(r, task, cur["scrub_pii"])),
        ("exact_duplicates", lambda r: curation.drop_exact_duplicates(r, cur["deduplicate_exact"])),
        ("near_duplicates", lambda r: curation.drop_near_duplicates(r, cur["deduplicate_near"])),
        (
            "decontaminate",
            lambda r: curation.decontaminate_rows(r, test, probes, heldout, external, cur["decontaminate"]),
        ),
        ("balance", lambda r: curation.balance_rows(r, cur["balance"])),
    ]
    print(f"{len(rows):,} rows, profile {args.profile}, task {task}")
    print(f"{'step':18} {'rows in':>10} {'dropped':>9} {'seconds':>8} {'rows/s':>11}")
    total = 0.0
    for name, step in steps:
        start = time.perf_counter()
        kept, dropped = step(rows)
        elapsed = time.perf_counter() - start
        total += elapsed
        print(
            f"{name:18} {len(rows):10,} {0 if dropped is None else len(dropped):9,} {elapsed:8.2f} {len(rows) / elapsed:11,.0f}"
        )
        rows = kept
    start = time.perf_counter()
    checked = validation.add_check_columns(rows, test, probes, heldout, external, task)
    parameters = validation.derive_expectation_parameters(test, probes, heldout, external, task)
    middle = time.perf_counter()
    summary, _ = validation.run_expectation_suite(
        checked, yaml.safe_load(open("conf/base/expectations/train_rows.yml")), parameters, val
    )
    end = time.perf_counter()
    print(f"{'check columns':18} {len(rows):10,} {'':9} {middle - start:8.2f} {len(rows) / (middle - start):11,.0f}")
    print(f"{'GX suite':18} {len(rows):10,} {'':9} {end - middle:8.2f} {len(rows) / (end - middle):11,.0f}")
    total += end - start
    print(f"curation + validation: {total:.1f} s for {args.rows:,} rows in; suite success {summary['success']}")


if __name__ == "__main__":
    main()
