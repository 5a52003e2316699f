"""Letter counting: how many alphabetic characters a string holds.

"Letters" means ``str.isalpha`` characters; spaces, digits and punctuation are not letters,
so ``"dog dog a"`` has 7.
"""

import re

import numpy as np

PROMPT_TEMPLATE = 'how many letters are there in the following string: "{text}"?'

_LAST_INTEGER = re.compile(r"(-?\d+)(?!.*\d)", re.DOTALL)


def count_letters(text: str) -> int:
    """Return the number of alphabetic characters in ``text`` (the label, recomputed)."""
    return sum(char.isalpha() for char in text)


def render_prompt(text: str, template: str = PROMPT_TEMPLATE) -> str:
    """Ask the question about ``text`` with ``template`` (which holds ``{text}``)."""
    return template.format(text=text)


def render_answer(letters: int) -> str:
    """Render the expected answer in the direct format: the number alone."""
    return str(letters)


def parse_answer(completion: str) -> int | None:
    """Read the final integer of a model's completion, or ``None`` if it has none.

    Taking the last number lets one parser serve both a direct answer (``"7"``) and a
    step-by-step one that ends in its total (``"... Answer: 7"``).
    """
    match = _LAST_INTEGER.search(completion)
    return int(match.group(1)) if match else None


def sample_texts(
    words: np.ndarray,
    n: int,
    min_words: int,
    max_words: int,
    rng: np.random.Generator,
) -> list[str]:
    """Draw ``n`` strings of ``min_words``-``max_words`` words, uniformly with replacement.

    Vectorised: one draw for all lengths and one for all words, so a million rows take
    seconds.
    """
    lengths = rng.integers(min_words, max_words + 1, size=n)
    flat = words[rng.integers(0, len(words), size=int(lengths.sum()))]
    bounds = np.cumsum(lengths)[:-1]
    return [" ".join(chunk) for chunk in np.split(flat, bounds)]
