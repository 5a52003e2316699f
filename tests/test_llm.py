import os

import numpy as np
import torch

from synthtune.llm import IGNORE_INDEX, answer_logits, collate, encode_rows, set_threads, split_by_tokens

from .conftest import make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a"])


def test_only_answer_tokens_carry_loss_and_eos_is_learned(tiny_lm):
    tok = tiny_lm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the pitfall this collator must survive
    examples = encode_rows(ROWS, tok)
    batch = collate(examples, tok.pad_token_id)
    for i, example in enumerate(examples):
        labels = batch["labels"][i]
        supervised = labels[labels != IGNORE_INDEX].tolist()
        assert supervised == example["answer"]
        assert supervised[-1] == tok.eos_token_id
        assert tok.decode(supervised[:-1]) == ROWS["answer"][i]
    # padding sits on the left, is masked out of attention and never supervised
    row = batch["attention_mask"][0]
    assert row.tolist() == sorted(row.tolist())
    assert (batch["labels"][batch["attention_mask"] == 0] == IGNORE_INDEX).all()


def test_answer_logits_are_the_full_heads_at_each_answer_token_row_by_row(tiny_lm):
    tok = tiny_lm.tokenizer
    examples = encode_rows(ROWS, tok)
    batch = collate(examples, tok.pad_token_id)
    model = tiny_lm.model.eval()
    with torch.no_grad():
        logits, targets, rows = answer_logits(model, batch)
        full = model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], position_ids=batch["position_ids"]
        ).logits
    assert targets.tolist() == [t for e in examples for t in e["answer"]]
    assert rows.tolist() == [i for i, e in enumerate(examples) for _ in e["answer"]]
    width = batch["input_ids"].shape[1]
    expected = torch.cat([full[i, width - len(e["answer"]) - 1 : width - 1] for i, e in enumerate(examples)])
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)


def test_split_by_tokens_keeps_each_micro_batch_within_the_budget():
    lengths = np.array([30, 5, 100, 6, 40, 7, 8, 300])
    batch = np.arange(8)
    assert [b.tolist() for b in split_by_tokens(batch, lengths, None)] == [batch.tolist()]
    assert [b.tolist() for b in split_by_tokens(batch, lengths, 8 * 300)] == [batch.tolist()]  # fits: untouched
    parts = split_by_tokens(batch, lengths, 120)
    assert sorted(i for p in parts for i in p) == batch.tolist()  # every row once
    for part in parts:
        assert len(part) * lengths[part].max() <= 120 or len(part) == 1  # a 300-token row goes alone
    assert [lengths[p].tolist() for p in parts] == [[5, 6, 7, 8], [30, 40], [100], [300]]
    assert [len(p) for p in split_by_tokens(batch, lengths, None, max_rows=3)] == [3, 3, 2]
    assert split_by_tokens(batch[:0], lengths, 10) == []


def test_split_by_tokens_can_fill_batches_in_another_order_within_the_same_memory():
    # failed rows in evaluation: ordered by tokens left to write, bounded by prompt + budget
    pending = np.array([0, 1, 2, 3, 4, 6])
    tokens_left = np.array([50, 5, 40, 6, 7, 99, 45])
    lengths = np.array([20, 10, 20, 10, 10, 10, 40])
    batches = split_by_tokens(pending, lengths, 100, max_rows=3, order=tokens_left)
    assert [b.tolist() for b in batches] == [[1, 3, 4], [2, 6], [0]]  # fewest tokens left first
    assert all(len(b) * lengths[b].max() <= 100 and len(b) <= 3 for b in batches)  # [2, 6]: 2 x 40, not 2 x 20


def test_set_threads_takes_every_core_unless_omp_num_threads_says_otherwise(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        set_threads()
        assert torch.get_num_threads() == 1
        monkeypatch.delenv("OMP_NUM_THREADS")
        set_threads()
        assert torch.get_num_threads() == len(os.sched_getaffinity(0))
    finally:
        torch.set_num_threads(before)
