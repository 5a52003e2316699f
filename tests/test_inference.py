import copy

import numpy as np
import pytest
import torch

from synthtune import inference
from synthtune.inference import AnswerScores, greedy_decode, greedy_prefixes, score_answers
from synthtune.llm import encode_rows

from .conftest import make_rows

ROWS = make_rows(["a a", "be be be be", "dog dog a", "i am fine", "mark", "sit down now please"], fmt="tally")


@pytest.fixture(scope="module")
def model(tiny_lm):
    return copy.deepcopy(tiny_lm.model).eval()


def reference_generate(model, tokenizer, prompts, max_new):
    """Hugging Face ``generate``, one prompt at a time (no padding at all)."""
    out = []
    for prompt in prompts:
        ids = torch.tensor([prompt])
        generated = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )[0, len(prompt) :].tolist()
        out.append(generated)
    return out


@pytest.mark.parametrize("prefill_tokens", [1024, 1], ids=["one prefill pass", "a prefill pass per prompt"])
def test_greedy_decode_writes_what_generate_writes(tiny_lm, model, monkeypatch, prefill_tokens):
    # with one pass per prompt, each batch's cache is laid together from caches of other widths
    monkeypatch.setattr(inference, "PREFILL_TOKENS", prefill_tokens)
    tok = tiny_lm.tokenizer
    prompts = [e["prompt"] for e in encode_rows(ROWS, tok)]
    budgets = np.array([5, 90, 3, 12, 150, 1])  # 150 new tokens: the KV cache grows twice
    outputs, stopped = greedy_decode(model, prompts, budgets, tok.eos_token_id, tok.pad_token_id, 4, "cpu")
    expected = reference_generate(model, tok, prompts, int(budgets.max()))
    for got, want, budget, stop in zip(outputs, expected, budgets, stopped, strict=True):
        want = want[:budget]
        if tok.eos_token_id in want:  # generate went on padding after EOS
            assert stop and got == want[: want.index(tok.eos_token_id)]
        else:
            assert not stop and got == want  # the budget ran out: exactly `budget` tokens, no EOS
            assert len(got) == budget


def test_greedy_decode_stops_a_row_at_eos_and_reports_it(tiny_lm):
    tok = tiny_lm.tokenizer

    eos, other = tok.eos_token_id, 7 if tok.eos_token_id != 7 else 8

    class SaysEos(torch.nn.Module):
        """A stub model: EOS right after token 1, else ``other`` forever."""

        def forward(self, input_ids, **kwargs):
            logits = torch.zeros(len(input_ids), input_ids.shape[1], max(eos, other) + 1)
            logits[:, -1, other] = 1.0
            logits[input_ids[:, -1] == 1, -1, eos] = 2.0
            return type("Output", (), {"logits": logits})()

    outputs, stopped = greedy_decode(SaysEos(), [[3, 1], [1, 2, 3]], np.array([4, 4]), eos, 0, 2, "cpu")
    assert outputs[0] == [] and stopped[0]  # EOS at once: nothing written, stopped
    assert outputs[1] == [other] * 4 and not stopped[1]  # never stops: exactly its budget


def test_teacher_forced_scoring_agrees_with_decoding(tiny_lm, model):
    tok = tiny_lm.tokenizer
    examples = encode_rows(ROWS, tok)
    loss, tokens, exact, agreed, guess = score_answers(model, examples, tok.pad_token_id, 4, "cpu")
    assert (tokens == [len(e["answer"]) for e in examples]).all()
    assert (loss > 0).all()
    # a random model writes none of the answers; the rows it "writes" are its own greedy outputs
    assert not exact.any()
    prompts = [e["prompt"] for e in examples]
    outputs, stopped = greedy_decode(
        model, prompts, np.full(len(prompts), 6), tok.eos_token_id, tok.pad_token_id, 3, "cpu"
    )
    own = [{"prompt": p, "answer": o + [tok.eos_token_id]} for p, o, s in zip(prompts, outputs, stopped, strict=True)]
    agree = score_answers(model, own, tok.pad_token_id, 4, "cpu").exact
    assert agree[stopped].all()  # what greedy decoding wrote and stopped on is, teacher-forced, exact
    assert not agree[~stopped].any()  # it did not stop there, so EOS is not the argmax


def test_teacher_forcing_finds_where_greedy_decoding_leaves_the_answer(tiny_lm, model):
    """``agreed``/``guess``: the answer's first tokens greedy decoding writes, then its token
    where it first writes another. Checked on answers made from the model's own greedy output
    with one token changed at a known place."""
    tok = tiny_lm.tokenizer
    prompts = [e["prompt"] for e in encode_rows(ROWS, tok)]
    outputs, _ = greedy_decode(model, prompts, np.full(len(prompts), 8), tok.eos_token_id, tok.pad_token_id, 3, "cpu")
    places = [0, 3, 7, 5, 1, 6]
    changed = []
    for output, k in zip(outputs, places, strict=True):
        answer = list(output) + [tok.eos_token_id]
        answer[k] = (answer[k] + 1) % 100 if answer[k] != tok.eos_token_id else 5
        changed.append(answer)
    scores = score_answers(
        model, [{"prompt": p, "answer": a} for p, a in zip(prompts, changed, strict=True)], tok.pad_token_id, 4, "cpu"
    )
    assert scores.agreed.tolist() == places
    assert scores.guess.tolist() == [
        o[k] if k < len(o) else tok.eos_token_id for o, k in zip(outputs, places, strict=True)
    ]
    assert not scores.exact.any()


def test_greedy_prefixes_on_literal_scores():
    eos = 0
    answers = [[5, 6, 7, 0], [5, 6, 7, 0], [5, 6, 7, 0], [5, 6, 7, 0], [5, 6, 7, 0]]
    scores = AnswerScores(
        loss=np.zeros(5),
        tokens=np.full(5, 4),
        exact=np.array([True, False, False, False, True]),
        agreed=np.array([4, 2, 1, 3, 4]),
        guess=np.array([-1, 9, 0, 8, -1]),
    )
    known, decided, stopped = greedy_prefixes(answers, scores, np.array([10, 10, 10, 2, 3]), eos)
    assert known == [
        [5, 6, 7],  # the whole answer, then EOS: decided, stopped
        [5, 6, 9],  # two agreed, then its own token: decode on from there
        [5],  # EOS where the answer goes on: decided, stopped early
        [5, 6],  # its budget of 2 ends inside the agreed tokens: decided, not stopped
        [5, 6, 7],  # the answer does not fit a budget of 3: cut there, not stopped
    ]
    assert decided.tolist() == [True, False, True, True, True]
    assert stopped.tolist() == [True, False, True, False, False]


@pytest.mark.parametrize("guess", ["right", "half right", "wrong"])
def test_speculative_decoding_writes_what_one_token_at_a_time_writes(tiny_lm, model, monkeypatch, guess):
    """Guesses change the number of forward passes, never the tokens: right guesses save
    passes, wrong ones are masked out of the KV cache, which is packed again as they pile up."""
    import synthtune.inference as inference

    tok = tiny_lm.tokenizer
    prompts = [e["prompt"] for e in encode_rows(ROWS, tok)]
    budgets = np.array([5, 90, 3, 12, 150, 40])
    args = (tok.eos_token_id, tok.pad_token_id, 4, "cpu")
    passes = []
    hook = model.register_forward_hook(lambda *_: passes.append(1))
    want, want_stopped = greedy_decode(model, prompts, budgets, *args)
    plain = len(passes)
    rng = np.random.default_rng(0)

    def draft(i, written):
        ahead = want[i][len(written) : len(written) + 12] + ([tok.eos_token_id] if want_stopped[i] else [])
        if guess == "wrong" or (guess == "half right" and len(written) % 2):
            return rng.integers(5, 1000, 12).tolist()
        return ahead

    packed = []
    pack = inference._pack_cache
    monkeypatch.setattr(inference, "_pack_cache", lambda *a: packed.append(1) or pack(*a))
    passes.clear()
    got, stopped = greedy_decode(model, prompts, budgets, *args, draft=draft, draft_tokens=64)
    hook.remove()
    assert got == want and (stopped == want_stopped).all()
    if guess == "right":
        assert len(passes) < plain / 4
    if guess == "wrong":
        assert len(passes) == plain and packed  # one pass a token, as without guesses


def test_a_batch_too_wide_for_the_guess_budget_decodes_one_token_at_a_time(tiny_lm, model):
    tok = tiny_lm.tokenizer
    prompts = [e["prompt"] for e in encode_rows(ROWS, tok)]
    asked = []
    greedy_decode(
        model, prompts, np.full(len(prompts), 6), tok.eos_token_id, tok.pad_token_id, 6, "cpu",
        draft=lambda i, w: asked.append(i) or [5, 6], draft_tokens=5,
    )  # fmt: skip
    assert not asked  # 6 rows and 5 guessed tokens a pass: no row gets one
