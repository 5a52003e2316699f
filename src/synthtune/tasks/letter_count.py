"""Letter counting: how many alphabetic characters a string holds.

``"dog dog a"`` -> 7. "Letters" are ``str.isalpha`` characters: spaces, digits and
punctuation are not letters.
"""

import numpy as np
import pandas as pd

from .base import Task, count_letters, count_letters_vectorised


class LetterCount(Task):
    name = "letter_count"
    train_templates = (
        'how many letters are there in the following string: "{text}"?',
        'Count the letters in "{text}".',
        'How many letters does "{text}" contain?',
        'What is the number of letters in the string "{text}"?',
        '"{text}": how many letters is that?',
        'Tell me how many alphabetic characters are in "{text}".',
    )
    heldout_templates = (
        'Please count every letter in this text: "{text}". How many are there?',
        'Letter count of "{text}"?',
        'Ignoring spaces and punctuation, how many letters make up "{text}"?',
    )
    formats = ("direct", "tally")

    def label(self, rows: pd.DataFrame) -> np.ndarray:
        return count_letters_vectorised(rows["text"])

    def render_steps(self, rows: pd.DataFrame, labels, fmt: str) -> list[str]:
        """``tally``: each word with its letters and the running total, then the answer.

        ``"dog dog a"`` -> ``"dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"``. A 135M model
        cannot add many numbers in one step; one small addition per word it can learn.
        """
        return [tally(text) for text in rows["text"]]


def tally(text: str) -> str:
    """The running-tally answer for one string."""
    total, steps = 0, []
    for word in text.split():
        letters = count_letters(word)
        total += letters
        steps.append(f"{word} {letters} ({total})")
    return (", ".join(steps) + ". " if steps else "") + f"Answer: {total}"


TASK = LetterCount()
