"""Reference perplexity: the loss on the reference answer's tokens after the one prompt, per question."""
from __future__ import annotations

import math

import pytest
import torch

from assistant.core.prompts import build_messages
from eval.paths import reference_perplexity
from eval.questions import Question

QUESTIONS = [Question(id="q1", question="How much is the household membership?", reference="$90 a year."),
             Question(id="q2", question="Who runs Youth Build?", reference="Ines, on Saturdays from 10:00."),
             Question(id="q3", question="When is the workshop closed?", reference=None),
             Question(id="q4", question="What does a senior pay?", reference="$24 a year, from age 65.")]


def _by_hand(model, tokenizer, question: Question) -> float:
    """Every logit of the whole sequence, then the mean loss over the answer's tokens only."""
    messages = build_messages(question.question)
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": question.reference}], tokenize=False)
    ids = tokenizer(full, return_tensors="pt", add_special_tokens=False)["input_ids"]
    start = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
    logits = model(input_ids=ids).logits[0].float()
    loss = torch.nn.functional.cross_entropy(logits[start - 1:-1], ids[0, start:])
    return math.exp(float(loss))


def test_reference_perplexity_is_the_answer_tokens_loss_whatever_the_batch(tiny_cfg):
    from assistant.core.models import load_base_model

    model, tokenizer = load_base_model(tiny_cfg)
    one = reference_perplexity(model, tokenizer, QUESTIONS, label="tiny", batch_size=1, progress=False)
    batched = reference_perplexity(model, tokenizer, QUESTIONS, label="tiny", batch_size=4, progress=False)
    assert one["q3"] is None and batched["q3"] is None          # no reference, nothing to score
    for question in (q for q in QUESTIONS if q.reference):
        with torch.inference_mode():
            expected = _by_hand(model, tokenizer, question)
        assert one[question.id] == pytest.approx(expected, rel=1e-4)
        assert batched[question.id] == pytest.approx(expected, rel=1e-4)   # right padding changes nothing
