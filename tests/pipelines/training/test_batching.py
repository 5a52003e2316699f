import copy

import numpy as np
import torch

from synthtune.llm import IGNORE_INDEX, collate, encode_rows
from synthtune.pipelines.training.batching import (
    answer_loss,
    batch_order,
    curriculum_batches,
    length_curriculum,
    summed_loss,
)

from ...conftest import make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "the cat sat"])


def test_answer_loss_matches_the_full_head_loss(tiny_lm):
    batch = collate(encode_rows(ROWS, tiny_lm.tokenizer), tiny_lm.tokenizer.pad_token_id)
    model = tiny_lm.model.eval()
    with torch.no_grad():
        ours = answer_loss(model, batch)
        reference = model(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            position_ids=batch["position_ids"],
            labels=batch["labels"],
        ).loss
    torch.testing.assert_close(ours, reference, rtol=1e-4, atol=1e-4)


def test_loss_decreases_on_a_fixed_batch(tiny_lm):
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(0)
    model = get_peft_model(
        copy.deepcopy(tiny_lm.model), LoraConfig(task_type="CAUSAL_LM", r=8, target_modules="all-linear")
    )
    batch = collate(encode_rows(ROWS, tiny_lm.tokenizer), tiny_lm.tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        loss = answer_loss(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < 0.6 * losses[0]


def test_batch_order_is_seeded_and_covers_every_row_each_epoch():
    lengths = [5, 50, 6, 7, 60, 8, 9, 70, 10, 11]
    order = batch_order(lengths, 5, 4, seed=3)
    assert [len(b) for b in order] == [5, 5, 5, 5]
    assert sorted(list(order[0]) + list(order[1])) == list(range(10))
    assert all((a == b).all() for a, b in zip(order, batch_order(lengths, 5, 4, seed=3), strict=True))


def test_batch_order_groups_rows_of_similar_length():
    lengths = [10] * 32 + [100] * 32
    rng = np.random.default_rng(0)
    lengths = list(rng.permutation(lengths))
    for batch in batch_order(lengths, 8, 8, seed=0):
        assert len({lengths[i] for i in batch}) == 1  # no short row padded to a long one


def test_answer_loss_sum_and_full_head_agree_with_the_mean(tiny_lm):
    batch = collate(encode_rows(ROWS, tiny_lm.tokenizer), tiny_lm.tokenizer.pad_token_id)
    n_answer = int((batch["labels"] != IGNORE_INDEX).sum())
    model = tiny_lm.model.eval()
    with torch.no_grad():
        mean = answer_loss(model, batch)
        total = answer_loss(model, batch, reduction="sum")
        full_head = answer_loss(model, batch, answer_only_head=False)
    torch.testing.assert_close(total / n_answer, mean)
    torch.testing.assert_close(full_head, mean, rtol=1e-4, atol=1e-4)


def test_batch_order_without_bucketing_mixes_lengths():
    lengths = list(np.random.default_rng(0).permutation([10] * 32 + [100] * 32))
    mixed = [len({lengths[i] for i in b}) for b in batch_order(lengths, 8, 8, seed=0, bucketing=False)]
    assert max(mixed) == 2


def test_row_summed_loss_adds_each_rows_mean(tiny_lm):
    examples = encode_rows(ROWS, tiny_lm.tokenizer)
    pad = tiny_lm.tokenizer.pad_token_id
    model = tiny_lm.model.eval()
    with torch.no_grad():
        by_row = summed_loss(model, collate(examples, pad), "row")
        alone = sum(answer_loss(model, collate([e], pad)) for e in examples)
        by_token = summed_loss(model, collate(examples, pad), "token")
    torch.testing.assert_close(by_row, alone, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(by_token, answer_loss(model, collate(examples, pad), reduction="sum"))


def test_length_curriculum_sorts_only_the_first_batches():
    lengths = np.array([9, 1, 7, 3, 12, 2, 5, 8])
    batches = [np.array([0, 1]), np.array([2, 3]), np.array([4, 5]), np.array([6, 7])]  # means 5, 5, 7, 6.5
    ordered = length_curriculum(batches, lengths, 3)
    assert [b.tolist() for b in ordered] == [[0, 1], [2, 3], [4, 5], [6, 7]]  # ties keep their order
    ordered = length_curriculum(batches[::-1], lengths, 4)
    assert [lengths[b].mean() for b in ordered] == [5, 5, 6.5, 7]
    assert length_curriculum(batches, lengths, 0) == batches


def test_batch_order_with_a_curriculum_reorders_its_first_batches_only():
    lengths = list(np.random.default_rng(1).integers(1, 100, size=40))
    plain = batch_order(lengths, 4, 20, seed=5, bucketing=False)
    curriculum = batch_order(lengths, 4, 20, seed=5, bucketing=False, curriculum_batches=10)
    means = [float(np.mean([lengths[i] for i in b])) for b in curriculum[:10]]
    assert means == sorted(means)  # short rows first
    assert sorted(map(tuple, curriculum[:10])) == sorted(map(tuple, plain[:10]))  # the same batches
    assert all((a == b).all() for a, b in zip(curriculum[10:], plain[10:], strict=True))  # then the usual order
    again = batch_order(lengths, 4, 20, seed=5, bucketing=False, curriculum_batches=10)
    assert all((a == b).all() for a, b in zip(curriculum, again, strict=True))  # seeded


def test_curriculum_batches_covers_the_share_of_steps():
    assert curriculum_batches(None, 100, 2) == 0
    assert curriculum_batches({"warmup_share": 0.3}, 10, 1) == 3  # not 4 from 0.3 * 10 = 3.0000000000000004
    assert curriculum_batches({"warmup_share": 0.25}, 10, 2) == 6  # whole steps: 2.5 -> 3 steps of 2 batches
    assert curriculum_batches({"warmup_share": 1}, 10, 3) == 30
