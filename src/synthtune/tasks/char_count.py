"""Character counting: how many times one letter appears in a string.

``how many times does the letter r appear in "strawberry"?`` -> 3 (case-insensitive).
"""

import string

import numpy as np
import pandas as pd

from .base import COUNT, Task, count_digits

# Share of rows asking about a letter the text contains (the rest ask about any letter,
# so 0 is a frequent, honest answer).
P_PRESENT = 0.75


class CharCount(Task):
    name = "char_count"
    train_templates = (
        'how many times does the letter {letter} appear in "{text}"?',
        'Count the letter "{letter}" in "{text}".',
        'How many {letter}\'s are in "{text}"?',
        'In "{text}", how often does the letter {letter} occur?',
    )
    heldout_templates = (
        'What is the number of occurrences of "{letter}" in the text "{text}"?',
        'Letter {letter}: how many in "{text}"?',
    )
    formats = ("direct", "spell")
    answer_patterns = {
        "direct": COUNT,
        # letters, each hit numbered, separated by spaces and closed by ". "; none for ""
        "spell": r"(?:(?:[^\W\d_](?:\([0-9]+\))? )*[^\W\d_](?:\([0-9]+\))?\. )?Answer: " + COUNT,
    }

    def add_fields(self, rows: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Pick the letter each row asks about: mostly one of its own letters."""
        alphabet = np.array(list(string.ascii_lowercase), dtype=object)
        any_letter = alphabet[rng.integers(0, 26, len(rows))]
        present = rng.random(len(rows)) < P_PRESENT
        pick = rng.random(len(rows))
        letters = []
        for text, p, use_own, fallback in zip(rows["text"], pick, present, any_letter, strict=True):
            own = [c for c in text.lower() if c in string.ascii_lowercase]
            letters.append(own[int(p * len(own))] if use_own and own else fallback)
        return rows.assign(letter=letters)

    def label(self, rows: pd.DataFrame) -> np.ndarray:
        return np.array([t.lower().count(c) for t, c in zip(rows["text"], rows["letter"], strict=True)], dtype=np.int64)

    def render_steps(self, rows: pd.DataFrame, labels, fmt: str) -> list[str]:
        """``spell``: the letters one by one, each hit numbered, then the answer.

        ``r`` in ``"strawberry"`` -> ``"s t r(1) a w b e r(2) r(3) y. Answer: 3"``.
        """
        return [spell(t, c) for t, c in zip(rows["text"], rows["letter"], strict=True)]

    def max_step_tokens(self, rows: pd.DataFrame, fmt: str, tokenizer) -> np.ndarray:
        """At most one step per character of the string, each at most ``" x(N)"``: 4 tokens
        plus N's digits; then ``. Answer: `` (at most 10 tokens), the answer's digits and EOS."""
        length = rows["text"].str.len().to_numpy()
        digits = count_digits(length)
        return length * (4 + digits) + 10 + digits + 1


def spell(text: str, letter: str) -> str:
    """The spelled-out answer for one row."""
    hits, steps = 0, []
    for char in text:
        if not char.isalpha():
            continue
        if char.lower() == letter:
            hits += 1
            steps.append(f"{char}({hits})")
        else:
            steps.append(char)
    return (" ".join(steps) + ". " if steps else "") + f"Answer: {hits}"


TASK = CharCount()
