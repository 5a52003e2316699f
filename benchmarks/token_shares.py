"""Where the training compute goes: the tokens of the default run's training rows by part
of the row and by kind of row, and the share of the loss each kind gets under each
``training.loss_weighting``.

Every token of a row costs a forward and a backward pass; only the answer's tokens (EOS
included) carry loss. A row's prompt is split into the chat markup (the template around an
empty question: SmolLM2's ``<|im_start|>system`` ... ``assistant`` lines), the string asked
about (the row's ``text``, tokenized alone) and the rest of the question (the template's
words and quotes). Rows are grouped as task rows by their string's word count (the feature
bins of the evaluation slices) and as sub-skill exercises.

    python benchmarks/token_shares.py                  # the default run's rows (data/)
    python benchmarks/token_shares.py --data outputs/<time>/data

Reads ``05_model_input/train.parquet`` and ``03_primary/subskill_curated.parquet`` (joined as
the training pipeline joins them) and the base model's tokenizer from
``06_models/base_model``; writes ``build/token_shares.csv`` and prints a Markdown table.
The default schedule (480 steps of 8 rows) trains on less than one pass over these rows, in
a seeded random order, so these shares are what a run's steps see, give or take sampling.
"""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import AutoTokenizer

from synthtune.features import bin_values
from synthtune.llm import encode_rows
from synthtune.pipelines.training.nodes import add_subskill_rows
from synthtune.tasks import get_task
from synthtune.tasks.base import token_counts

ROOT = Path(__file__).resolve().parents[1]
# Coarser than the slices' bins: the kinds of row whose cost differs by an order of magnitude.
# (0 words: a string with no letters, such as "460".)
WORD_BINS = [0, 1, 6, 21, 51, 101, np.inf]
PARTS = ("markup", "question", "string", "answer")
SHARES = ("prompt_share", "share_of_tokens", "token_loss_weight", "row_loss_weight")


def row_tokens(rows: pd.DataFrame, tokenizer) -> pd.DataFrame:
    """Per row: tokens of chat markup, question wording, the string, and the answer (EOS included)."""
    encoded = encode_rows(rows, tokenizer)
    prompt = np.array([len(e["prompt"]) for e in encoded])
    markup = len(encode_rows(pd.DataFrame({"prompt": [""], "answer": [""]}), tokenizer)[0]["prompt"])
    string = token_counts(tokenizer, rows["text"].tolist())
    return pd.DataFrame(
        {
            "markup": markup,
            # the template's words and quotes: what is left of the prompt (a token that spans a
            # quote and the string's first letters is counted here, so this can be off by one)
            "question": prompt - markup - string,
            "string": string,
            "answer": [len(e["answer"]) for e in encoded],
        }
    )


def kinds(rows: pd.DataFrame, task) -> pd.Series:
    """``exercise`` for sub-skill rows, else ``task, <bin> words``: a categorical ordered as
    the bins, then exercises."""
    n_words = task.features(rows, np.zeros(len(rows), dtype=np.int64))["n_words"]
    kind = pd.Series(bin_values(n_words, WORD_BINS), index=rows.index)
    kind = kind.cat.rename_categories(lambda b: f"task, {b} words").cat.add_categories("exercise")
    kind[(rows["answer_format"] == "subskill").to_numpy()] = "exercise"
    return kind


def shares(rows: pd.DataFrame, tokens: pd.DataFrame, kind: pd.Series) -> pd.DataFrame:
    """One line per kind of row and one for all: rows, tokens by part, and the share of all
    tokens, of answer tokens (each kind's weight under ``loss_weighting: token``) and of rows
    (its weight under ``row``)."""
    table = tokens.assign(rows=1, kind=kind.array).groupby("kind", observed=True).sum()
    table.index = table.index.astype(str)
    table.loc["all"] = table.sum()
    table["tokens"] = table[list(PARTS)].sum(axis=1)
    total = table.loc["all"]
    table["share_of_tokens"] = table["tokens"] / total["tokens"]
    table["token_loss_weight"] = table["answer"] / total["answer"]
    table["row_loss_weight"] = table["rows"] / total["rows"]
    table["prompt_share"] = 1 - table["answer"] / table["tokens"]
    table["tokens_per_row"] = table["tokens"] / table["rows"]
    return table[["rows", *PARTS, "tokens", "tokens_per_row", *SHARES]]


def markdown(table: pd.DataFrame) -> str:
    """``table`` as Markdown: counts with thousands separators, shares as percentages."""
    shown = table.astype(object)
    for column in table:
        shown[column] = table[column].map(("{:.1%}" if column in SHARES else "{:,.0f}").format)
    return shown.to_markdown()


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="a run's data folder")
    parser.add_argument("--task", default="letter_count")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "token_shares.csv")
    args = parser.parse_args(argv)

    task_rows = pd.read_parquet(args.data / "05_model_input" / "train.parquet")
    exercises = pd.read_parquet(args.data / "03_primary" / "subskill_curated.parquet")
    rows = add_subskill_rows(task_rows, exercises)
    # the join keeps an exercise's prompt and answer only; its string comes back by row id
    rows["text"] = rows["row_id"].map(pd.concat([task_rows, exercises]).set_index("row_id")["text"])
    tokenizer = AutoTokenizer.from_pretrained(args.data / "06_models" / "base_model")
    table = shares(rows, row_tokens(rows, tokenizer), kinds(rows, get_task(args.task)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out)
    print(markdown(table))
    print(f"wrote {args.out}")
    return table


if __name__ == "__main__":
    main()
