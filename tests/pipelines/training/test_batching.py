import copy

import numpy as np
import torch

from synthtune.llm import IGNORE_INDEX, collate, encode_rows
from synthtune.pipelines.training.batching import answer_loss, batch_order

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
