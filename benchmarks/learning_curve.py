"""Learning curves: strict exact match against training tokens and wall time, for several
training configurations in one run. Run by hand; every lever of issue 11 is judged on it.

    python benchmarks/learning_curve.py [--configs default,no_exercises,...] [--minutes 10]
                                        [--every 20] [--seeds 42,1,2] [--out build/learning_curve]
    python benchmarks/learning_curve.py --csv build/lc_a.csv build/lc_b.csv   # tabulate, train nothing

Each configuration trains from the same base model (data/06_models/base_model) on the
default run's validated rows (data/05_model_input/train.parquet), held out and split by the
training pipeline's own nodes, plus the sub-skill exercises it asks for (made and curated by
the generation and curation nodes, from data/01_raw/vocabulary.parquet and the evaluation
sets in data/03_primary). It runs ``fine_tune`` with its overrides of conf/base for at most
``--minutes`` of wall time (``max_minutes``; ``max_steps`` sets the schedule), scoring every
``--every`` steps the validation rows, the probes and two sets of words no configuration
practises (``unseen_words``, ``unseen_sentences``: wordfreq words of rank 1,001-30,000 that
a hash holds out of every exercise; see :func:`unseen_word_sets`).

The exact match is teacher-forced: a row counts when greedy decoding would write its
reference answer and stop, which is the strict metric of the evaluation pipeline for every
row that answers in the trained format (a differently worded but well-formed correct tally
would be missed; none was seen). Writes ``<out>.csv`` (one row per evaluation), ``<out>.png``
(exact match against minutes and against tokens) and prints, per configuration, the last
evaluation within the wall time every configuration reached (equal wall time) and a
Markdown table of ``k/n`` with 95% Wilson intervals at the last step all of them reached.

``--seeds`` trains every configuration once per training seed (``training.seed``: the LoRA
initialisation and the order of the batches), each named ``<config>@<seed>``, with the
validation rows held out by conf/base's seed whatever the training seed, so that every run is
scored on the same rows; a table then gives each configuration's lowest and highest score
over its seeds: the spread of a single run, which a lever must beat to be told apart. (A run
named without a seed trained at conf/base's, 42: ``default`` is ``default@42``.)

In a Kedro run the same curve is the training log: ``kedro run --pipelines training
--params training.validation.probes=true`` adds ``probes_exact_match`` beside
``val_exact_match`` in data/08_reporting/training_log.csv (a DVC plot).
"""

import argparse
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from synthtune.datasets import HFModelDataset
from synthtune.experiments import kedro_parameters
from synthtune.metrics import accuracy, format_accuracy
from synthtune.pipelines.curation.nodes import curate_subskill_rows
from synthtune.pipelines.generation import nodes as generation_nodes
from synthtune.pipelines.generation.nodes import WORD, ask, build_vocabulary, make_subskill_set
from synthtune.pipelines.training.loop import fine_tune
from synthtune.pipelines.training.nodes import add_subskill_rows, split_validation_rows
from synthtune.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
#: The sets scored as training goes: the held-out validation rows, the probes, and words no
#: configuration trains on (see unseen_word_sets).
MONITORED = ("val", "probes", "unseen_words", "unseen_sentences")

# Exercises over the task rows' 1,000 words only, unstyled: the default until the mixed deck.
_PROFILE_EXERCISES = {"top_n": None, "capitalise": 0.0, "punctuate": 0.0}

# The schedule every lever below was measured on, the default until 8-row batches at twice the
# steps replaced it (the same rows and tokens): the levers keep it, so their rows stay the runs
# the README's tables report.
_BATCH_16 = {"batch_size": 16, "max_steps": 240, "warmup_steps": 10}


def at_batch_16(config: dict) -> dict:
    """``config`` on the 16-row, 240-step schedule (its own training keys win)."""
    return {**config, "training": {**_BATCH_16, **config.get("training", {})}}


# name -> overrides of conf/base: "generation" (sub-skills, format), "training" (deep-merged).
CONFIGS: dict[str, dict] = {
    # the default: 8 rows a step for 480 steps; 3,000 word-length exercises, half their words
    # from the 1,000 the task rows use and half from the language's 10,000 most frequent, a
    # share styled as in sentences; each row's mean token loss
    "default": {},
    # the default before it: 16 rows a step for 240 steps (the same rows, half the updates)
    "batch_16": at_batch_16({}),
    # three times the default's steps (3x its tokens, the rows seen ~3x as often): where the
    # best schedule goes with the budget the 30-minute run does not have
    "steps_x3": {"training": {"max_steps": 1440}},
}
# Levers measured on the 16-row schedule (against batch_16, which the tables call default).
CONFIGS |= {
    name: at_batch_16(config)
    for name, config in {
        # the default before it: every exercise word from the task rows' 1,000
        "profile_exercises": {"generation": {"subskills": {"letter_count": {"word_lengths": _PROFILE_EXERCISES}}}},
        # every exercise word from the language's 10,000 most frequent (each practised fewer times)
        "exercises_10k": {
            "generation": {
                "vocabulary": {"top_n": 10000},
                "subskills": {"letter_count": {"word_lengths": _PROFILE_EXERCISES}},
            }
        },
        # a repeated word written with the time it occurs (dog dog a -> dog 3 (3), dog#2 3 (6), ...)
        "ordinals": {
            "generation": {
                "answer_format": "tally_ordinal",
                "subskills": {"letter_count": {"word_lengths": _PROFILE_EXERCISES}},
            }
        },
        # exercises over 10,000 words, styled, and ordinals
        "candidate": {
            "generation": {
                "answer_format": "tally_ordinal",
                "vocabulary": {"top_n": 10000},
                "subskills": {"letter_count": {"word_lengths": {"top_n": None}}},
            }
        },
        # earlier defaults, for the lever table: 120 steps with token-weighted loss (what fitted in
        # the same time before the output head ran on a contiguous copy, 1.7x faster per step),
        # and the same without exercises
        "steps_120_token": {"training": {"max_steps": 120, "loss_weighting": "token"}},
        "no_exercises": {
            "generation": {"subskills": {"letter_count": {"word_lengths": {"rows": 0}}}},
            "training": {"max_steps": 100, "loss_weighting": "token"},
        },
        "steps_120_row": {"training": {"max_steps": 120}},
        "token_loss": {"training": {"loss_weighting": "token"}},
        "curriculum": {"training": {"curriculum": {"warmup_share": 0.3}}},
        "spelling": {"generation": {"subskills": {"letter_count": {"spelling": {"rows": 1500, "words": [1, 4]}}}}},
        # tally_spelled (dog dog a -> dog: d1 o2 g3, dog: d4 o5 g6, a: a7. Answer: 7) with its
        # exercises in its own format in place of the word-length ones (as format=tally_spelled);
        # its rows are 2.4x as many answer tokens, so 115 steps take the tokens (and about the
        # time) of the default's 240, and its schedule ends within the same wall time
        "spelled": {
            "generation": {
                "answer_format": "tally_spelled",
                "subskills": {"letter_count": {"word_lengths": {"rows": 0}, "spelled_words": {"rows": 3000}}},
            },
            "training": {"max_steps": 115},
        },
        "lr_1e-3": {"training": {"learning_rate": 1.0e-3}},
        "rank_64": {"training": {"lora": {"r": 64, "lora_alpha": 128}}},
        "full": {"training": {"method": "full", "learning_rate": 5.0e-5}},
        "full_lr_3e-4": {"training": {"method": "full", "learning_rate": 3.0e-4}},
        # the embedding rows (tied to the output head) of every token the training rows use are
        # trained too, beside the LoRA adapter (peft trainable_token_indices)
        "trainable_tokens": {"training": {"lora": {"trainable_tokens": "training_rows"}}},
        # half and twice the default's 3,000 word-length exercises, at the same steps (240 x 16
        # rows is under one pass over the default's 4,685 rows, so this moves the mix, not repeats)
        "exercises_1500": {"generation": {"subskills": {"letter_count": {"word_lengths": {"rows": 1500}}}}},
        "exercises_6000": {"generation": {"subskills": {"letter_count": {"word_lengths": {"rows": 6000}}}}},
        # LoRA on a subset of the linear layers: the MLP only, or attention only
        "targets_mlp": {"training": {"lora": {"target_modules": ["gate_proj", "up_proj", "down_proj"]}}},
        "targets_attention": {"training": {"lora": {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}},
    }.items()
}


def parameters(override: dict) -> dict:
    """conf/base's parameters with ``override`` deep-merged, as a Kedro run merges runtime
    parameters."""
    return kedro_parameters(ROOT, "base", override)


def is_dev_word(word: str) -> bool:
    """Words held out of every configuration's exercises: a fixed 3% by hash."""
    return zlib.crc32(word.encode()) % 100 < 3


# Every word list the generation nodes read from wordfreq (a sub-skill's top_n) leaves the dev
# words out here, so that the unseen-word sets stay unseen whatever a configuration asks for.
_frequent_words = generation_nodes.frequent_words
generation_nodes.frequent_words = lambda language, top_n: [
    w for w in _frequent_words(language, top_n) if not is_dev_word(w)
]


def unseen_word_sets(n: int = 150, seed: int = 0) -> dict[str, pd.DataFrame]:
    """Two monitored sets of words no configuration trains on (wordfreq ranks 1,001-30,000,
    the 3% :func:`is_dev_word` picks): ``unseen_words``, one word each (as CUTE's words), and
    ``unseen_sentences``, 4-9 words of which about 40% are unseen and the rest among the
    1,000 most frequent, capitalised and closed with a mark (as CUTE's sentences). They
    measure whether a model learned word lengths it can apply to words it never practised,
    without looking at CUTE, which stays for evaluation."""
    import wordfreq

    ranked = [w for w in wordfreq.top_n_list("en", 30000) if WORD.fullmatch(w)]
    common, unseen = ranked[:1000], [w for w in ranked[1000:] if is_dev_word(w)]
    rng = np.random.default_rng(seed)
    singles = list(rng.choice(unseen, n, replace=False))
    sentences = []
    for _ in range(n):
        words = [rng.choice(unseen) if rng.random() < 0.4 else rng.choice(common) for _ in range(rng.integers(4, 10))]
        words[0] = words[0][:1].upper() + words[0][1:]
        sentences.append(" ".join(words) + str(rng.choice([".", "!", "?"])))
    task = get_task("letter_count")
    sets = {}
    for name, texts in (("unseen_words", singles), ("unseen_sentences", sentences)):
        rows = pd.DataFrame({"text": texts})
        rows["label"] = task.label(rows)
        sets[name] = ask(task, rows, task.train_templates, "tally", rng, name)
    return sets


def exercise_vocabulary(params: dict, data: Path) -> pd.DataFrame:
    """The run's vocabulary, or, when the configuration reads more words than conf/base
    (``generation.vocabulary.top_n``), that many, less the held-out dev words."""
    if params["generation"]["vocabulary"]["top_n"] <= parameters({})["generation"]["vocabulary"]["top_n"]:
        return pd.read_parquet(data / "01_raw/vocabulary.parquet")
    wide = build_vocabulary(params["generation"]["vocabulary"])
    return wide[~wide["word"].map(is_dev_word)].reset_index(drop=True)


def in_format(rows: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """Task rows answered in the configuration's ``generation.answer_format``."""
    if (rows["answer_format"] == fmt).all():
        return rows
    task = get_task("letter_count")
    return rows.assign(answer=task.render_answers(rows, rows["label"], fmt), answer_format=fmt)


def fitting_rows(name: str, params: dict, data: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The configuration's training rows (with its curated exercises) and validation rows,
    held out by conf/base's seed whatever the configuration's training seed."""
    generation, training = params["generation"], params["training"]
    rows = in_format(pd.read_parquet(data / "05_model_input/train.parquet"), generation["answer_format"])
    train, validation = split_validation_rows(rows, training["validation"], parameters({})["training"]["seed"])
    exercises = make_subskill_set(exercise_vocabulary(params, data), generation)
    evaluation = [
        pd.read_parquet(data / f"03_primary/{s}.parquet") for s in ("test", "probes", "heldout_templates", "external")
    ]
    curated, dropped = curate_subskill_rows(exercises, generation["task"], *evaluation, params["curation"])
    print(f"{name}: {len(train)} task rows + {len(curated)} exercises ({len(dropped)} dropped)", flush=True)
    return add_subskill_rows(train, curated), validation


def run_config(name: str, minutes: float, every: int, data: Path, seed: int | None = None) -> pd.DataFrame:
    """Train configuration ``name`` (with ``training.seed`` set to ``seed``, if given; the
    curve is then named ``<name>@<seed>``) and return its evaluations."""
    override = CONFIGS[name]
    run = {
        **({} if seed is None else {"seed": seed}),
        "max_minutes": minutes,
        "validation": {"every_steps": every, "probes": True, "restore_best": False},
        "checkpoint": {"dir": tempfile.mkdtemp(prefix="lc-"), "every_steps": 0, "resume": False},
    }
    params = parameters(OmegaConf.to_container(OmegaConf.merge(override, {"training": run})))
    name = name if seed is None else f"{name}@{seed}"
    train, validation = fitting_rows(name, params, data)
    base_model = HFModelDataset(filepath=str(data / "06_models/base_model")).load()
    monitored = {"probes": pd.read_parquet(data / "03_primary/probes.parquet"), **unseen_word_sets()}
    monitored = {k: in_format(v, params["generation"]["answer_format"]) for k, v in monitored.items()}
    _, log = fine_tune(base_model, train, validation, params["training"], monitored)
    log["tokens_seen"] = log["tokens"].cumsum()
    measured = log.dropna(subset=["val_exact_match"])
    sizes = {f"n_{name}": len(rows) for name, rows in {"val": validation, **monitored}.items()}
    return measured.assign(config=name, minutes=measured["elapsed_s"] / 60, **sizes)[
        ["config", "step", "tokens_seen", "minutes", "val_loss", *(f"{m}_exact_match" for m in MONITORED), *sizes]
    ]


def plot(curves: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [f"{m}_exact_match" for m in MONITORED]
    fig, axes = plt.subplots(len(metrics), 2, figsize=(11, 3.2 * len(metrics)), sharey="row")
    for row, metric in enumerate(metrics):
        for col, x in enumerate(("minutes", "tokens_seen")):
            ax = axes[row, col]
            for name, curve in curves.groupby("config", sort=False):
                ax.plot(curve[x], curve[metric], marker="o", label=name)
            ax.set_xlabel("wall time (min)" if x == "minutes" else "training tokens")
            ax.set_ylabel(metric.replace("_", " "))
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("Teacher-forced exact match while training (validation rows, probes, unseen words)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)


def at_equal_steps(curves: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's scores at the last step every configuration reached, as ``k/n =
    accuracy [95% Wilson interval]`` (comparable in tokens when the configurations' rows are
    as long; unlike wall time, unaffected by other work on the machine)."""
    step = curves.groupby("config")["step"].max().min()
    rows = curves[curves["step"] == step].set_index("config")
    table = rows[["step", "tokens_seen", "minutes"]].round(1)
    for metric in MONITORED:
        n = rows[f"n_{metric}"].astype(int)
        k = (rows[f"{metric}_exact_match"] * n).round().astype(int)
        table[metric] = [
            format_accuracy(accuracy(np.r_[np.ones(a), np.zeros(b - a)])) for a, b in zip(k, n, strict=True)
        ]
    return table


def spread_over_seeds(curves: pd.DataFrame) -> pd.DataFrame:
    """Per configuration trained at two seeds or more (``<config>@<seed>``), the lowest and
    highest of each monitored score at the last step all its seeds reached (a seed that ran
    out of ``--minutes`` earlier would otherwise be read mid-schedule), in rows (``lo-hi/n``)
    and points."""
    seeded = curves[curves["config"].str.contains("@")]
    seeded = seeded.assign(base=seeded["config"].str.rsplit("@", n=1).str[0])
    table = {}
    for base, runs in seeded.groupby("base", sort=False):
        if runs["config"].nunique() < 2:
            continue
        step = runs.groupby("config")["step"].max().min()
        ends = runs[runs["step"] == step]
        cells = {"seeds": len(ends), "step": step}
        for metric in MONITORED:
            n = int(ends[f"n_{metric}"].iloc[0])
            k = (ends[f"{metric}_exact_match"] * n).round().astype(int)
            cells[metric] = f"{k.min()}-{k.max()}/{n} ({100 * (k.max() - k.min()) / n:.1f} points)"
        table[base] = cells
    return pd.DataFrame.from_dict(table, orient="index")


def at_equal_time(curves: pd.DataFrame) -> pd.DataFrame:
    """Each configuration's last evaluation within the wall time all of them reached."""
    horizon = curves.groupby("config")["minutes"].max().min()
    within = curves[curves["minutes"] <= horizon + 1e-9]
    return within.sort_values("minutes").groupby("config", sort=False).tail(1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="default,steps_120_token,token_loss")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=int, default=20)
    parser.add_argument(
        "--seeds", default=None, help="comma-separated training seeds: each configuration once per seed"
    )
    parser.add_argument("--data", type=Path, default=ROOT / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "build/learning_curve")
    parser.add_argument(
        "--csv", type=Path, nargs="*", default=[], help="tabulate and plot these runs' CSVs; train nothing"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.configs.split(",")) - set(CONFIGS))
    if unknown:
        sys.exit(f"--configs: unknown {unknown}; allowed: {sorted(CONFIGS)}")
    try:
        seeds = [None] if args.seeds is None else [int(s) for s in args.seeds.split(",")]
    except ValueError:
        sys.exit(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
    if len(set(seeds)) < len(seeds):
        sys.exit(f"--seeds: {args.seeds!r} repeats a seed; each seed trains once")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    curves = [pd.read_csv(path) for path in args.csv]
    runs = [(name, seed) for seed in seeds for name in args.configs.split(",")]  # a kill keeps whole seeds
    for name, seed in runs if not args.csv else []:
        curves.append(run_config(name, args.minutes, args.every, args.data, seed))
        pd.concat(curves).to_csv(args.out.with_suffix(".csv"), index=False)  # after each: a kill loses one
    curves = pd.concat(curves, ignore_index=True)
    plot(curves, args.out.with_suffix(".png"))
    print(at_equal_time(curves).to_string(index=False))
    print(at_equal_steps(curves).to_markdown())
    spread = spread_over_seeds(curves)
    if len(spread):
        print(spread.to_markdown())


if __name__ == "__main__":
    main()
