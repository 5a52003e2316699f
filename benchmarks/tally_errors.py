"""Where the fine-tuned model's tallies go wrong: the first wrong step of each wrong answer.

A tally (``dog 3 (3), dog 3 (6), a 1 (7). Answer: 7``) fails at its first step that differs
from the right one, in one of these ways:

- ``word length``: the right word with the wrong letter count (the sub-skill);
- ``addition``: the right count but a running total that is not the previous total plus it;
- ``carried error``: a total wrong only because an earlier step was;
- ``lost place``: a word other than the string's next one (skipped or repeated);
- ``stopped early``, ``ran out of budget``, ``extra words``: every step right, too few or too many;
- ``answer or format``: every step right, the final answer or the format wrong.

It also measures the word-length sub-skill itself: how often a step's letter count is right
for words of the training vocabulary and for words outside it, over every step the model
reached with the right word.

    python benchmarks/tally_errors.py                 # the default run's predictions (data/)
    python benchmarks/tally_errors.py --data multirun/case_study/2_experiment=case_study,profile=usage/data

Writes ``build/tally_errors.csv`` (one row per wrong tally) and prints both tables.
"""

import argparse
import re
from pathlib import Path

import pandas as pd

from synthtune.tasks.letter_count import tally

ROOT = Path(__file__).resolve().parents[1]
SETS = ("test", "probes", "heldout_templates", "external")
# One step of the tally format (synthtune.tasks.letter_count: "word N (T)").
STEP = re.compile(r"(\S+) ([0-9]+) \(([0-9]+)\)")
LONG = 20  # words: the strings no default run has answered yet


def steps(text: str, completion: str) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """The right tally's steps for ``text`` and the steps ``completion`` said, as (word, count, total)."""
    return STEP.findall(tally(text)), STEP.findall(completion)


def first_error(text: str, completion: str, stopped: bool) -> tuple[int | None, str]:
    """The first wrong step of a completion (its index and kind), against the right tally."""
    right, said = steps(text, completion)
    for i, ((word, count, total), (word_said, count_said, total_said)) in enumerate(zip(right, said, strict=False)):
        if word_said != word:
            return i, "lost place"
        if count_said != count:
            return i, "word length"
        if total_said != total:
            previous = int(said[i - 1][2]) if i else 0
            return i, "addition" if int(total_said) != previous + int(count_said) else "carried error"
    if len(said) < len(right):
        return len(said), "stopped early" if stopped else "ran out of budget"
    if len(said) > len(right):
        return len(right), "extra words"
    return None, "answer or format"


def word_length_skill(predictions: pd.DataFrame, vocabulary: set[str]) -> pd.DataFrame:
    """Right letter counts per step reached with the right word, in and out of the vocabulary."""
    reached = []
    for text, completion in zip(predictions["text"], predictions["completion"], strict=True):
        for (word, count, _), (word_said, count_said, _) in zip(*steps(text, completion), strict=False):
            if word_said != word:
                break
            plain = re.sub(r"[^a-z]", "", word.lower())
            reached.append((plain in vocabulary, count_said == count))
    table = pd.DataFrame(reached, columns=["in_training_vocabulary", "right"])
    summary = table.groupby("in_training_vocabulary")["right"].agg(k="sum", n="count")
    return summary.assign(accuracy=summary["k"] / summary["n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data", help="a run's data folder")
    args = parser.parse_args()
    predictions = pd.concat(
        [pd.read_parquet(args.data / f"07_model_output/tuned/{name}_predictions.parquet") for name in SETS]
    )
    predictions = predictions[predictions["answer_format"] == "tally"]
    wrong = predictions[~predictions["strict_correct"]].copy()
    found = [first_error(*row) for row in zip(wrong["text"], wrong["completion"], wrong["stopped"], strict=True)]
    wrong["first_error_step"] = [step for step, _ in found]
    wrong["first_error"] = [kind for _, kind in found]
    wrong["words"] = wrong["text"].str.split().str.len()
    out = ROOT / "build" / "tally_errors.csv"
    out.parent.mkdir(exist_ok=True)
    wrong[["set", "row_id", "words", "first_error", "first_error_step", "text", "completion"]].to_csv(out, index=False)

    print(f"{len(wrong)} wrong of {len(predictions)} tallies; first error by kind and string length:")
    print(
        pd.crosstab(wrong["first_error"], wrong["words"] > LONG, margins=True).rename(
            columns={False: f"<= {LONG} words", True: f"> {LONG} words"}
        )
    )
    vocabulary = set(pd.read_parquet(args.data / "01_raw/vocabulary.parquet")["word"].str.lower())
    print("\nletter count of a word, per step reached with the right word:")
    print(word_length_skill(predictions, vocabulary))
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
