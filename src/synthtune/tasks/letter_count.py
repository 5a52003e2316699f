"""Letter counting: how many alphabetic characters a string holds.

``"dog dog a"`` -> 7. "Letters" are ``str.isalpha`` characters: spaces, digits and
punctuation are not letters.
"""

import functools
import re

import numpy as np
import pandas as pd

from .base import COUNT, Subskill, Task, count_digits, count_letters, count_letters_vectorised, token_counts

# steps "word N (T)" joined by ", " and closed by ". ", then the answer; none for ""
TALLY = r"(?:(?:\S+ [0-9]+ \([0-9]+\), )*\S+ [0-9]+ \([0-9]+\)\. )?Answer: " + COUNT
# steps "word: l1 l2 ..." (each letter with its place in the whole string) or "word: -" (no
# letters), joined by ", " and closed by ". ", then the answer; none for ""
_SPELLED_STEP = r"\S+: (?:-|[^\W\d_][0-9]+(?: [^\W\d_][0-9]+)*)"
TALLY_SPELLED = rf"(?:(?:{_SPELLED_STEP}, )*{_SPELLED_STEP}\. )?Answer: " + COUNT
# one written tally step and what follows it: ", " (more steps) or ". " (the answer)
_WRITTEN_STEP = re.compile(r"(\S+) ([0-9]+) \(([0-9]+)\)(, |\. )")
#: tally steps a guess looks ahead
GUESS_STEPS = 3


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
    formats = ("direct", "tally", "tally_ordinal", "tally_spelled")
    answer_patterns = {
        "direct": COUNT,
        "tally": TALLY,
        "tally_ordinal": TALLY,
        "tally_spelled": TALLY_SPELLED,
    }

    subskills = {
        # each word with its letter count, the fact every step of a tally needs, over the whole
        # vocabulary; answered as a tally (~7 tokens a word), the task's own format. Its earlier
        # format of its own ("dog 3, house 5", ~4 tokens a word) taught a second answer to nearly
        # the same question: the default model wrote it for 46 of 200 held-out phrasings
        # ('Letter count of "..."?'), each one scored wrong
        "word_lengths": Subskill(
            templates=(
                'How many letters are in each word of "{text}"?',
                'Give the letter count of every word in "{text}".',
                'List each word of "{text}" with its number of letters.',
            ),
            render=lambda words: tally(" ".join(words)),
            pattern=TALLY,
        ),
        # each word spelt letter by letter, then counted (TIPA, arXiv 2411.17679, teaches a
        # model the characters inside its tokens this way)
        "spelling": Subskill(
            templates=(
                'Spell each word of "{text}" and count its letters.',
                'Spell out "{text}" word by word, with the letters of each word.',
            ),
            render=lambda words: ", ".join(f"{w} = {' '.join(w)} ({count_letters(w)})" for w in words),
            pattern=r"\S+ = \S(?: \S)* \([0-9]+\)(?:, \S+ = \S(?: \S)* \([0-9]+\))*",
        ),
        # each word spelt with its letters numbered, the step of the tally_spelled format (an
        # exercise in the answer's own format, as word_lengths is for tally)
        "spelled_words": Subskill(
            templates=(
                'Spell each word of "{text}" and number its letters.',
                'Write out the letters of every word in "{text}", numbering them as you go.',
            ),
            render=lambda words: spelled_tally(" ".join(words)),
            pattern=TALLY_SPELLED,
        ),
    }

    def label(self, rows: pd.DataFrame) -> np.ndarray:
        return count_letters_vectorised(rows["text"])

    def render_steps(self, rows: pd.DataFrame, labels, fmt: str) -> list[str]:
        """``tally``: each word with its letters and the running total, then the answer.

        ``"dog dog a"`` -> ``"dog 3 (3), dog 3 (6), a 1 (7). Answer: 7"``. A 135M model
        cannot add many numbers in one step; one small addition per word it can learn.
        ``tally_spelled``: each word spelt, every letter numbered by its place in the whole
        string (:func:`spelled_tally`).
        """
        if fmt == "tally_spelled":
            return [spelled_tally(text) for text in rows["text"]]
        return [tally(text, ordinals=fmt == "tally_ordinal") for text in rows["text"]]

    def max_step_tokens(self, rows: pd.DataFrame, fmt: str, tokenizer) -> np.ndarray:
        """Per whitespace token ``w`` the tally writes ``w N (T), ``: the tokens of ``w`` (or of
        ``" " + w``, whichever is more), then those of `` N (T),`` with N as many digits as
        ``len(w)`` has and T as many as the string's length has; then ``). Answer: T`` and
        EOS. Digits and punctuation are counted with the tokenizer itself, so the bound is
        tight for it (measured 1.08x the answers' median length on the default sets). In
        ``tally_ordinal`` a word written again is counted with its ``#k``. ``tally_spelled``:
        see :func:`spelled_tally_bound`."""
        if fmt == "tally_spelled":
            return spelled_tally_bound(rows["text"].tolist(), tokenizer)
        texts = rows["text"].tolist()
        ordinals = fmt == "tally_ordinal"
        words = [w for t in texts for w in shown_words(t, ordinals)]
        row = np.repeat(np.arange(len(texts)), [len(t.split()) for t in texts]).astype(np.int64)
        total_digits = count_digits([len(t) for t in texts])
        word_digits = count_digits([len(w) for w in words])

        @functools.cache
        def length(text: str) -> int:
            return len(tokenizer(text, add_special_tokens=False)["input_ids"])

        # a word is written as " w", except the first, written as "w" (which may split differently)
        word_tokens = np.maximum(*(token_counts(tokenizer, [p + w for w in words]) for p in ("", " ")))
        step = [length(f" {'9' * n} ({'9' * t}),") for n, t in zip(word_digits, total_digits[row], strict=True)]
        end = np.array([length(f"). Answer: {'9' * t}") for t in total_digits], dtype=np.int64)
        per_word = word_tokens + np.array(step, dtype=np.int64)
        return np.bincount(row, weights=per_word, minlength=len(texts)).astype(np.int64) + end + 1

    def guess_continuation(self, text: str, fmt: str, written: str) -> str:
        """How a tally goes on from the model's own steps: the string's next words, each
        with the count the model last gave that word (else its true count), added to the
        model's own running total; past the string's last word, the last word again (a
        model that lost its place in a run of one word repeats it). ``GUESS_STEPS`` steps
        ahead, less what ``written`` has of the next one; ``""`` where ``written`` leaves
        the tally's shape. The guess is computed from the string, so it is often the right
        tally, but it is kept only where the model's own argmax writes it (see
        ``synthtune.inference.greedy_decode``): it changes how many passes decoding takes,
        never what is written."""
        if fmt not in ("tally", "tally_ordinal"):
            return ""
        words = shown_words(text, ordinals=fmt == "tally_ordinal")
        pos = steps = total = 0
        counts: dict[str, int] = {}
        last = None
        ahead: list[str] = []
        while step := _WRITTEN_STEP.match(written, pos):
            last, total, pos, steps = step.group(1), int(step.group(3)), step.end(), steps + 1
            counts[last] = int(step.group(2))
            if step.group(4) == ". ":
                ahead.append(f"Answer: {total}")
                break
        for k in range(steps, steps + (0 if ahead else GUESS_STEPS)):  # none once the answer is due
            word = words[k] if k < len(words) else last
            if word is None:
                break
            letters = counts.get(word, count_letters(word))
            total += letters
            final = k == len(words) - 1
            ahead.append(_step(word, letters, total) + (f". Answer: {total}" if final else ", "))
            if final:
                break
        guess, tail = "".join(ahead), written[pos:]
        return guess[len(tail) :] if guess.startswith(tail) else ""


def tally(text: str, ordinals: bool = False) -> str:
    """The running-tally answer for one string.

    With ``ordinals``, a word written again carries which time it is (``dog dog a`` ->
    ``dog 3 (3), dog#2 3 (6), a 1 (7). Answer: 7``): a model copying the string's words one
    by one cannot otherwise tell the second ``dog`` of a run from the first.
    """
    total, steps = 0, []
    for word, shown in zip(text.split(), shown_words(text, ordinals), strict=True):
        letters = count_letters(word)
        total += letters
        steps.append(_step(shown, letters, total))
    return (", ".join(steps) + ". " if steps else "") + f"Answer: {total}"


def _step(word: str, letters: int, total: int) -> str:
    """One step of a tally: the word, its letters, the running total (read by ``_WRITTEN_STEP``)."""
    return f"{word} {letters} ({total})"


def spelled_tally(text: str) -> str:
    """The spelled tally of one string: each word, then its letters, each numbered by its
    place among the string's letters; a word without letters is written ``-``.

    ``dog dog a`` -> ``dog: d1 o2 g3, dog: d4 o5 g6, a: a7. Answer: 7``. It asks no word's
    length from memory (only its spelling, read off the word) and no addition (each number is
    the last plus one), so it holds for any word the model can spell, at about twice the
    tokens of ``tally``.
    """
    total, steps = 0, []
    for word in text.split():
        letters = []
        for char in word:
            if char.isalpha():
                total += 1
                letters.append(f"{char}{total}")
        steps.append(f"{word}: {' '.join(letters) or '-'}")
    return (", ".join(steps) + ". " if steps else "") + f"Answer: {total}"


def spelled_tally_bound(texts: list[str], tokenizer) -> np.ndarray:
    """Tokens a correct spelled tally of each text takes at most, EOS included, from the text
    alone: per word its tokens (as ``w`` or `` w``, whichever is more), ``:`` and ``,``; per
    character other than a space `` c`` and as many digits as the string has characters (any
    character might be a letter: which ones are is the label); then ``. Answer: `` and the
    digits again."""

    @functools.cache
    def length(piece: str) -> int:
        return len(tokenizer(piece, add_special_tokens=False)["input_ids"])

    colon, comma, answer = length(":"), length(","), length(". Answer: ")
    bounds = []
    for text in texts:
        digits = len(str(len(text)))
        words = text.split()
        per_word = sum(max(length(w), length(" " + w)) + colon + comma for w in words)
        per_char = sum(length(" " + c) + digits for w in words for c in w)
        bounds.append(per_word + per_char + answer + digits + 1)
    return np.array(bounds, dtype=np.int64)


TASK = LetterCount()


def shown_words(text: str, ordinals: bool) -> list[str]:
    """The words of ``text`` as a tally writes them: as they are, or with ``ordinals`` each
    repeat marked with the time it occurs (``dog``, ``dog#2``, ``a``)."""
    words = text.split()
    if not ordinals:
        return words
    seen: dict[str, int] = {}
    shown = []
    for word in words:
        seen[word] = seen.get(word, 0) + 1
        shown.append(f"{word}#{seen[word]}" if seen[word] > 1 else word)
    return shown
