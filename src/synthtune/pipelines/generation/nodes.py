"""Nodes of the generation pipeline: training rows, evaluation sets and parameter checks."""

import re
from typing import Any

import numpy as np
import pandas as pd

from synthtune import profiles
from synthtune.config import GenerationParams, parse
from synthtune.tasks import available_tasks, get_task
from synthtune.tasks.base import SUBSKILL_COLUMNS, Task

# RNG streams, one per random decision, so changing one never shifts another's draws.
(
    STREAM_SAMPLE,
    STREAM_TRAIN_PROMPTS,
    STREAM_TEST_PROMPTS,
    STREAM_HELDOUT,
    STREAM_NOISE,
    STREAM_EXTERNAL,
    STREAM_SUBSKILL,
) = range(7)
WORD = re.compile(r"[a-z]+('[a-z]+)?")


def rng_for(seed: int, stream: int) -> np.random.Generator:
    """An independent, seeded generator for one stream."""
    return np.random.default_rng([seed, stream])


def check_generation_params(params: dict[str, Any]) -> None:
    """Stop before any generation on bad parameters: first the schema (types, ranges, unknown
    keys: :class:`synthtune.config.GenerationParams`), then what only the task knows: that
    it exists, has the answer format and declares the sub-skills named."""
    parse(GenerationParams, params, "generation")
    task = get_task(params["task"])
    if params["answer_format"] not in task.formats:
        raise ValueError(
            f"generation.answer_format={params['answer_format']!r} is unknown for task {task.name!r}; "
            f"allowed: {list(task.formats)}"
        )
    check_subskill_params(task, params["subskills"])


def check_subskill_params(task: Task, spec: dict[str, Any]) -> None:
    """``generation.subskills`` maps task names to that task's exercises, so switching
    ``generation.task`` switches them too: each task must exist, and the entries of the task
    in use must name its sub-skills (their ``rows`` and ``words`` are the schema's)."""
    tasks = available_tasks()
    for task_name, entries in spec.items():
        if task_name not in tasks:
            raise ValueError(f"generation.subskills.{task_name}: no such task; allowed: {tasks}")
        unknown = sorted(set(entries or {}) - set(task.subskills)) if task_name == task.name else []
        for name in unknown:
            raise ValueError(
                f"generation.subskills.{task.name}.{name}: task {task.name!r} has no such sub-skill; "
                f"allowed: {sorted(task.subskills)}"
            )


def build_vocabulary(params: dict[str, Any]) -> pd.DataFrame:
    """The language's most frequent words with their frequencies, from wordfreq (offline).

    Args:
        params: ``language`` and ``top_n`` (how many frequent words to read).

    Returns:
        Columns ``word`` (lowercase, letters with at most one apostrophe) and
        ``frequency``, most frequent first.

    Raises:
        ValueError: if no word survives the filter.
    """
    import wordfreq  # here, not at the top: its import costs every kedro command ~0.5 s

    words = frequent_words(params["language"], params["top_n"])
    frequency = [wordfreq.word_frequency(w, params["language"]) for w in words]
    return pd.DataFrame({"word": words, "frequency": frequency})


def frequent_words(language: str, top_n: int) -> list[str]:
    """The language's ``top_n`` most frequent wordfreq words, most frequent first, kept where
    they are lowercase letters with at most one apostrophe.

    Raises:
        ValueError: on an unknown language, or if no word survives the filter.
    """
    import wordfreq

    if not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"generation.vocabulary.top_n must be a positive integer, got {top_n!r}")
    languages = sorted(wordfreq.available_languages())
    if language not in languages:
        raise ValueError(f"generation.vocabulary.language={language!r} is unknown to wordfreq; allowed: {languages}")
    raw = wordfreq.top_n_list(language, top_n)
    words = list(dict.fromkeys(w for w in raw if WORD.fullmatch(w)))
    if not words:
        raise ValueError(
            f"generation.vocabulary: no word left after filtering {len(raw)} words of language "
            f"{language!r}; expected lowercase words of letters"
        )
    return words


def draw_rows(vocabulary: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Draw ``n_train + n_test`` labelled task rows with the chosen profile.

    Returns:
        ``text``, the task's own fields and ``label`` (recomputed by the task), in draw
        order; the same text may be drawn more than once.
    """
    check_generation_params(params)
    task = get_task(params["task"])
    rows = task.generate(
        params["n_train"] + params["n_test"],
        params["profile"],
        vocabulary,
        rng_for(params["seed"], STREAM_SAMPLE),
        params["profiles"][params["profile"]],
    )
    return rows.assign(label=task.label(rows))


def split_train_test(rows: pd.DataFrame, n_test: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split drawn rows into a test split of distinct texts and a disjoint train split.

    The first ``n_test`` distinct texts (in draw order) form the test split; every other
    draw whose text is not in it is a train row. Repeated draws stay in train, so curation
    has real duplicates to remove.

    Raises:
        ValueError: if fewer than ``n_test`` distinct texts were drawn.
    """
    distinct = rows.drop_duplicates("text")
    if len(distinct) < n_test:
        raise ValueError(
            f"generation.n_test={n_test} distinct strings were asked for but only "
            f"{len(distinct)} were drawn; lower generation.n_test or widen the profile"
        )
    test = distinct.iloc[:n_test]
    train = rows[~rows["text"].isin(set(test["text"]))]
    return train.reset_index(drop=True), test.reset_index(drop=True)


def ask(task: Task, rows: pd.DataFrame, templates, fmt: str, rng: np.random.Generator, name: str) -> pd.DataFrame:
    """Give rows their prompt (a random template), answer (in ``fmt``) and ids."""
    asked = pd.concat([rows, task.render_prompts(rows, templates, rng)], axis=1)
    answers = task.render_answers(asked, asked["label"], fmt)
    ids = [f"{name}-{i:07d}" for i in range(len(rows))]
    return asked.assign(answer=answers, answer_format=fmt, row_id=ids)[
        ["row_id", *rows.columns.drop("label"), "prompt", "template_id", "answer", "label", "answer_format"]
    ]


def make_train_set(rows: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Ask the train rows with the training templates; corrupt ``label_noise`` of the labels.

    Noisy rows get a wrong label (and answer), marked in ``label_noisy``, for studies of
    how training copes with label noise. At the default of 0 no label is touched.
    """
    task = get_task(params["task"])
    train = ask(
        task,
        rows,
        task.train_templates,
        params["answer_format"],
        rng_for(params["seed"], STREAM_TRAIN_PROMPTS),
        "train",
    )
    return add_label_noise(train, params["label_noise"], rng_for(params["seed"], STREAM_NOISE))


def add_label_noise(rows: pd.DataFrame, fraction: float, rng: np.random.Generator) -> pd.DataFrame:
    """Replace ``fraction`` of the labels with wrong ones (off by 1-3), in label and answer."""
    noisy = rng.random(len(rows)) < fraction
    offset = rng.integers(1, 4, len(rows)) * np.where(rng.random(len(rows)) < 0.5, -1, 1)
    wrong = rows["label"].to_numpy() + offset
    wrong = np.where(wrong < 0, rows["label"].to_numpy() + np.abs(offset), wrong)  # counts are never negative
    label = np.where(noisy, wrong, rows["label"].to_numpy())
    answer = [
        re.sub(r"-?\d+(?!.*\d)", str(v), a, flags=re.DOTALL) if n else a
        for a, v, n in zip(rows["answer"], label, noisy, strict=True)
    ]
    return rows.assign(label=label.astype(np.int64), answer=answer, label_noisy=noisy)


def make_test_set(rows: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Ask the test rows (same profile as train, disjoint strings) with the training templates."""
    task = get_task(params["task"])
    return ask(
        task, rows, task.train_templates, params["answer_format"], rng_for(params["seed"], STREAM_TEST_PROMPTS), "test"
    )


def make_heldout_template_set(rows: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Ask the test strings again, with templates that training never uses."""
    task = get_task(params["task"])
    rng = rng_for(params["seed"], STREAM_HELDOUT)
    return ask(task, rows, task.heldout_templates, params["answer_format"], rng, "heldout")


def make_probe_set(probe_spec: dict[str, Any], params: dict[str, Any]) -> pd.DataFrame:
    """Hand-written minimum-functionality probes for the task, asked with its first template.

    Each probe names its ``text`` (or ``word`` and ``repeat`` for long repeats), its
    ``expected`` count and, for tasks that need it, its fields (e.g. ``letter``). The
    expected counts are written by hand; a probe the task's verifier disagrees with stops
    the run, naming the probe.
    """
    task = get_task(params["task"])
    if task.name not in probe_spec:
        raise ValueError(f"probes: conf/base/probes.yml has no section for task {task.name!r}")
    records = []
    for category, probes in probe_spec[task.name].items():
        for probe in probes:
            text = " ".join([probe["word"]] * probe["repeat"]) if "repeat" in probe else probe["text"]
            fields = {k: v for k, v in probe.items() if k not in ("text", "word", "repeat", "expected")}
            records.append({"text": text, **fields, "category": category, "expected": probe["expected"]})
    rows = pd.DataFrame(records)
    rows["label"] = task.label(rows)
    wrong = rows[rows["label"] != rows["expected"]]
    if not wrong.empty:
        first = wrong.iloc[0]
        raise ValueError(
            f"probes: {len(wrong)} probe(s) disagree with the {task.name} verifier, e.g. category "
            f"{first['category']!r} text {first['text'][:60]!r}: expected {first['expected']}, verifier says {first['label']}"
        )
    asked = ask(
        task, rows.drop(columns="expected"), task.train_templates[:1], params["answer_format"], rng_for(0, 0), "probe"
    )
    return asked


def make_external_set(sentences: pd.DataFrame, words: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """The external CUTE-derived benchmark (real text), asked with the first training template.

    Read from ``data/01_raw/cute`` (a DVC import of ``../shared/benchmarks/cute``) and used
    for evaluation only. Its published
    letter counts must agree with our verifier; a disagreement stops the run.
    """
    task = get_task(params["task"])
    rows = pd.concat([sentences.assign(source="cute_sentences"), words.assign(source="cute_words")], ignore_index=True)
    rows = task.add_fields(rows[["text", "source", "letters"]], rng_for(params["seed"], STREAM_EXTERNAL))
    rows["label"] = task.label(rows)
    if task.name == "letter_count":
        wrong = rows[rows["label"] != rows["letters"]]
        if not wrong.empty:
            raise ValueError(
                f"external: {len(wrong)} CUTE rows disagree with count_letters, e.g. {wrong.iloc[0]['text']!r}"
            )
    return ask(
        task, rows.drop(columns="letters"), task.train_templates[:1], params["answer_format"], rng_for(0, 0), "external"
    )


def make_subskill_set(vocabulary: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Sub-skill exercises over the vocabulary, as many as ``generation.subskills.<task>`` asks.

    Each sub-skill the task declares (e.g. ``word_lengths``: every word with its letter
    count) gets ``rows`` rows of ``words`` = ``[lo, hi]`` words each, dealt so that every
    word the profile draws from (:func:`~synthtune.profiles.profile_words`) is practised
    equally often; with ``top_n``, a ``top_n_share`` of the words is dealt the same way from
    the language's ``top_n`` most frequent words instead. ``capitalise`` and ``punctuate``
    write shares of them as sentences do. None are made when the mapping is empty.

    Returns:
        ``row_id``, ``subskill``, ``text``, ``prompt``, ``template_id``, ``answer``.
    """
    check_generation_params(params)
    task = get_task(params["task"])
    rng = rng_for(params["seed"], STREAM_SUBSKILL)
    profile_words = profiles.profile_words(params["profile"], vocabulary)
    parts = [
        task.make_subskill_rows(
            name,
            profile_words,
            entry["rows"],
            tuple(entry["words"]),
            rng,
            entry.get("capitalise", 0.0),
            entry.get("punctuate", 0.0),
            frequent_words(params["vocabulary"]["language"], entry["top_n"]) if entry.get("top_n") else None,
            entry.get("top_n_share", 1.0),
        )
        for name, entry in sorted(((params.get("subskills") or {}).get(task.name) or {}).items())
        if entry["rows"]
    ]
    empty = pd.DataFrame({c: pd.Series(dtype=object) for c in SUBSKILL_COLUMNS}).astype({"template_id": "int64"})
    return pd.concat([empty, *parts], ignore_index=True) if parts else empty


def report_distributions(
    train: pd.DataFrame,
    test: pd.DataFrame,
    probes: pd.DataFrame,
    heldout: pd.DataFrame,
    external: pd.DataFrame,
    params: dict[str, Any],
):
    """Compare every evaluation set's feature distributions with train's.

    Returns:
        The distribution report (metrics JSON: per-feature TVD from train, headline shares)
        and a figure of the binned distributions.
    """
    from .report import build_distribution_report, plot_distributions

    sets = {"train": train, "test": test, "probes": probes, "heldout_templates": heldout, "external": external}
    report, shares = build_distribution_report(sets, params["task"], params["profile"])
    return report, plot_distributions(shares, report)
