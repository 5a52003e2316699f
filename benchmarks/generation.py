"""Generation throughput: rows/s per profile, run by hand (not in CI).

    python benchmarks/generation.py [--rows 1000000] [--task letter_count] [--format direct]

Times what the generation pipeline does per row: drawing strings from the profile,
labelling them with the task's verifier, and asking/answering them (template + format).
"""

import argparse
import time

import numpy as np
import yaml

from synthtune.pipelines.generation.nodes import ask, build_vocabulary, check_generation_params
from synthtune.tasks import get_task

PARAMS = yaml.safe_load(open("conf/base/parameters_generation.yml"))["generation"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--task", default="letter_count")
    parser.add_argument("--format", default="direct")
    args = parser.parse_args()
    # naive and balanced need the case study's 3,432-word list; the default reads 1,000 words
    vocabulary = build_vocabulary({**PARAMS["vocabulary"], "top_n": 20000})
    task = get_task(args.task)
    print(f"{args.rows:,} rows, task {args.task}, format {args.format}")
    print(f"{'profile':10} {'draw':>8} {'label':>8} {'ask':>8} {'total':>8} {'rows/s':>10}")
    for profile in ("naive", "balanced", "usage"):
        check_generation_params({**PARAMS, "profile": profile, "task": args.task, "answer_format": args.format})
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        rows = task.generate(args.rows, profile, vocabulary, rng, PARAMS["profiles"][profile])
        t1 = time.perf_counter()
        rows["label"] = task.label(rows)
        t2 = time.perf_counter()
        ask(task, rows, task.train_templates, args.format, rng, "bench")
        t3 = time.perf_counter()
        print(
            f"{profile:10} {t1 - t0:7.1f}s {t2 - t1:7.1f}s {t3 - t2:7.1f}s {t3 - t0:7.1f}s {args.rows / (t3 - t0):10,.0f}"
        )


if __name__ == "__main__":
    main()
