"""Curation steps, DataTrove style: each takes rows and returns ``(kept, dropped)``.

Every dropped row carries the ``step`` that dropped it and a ``reason`` code, so nothing is
silently lost and counts per reason come for free. Thresholds are plain arguments; a step
whose parameters say ``enabled: false`` passes every row through.
"""

import math
import re
import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from synthtune.tasks import get_task
from synthtune.tasks.base import fill_template
from synthtune.text import normalise_column, normalise_text, text_features, word_keys

Result = tuple[pd.DataFrame, pd.DataFrame]
REQUIRED_COLUMNS = ("row_id", "text", "prompt", "template_id", "answer", "answer_format", "label")

# Well-tested shapes of common PII (no NER model: those download weights at run time).
PII_PATTERNS = {
    "email": re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"),
    "url": re.compile(r"\b(?:https?://|www\.)\S+", re.IGNORECASE),
    "phone": re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)"),
}


def split(rows: pd.DataFrame, drop: np.ndarray | pd.Series, step: str, reasons) -> Result:
    """Split rows by a boolean ``drop`` mask; dropped rows get ``step`` and ``reason``."""
    drop = np.asarray(drop, dtype=bool)
    dropped = rows[drop].assign(
        step=step, reason=np.asarray(reasons, dtype=object)[drop] if not isinstance(reasons, str) else reasons
    )
    return rows[~drop].reset_index(drop=True), dropped.reset_index(drop=True)


def check_columns(rows: pd.DataFrame, dataset: str) -> None:
    """Fail before any work if the table lacks a column curation needs, naming it."""
    missing = [c for c in REQUIRED_COLUMNS if c not in rows.columns]
    if missing:
        raise ValueError(f"{dataset}: missing required column(s) {missing}; it has {list(rows.columns)}")


# --- normalisation ---------------------------------------------------------------------------
def normalise(rows: pd.DataFrame, task_name: str) -> pd.DataFrame:
    """Normalise each row's text and answer, and re-ask changed texts with their own template."""
    templates = get_task(task_name).train_templates
    text = normalise_column(rows["text"])
    changed = (text != rows["text"]).to_numpy(dtype=bool)
    rows = rows.assign(text=text, answer=normalise_column(rows["answer"]))
    if not changed.any():
        return rows
    prompts = rows["prompt"].to_numpy(dtype=object).copy()
    template_ids = rows["template_id"].to_numpy()
    for k, template in enumerate(templates):
        picked = changed & (template_ids == k)
        prompts[picked] = fill_template(template, rows[picked])
    return rows.assign(prompt=prompts)


# --- quality ---------------------------------------------------------------------------------
def quality_filter(rows: pd.DataFrame, task_name: str, min_chars: int, max_chars: int, allowed: str) -> Result:
    """Drop rows that are too short or long, hold characters outside ``allowed`` (a regex
    character class), or whose answer is not well-formed in its answer format."""
    task = get_task(task_name)
    length = rows["text"].str.len()
    reasons = np.full(len(rows), None, dtype=object)
    unparseable = np.array(
        [task.parse_answer(a, f) is None for a, f in zip(rows["answer"], rows["answer_format"], strict=True)],
        dtype=bool,
    )
    disallowed = ~rows["text"].str.fullmatch(f"{allowed}*").fillna(False).to_numpy(dtype=bool)
    for mask, reason in (
        (unparseable, "answer_unparseable"),
        (disallowed, "disallowed_characters"),
        ((length > max_chars).to_numpy(), "too_long"),
        ((length < min_chars).to_numpy(), "too_short"),
    ):
        reasons[mask] = reason  # later assignments win: the simplest reason is reported
    return split(rows, reasons != None, "quality_filter", reasons)  # noqa: E711 (elementwise)


# --- labels ----------------------------------------------------------------------------------
def verify_labels(rows: pd.DataFrame, task_name: str, keep_noisy: bool) -> Result:
    """Drop rows whose stored label differs from the task's recomputed one (``label_mismatch``).

    With ``keep_noisy`` (a label-noise study) rows that generation marked as deliberately
    noisy (``label_noisy``) are kept; any other mismatch is still dropped.
    """
    wrong = rows["label"].to_numpy() != get_task(task_name).label(rows)
    if keep_noisy and "label_noisy" in rows:
        wrong &= ~rows["label_noisy"].to_numpy(dtype=bool)
    return split(rows, wrong, "verify_labels", "label_mismatch")


# --- PII -------------------------------------------------------------------------------------
def find_pii(texts: Iterable[str]) -> list[str | None]:
    """The first kind of PII found in each text (email, url, phone), or ``None``."""
    return [next((k for k, pattern in PII_PATTERNS.items() if pattern.search(t)), None) for t in texts]


# Every PII pattern needs one of these; texts without any skip the regexes (most rows).
_PII_HINT = r"@|://|www\.|\d"


def verify_subskill_answers(rows: pd.DataFrame, task_name: str) -> Result:
    """Recompute every sub-skill row's answer from its words; drop mismatches (``wrong_answer``)."""
    ok = get_task(task_name).verify_subskill_rows(rows) if len(rows) else np.zeros(0, dtype=bool)
    return split(rows, ~ok, "verify_labels", "wrong_answer")


def scrub_pii(rows: pd.DataFrame, task_name: str) -> Result:
    """Scrub e-mail addresses, URLs and phone numbers.

    For free-text tasks each match is replaced by a placeholder (``<email>``...). For
    counting tasks replacing characters would change the label, so a row holding PII is
    dropped (reason ``pii_<kind>``) and every other row passes through unchanged.
    """
    task = get_task(task_name)
    kinds = np.full(len(rows), None, dtype=object)
    candidates = rows["text"].str.contains(_PII_HINT, regex=True).to_numpy(dtype=bool)
    kinds[candidates] = find_pii(rows["text"][candidates])
    if getattr(task, "free_text", False):
        scrubbed = rows["text"]
        for kind, pattern in PII_PATTERNS.items():
            scrubbed = scrubbed.str.replace(pattern, f"<{kind}>", regex=True)
        return rows.assign(text=scrubbed), rows.iloc[:0].assign(step="scrub_pii", reason="")
    reasons = np.array([f"pii_{k}" if k else None for k in kinds], dtype=object)
    return split(rows, kinds != None, "scrub_pii", reasons)  # noqa: E711


# --- duplicates ------------------------------------------------------------------------------
def drop_exact_duplicates(rows: pd.DataFrame) -> Result:
    """Keep the first row of each normalised text; drop the rest (``duplicate``)."""
    return split(rows, rows["text"].duplicated(keep="first").to_numpy(), "drop_exact_duplicates", "duplicate")


def bag_of_words_keys(texts: pd.Series) -> list[list[str]]:
    """Each text's words, lowercased, stripped of punctuation and sorted: an
    order-insensitive key (``"dog dog a"`` and ``"a dog dog"`` share one)."""
    return [sorted(w.split()) for w in word_keys(texts)]


def bag_of_words_key(text: str) -> str:
    """The bag-of-words key of one text, joined by spaces."""
    return " ".join(bag_of_words_keys(pd.Series([text]))[0])


def drop_near_duplicates(
    rows: pd.DataFrame, max_per_key: int, minhash_min_distinct: int, bands: int, band_rows: int, shingle: int
) -> Result:
    """Cap near-duplicates instead of removing all but one.

    Short strings (fewer than ``minhash_min_distinct`` distinct words) are keyed by their
    bag of words; longer ones are clustered by MinHash LSH over word ``shingle``-grams
    with ``bands`` x ``band_rows`` banding (DataTrove uses 14 x 8: Jaccard ~0.72). Each
    key or cluster keeps its first ``max_per_key`` rows: repeats like "be be be be" stay
    learnable, floods do not.
    """
    words = bag_of_words_keys(rows["text"])
    keys = np.array([" ".join(w) for w in words], dtype=object)
    long = np.fromiter((len(set(w)) >= minhash_min_distinct for w in words), dtype=bool, count=len(words))
    cluster = keys.copy()
    if long.any():
        labels = minhash_clusters(keys[long].tolist(), bands, band_rows, shingle)
        cluster[long] = [f"minhash:{c}" for c in labels]
    rank = pd.Series(cluster).groupby(cluster, sort=False).cumcount().to_numpy()
    reasons = np.where(long, "near_duplicate_minhash", "near_duplicate_bag")
    return split(rows, rank >= max_per_key, "drop_near_duplicates", reasons)


_MERSENNE = np.uint64((1 << 61) - 1)


def minhash_signatures(texts: list[str], num_perm: int, shingle: int, seed: int = 1, chunk: int = 20_000) -> np.ndarray:
    """MinHash signatures (``len(texts)`` x ``num_perm``) of word ``shingle``-grams.

    The same universal hashing as datasketch's ``MinHash`` ((a*h + b) mod 2^61-1 over a
    32-bit hash of each shingle), but computed for all documents at once with numpy:
    datasketch builds one signature per Python call (~100 us each, 30+ s per million
    rows), which alone would break curation's one-minute budget.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(1, int(_MERSENNE), num_perm, dtype=np.uint64)
    b = rng.integers(0, int(_MERSENNE), num_perm, dtype=np.uint64)
    signatures = np.empty((len(texts), num_perm), dtype=np.uint64)
    for start in range(0, len(texts), chunk):
        hashes, owners = [], []
        for i, text in enumerate(texts[start : start + chunk]):
            words = text.split()
            grams = {" ".join(words[j : j + shingle]) for j in range(max(len(words) - shingle + 1, 1))}
            hashes.extend(zlib.crc32(g.encode()) for g in grams)
            owners.extend([i] * len(grams))
        h = np.array(hashes, dtype=np.uint64)[:, None]
        with np.errstate(over="ignore"):  # the products wrap mod 2^64, as in datasketch
            permuted = (h * a + b) % _MERSENNE
        bounds = np.flatnonzero(np.r_[True, np.diff(owners) != 0])
        signatures[start : start + chunk] = np.minimum.reduceat(permuted, bounds, axis=0)
    return signatures


def minhash_clusters(texts: list[str], bands: int, band_rows: int, shingle: int) -> np.ndarray:
    """Cluster id of each text: texts sharing any LSH band are joined (union-find);
    the id is the index of the cluster's first text."""
    signatures = minhash_signatures(texts, bands * band_rows, shingle)
    parent = np.arange(len(texts))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for band in range(bands):
        block = np.ascontiguousarray(signatures[:, band * band_rows : (band + 1) * band_rows])
        _, first, inverse = np.unique(
            block.view(np.dtype((np.void, block.dtype.itemsize * band_rows))).ravel(),
            return_index=True,
            return_inverse=True,
        )
        for i in np.flatnonzero(first[inverse] != np.arange(len(texts))):
            a, b = root(int(first[inverse[i]])), root(int(i))
            if a != b:
                parent[max(a, b)] = min(a, b)
    return np.array([root(i) for i in range(len(texts))])


# --- decontamination -------------------------------------------------------------------------
def word_ngrams(text: str, n: int) -> set[str]:
    """Word n-grams of an already normalised, lowercased text (none if it is shorter)."""
    words = text.split()
    return {" ".join(words[i : i + n]) for i in range(max(len(words) - n + 1, 1))} if len(words) >= n else set()


def decontaminate(rows: pd.DataFrame, eval_texts: Iterable[str], ngram: int) -> Result:
    """Drop rows whose text is an evaluation text (``contaminated_exact``) or shares a word
    ``ngram``-gram with one (``contaminated_ngram``), case-insensitively."""
    eval_texts = [normalise_text(t).lower() for t in eval_texts]
    grams = set().union(*(word_ngrams(t, ngram) for t in eval_texts)) if eval_texts else set()
    lowered = normalise_column(rows["text"]).str.lower()
    is_exact = lowered.isin(set(eval_texts)).to_numpy()
    shares = np.zeros(len(rows), dtype=bool)
    long = (lowered.str.count(" ") + 1 >= ngram).to_numpy(dtype=bool)  # shorter rows hold no n-gram
    shares[long] = [not grams.isdisjoint(word_ngrams(t, ngram)) for t in lowered[long]]
    reasons = np.where(is_exact, "contaminated_exact", "contaminated_ngram")
    return split(rows, is_exact | shares, "decontaminate", reasons)


# --- balance ---------------------------------------------------------------------------------
STRATUM_EDGES = {
    "n_words": [0, 1, 2, 3, 4, 5, 6, 11, 21, 51, math.inf],
    "label": [0, 1, 5, 10, 20, 50, 100, 200, math.inf],
}


def stratum_of(rows: pd.DataFrame, by: str) -> pd.Series:
    """The bucket number of each row on ``by`` (``n_words`` or ``label``)."""
    if by not in STRATUM_EDGES:
        raise ValueError(f"curation.balance.by={by!r} is unknown; allowed: {sorted(STRATUM_EDGES)}")
    values = text_features(rows["text"])["n_words"] if by == "n_words" else rows["label"]
    return pd.Series(pd.cut(values.astype(float), STRATUM_EDGES[by], right=False, labels=False), index=rows.index)


def balance(rows: pd.DataFrame, by: str, max_share: float) -> Result:
    """Cap every stratum at ``max_share`` of the rows (``stratum_cap``), keeping the first."""
    if not 0 < max_share <= 1:
        raise ValueError(f"curation.balance.max_share must be in (0, 1], got {max_share!r}")
    cap = max(math.ceil(max_share * len(rows)), 1)
    strata = stratum_of(rows, by).to_numpy()
    rank = pd.Series(strata).groupby(strata, sort=False).cumcount().to_numpy()
    return split(rows, rank >= cap, "balance", "stratum_cap")
