import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from synthtune.llm import IGNORE_INDEX
from synthtune.pipelines.training.nodes import (
    answer_loss,
    batch_order,
    check_tokenizer,
    collate,
    encode_training_rows,
    train_lora,
)

from ...conftest import TRAIN_PARAMS, make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "the cat sat"])
PARAMS = TRAIN_PARAMS


def fresh(lm):
    return SimpleNamespace(model=copy.deepcopy(lm.model), tokenizer=lm.tokenizer)


def test_only_answer_tokens_carry_loss_and_eos_is_learned(tiny_lm):
    tok = tiny_lm.tokenizer
    assert tok.pad_token_id == tok.eos_token_id  # the pitfall this collator must survive
    examples = encode_training_rows(ROWS.iloc[:3], tok)
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


def test_answer_loss_matches_the_full_head_loss(tiny_lm):
    batch = collate(encode_training_rows(ROWS, tiny_lm.tokenizer), tiny_lm.tokenizer.pad_token_id)
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
    batch = collate(encode_training_rows(ROWS, tiny_lm.tokenizer), tiny_lm.tokenizer.pad_token_id)
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


def test_train_lora_trains_only_the_adapter_and_logs_each_step(tiny_lm):
    base = fresh(tiny_lm)
    before = {k: v.clone() for k, v in base.model.state_dict().items()}
    model, log = train_lora(base, ROWS, PARAMS)
    assert log["step"].tolist() == [1, 2, 3, 4]
    assert {"loss", "lr", "tokens", "tokens_per_s", "elapsed_s"} <= set(log.columns)
    assert model.peft_config["default"].base_model_name_or_path == "base_model"  # no machine path
    modules = model.peft_config["default"].target_modules
    assert modules == sorted(modules) and any(m.endswith("q_proj") for m in modules)  # saved in a stable order
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen = model.get_base_model().state_dict()
    for name, tensor in before.items():
        key = name.replace("q_proj.weight", "q_proj.base_layer.weight")
        if key in frozen:
            assert torch.equal(frozen[key], tensor)


def test_train_lora_is_reproducible(tiny_lm):
    _, first = train_lora(fresh(tiny_lm), ROWS, PARAMS)
    _, second = train_lora(fresh(tiny_lm), ROWS, PARAMS)
    assert first["loss"].tolist() == second["loss"].tolist()


def test_train_lora_rejects_an_empty_table(tiny_lm):
    with pytest.raises(ValueError, match="model_input_train\\) is empty"):
        train_lora(fresh(tiny_lm), ROWS.iloc[:0], PARAMS)


def test_train_lora_names_a_target_module_that_matches_nothing(tiny_lm):
    params = {**PARAMS, "lora": {**PARAMS["lora"], "target_modules": ["no_such_proj"]}}
    with pytest.raises(ValueError, match="no_such_proj"):
        train_lora(fresh(tiny_lm), ROWS, params)


class _Tokenizer:
    def __init__(self, eos, pieces):
        self.eos_token_id, self._pieces = eos, pieces

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(self._pieces))}


def test_check_tokenizer_accepts_the_real_one(tiny_lm):
    check_tokenizer(tiny_lm.tokenizer)


@pytest.mark.parametrize(
    ("tokenizer", "message"), [(_Tokenizer(None, 10), "no EOS"), (_Tokenizer(2, 4), "into 4 tokens")]
)
def test_check_tokenizer_rejects_unfit_tokenizers(tokenizer, message):
    with pytest.raises(ValueError, match=message):
        check_tokenizer(tokenizer)
