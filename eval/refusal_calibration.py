"""The hybrid path's refusal floor, chosen for one adapter on synthetic questions, never on held-out ones.

    python -m eval.refusal_calibration            # the newest adapter; writes <adapter>/refusal_floor.json

A small reader that has seen few refusals rarely ranks one first, yet it gives the refusal's first token
more weight when its context cannot answer the question than when it can. `answer.refusal_floor` turns
that into refusals: hybrid refuses when the first token of the refusal gets at least the floor. Where the
floor should sit moves from one training to the next (0.1 refused 27% of the unanswerable dev questions
with one adapter and none with another), so it is measured for each adapter:

- answerable: the dataset's validation RAFT pairs whose context holds the answer;
- unanswerable: its validation RAFT pairs whose answer was taken out of the context, and questions on
  subjects the corpus never mentions (`training.pairs.refusal_questions`), with what retrieval finds.

The floor is the lowest that refuses at most `max_false_refusals` of the answerable prompts. It is written
beside the adapter with what it refused on each side, and `answer.refusal_floor = auto` reads it.

A second, cheaper signal sits before the model: a question whose context is far from it, or lacks the
rare words it names, has no answer in the documents (`indexing.retrieve.gate_score`). The retrieval gate
is the score under which `GATE_SHARE` of the validation split's questions fall (answerable by
construction); `answer.retrieval_gate = auto` makes hybrid refuse below it without generating. The
floor's 5% was chosen on the shipped held-out set's dev half. So were the gate's 5% and its words' weight
0.5 (`answer.retrieval_gate_words`), with the floor off; unanswerable refused / answerable wrongly
refused, of 11 / 66:

    weight        share 5%   share 10%
    0 (cosine)    0 / 2      3 / 5
    0.2           4 / 2      5 / 6
    0.5           5 / 3      5 / 9
    1             5 / 6      9 / 14

The validation questions are extractive and share more words with their sentence than a person's
question does, so a larger weight or share refuses more answerable held-out questions than it promises.
"""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from assistant.answer import REFUSAL_FLOOR_FILE, prompt_messages
from assistant.core.config import Config
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import latest_artifact
from assistant.core.prompts import REFUSAL
from eval.questions import QuestionsError
from training.pairs import refusal_questions

CALIBRATION_FILE = REFUSAL_FLOOR_FILE
GATE_SHARE = 0.05
MIN_FLOOR_PROMPTS = 20


def refusal_probabilities(generator, conversations: list[list[dict]], batch_size: int = 8) -> list[float]:
    """The tuned model's probability of starting its answer with the refusal's first token."""
    import torch

    model, tokenizer = generator.model(True), generator.tokenizer
    refusal_token = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"][0]
    probabilities: list[float] = []
    for start in range(0, len(conversations), batch_size):
        # as the generator encodes a prompt: the template writes <bos>; left padding keeps the ends aligned
        texts = [tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                 for m in conversations[start:start + batch_size]]
        inputs = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="left")
        with torch.inference_mode():
            logits = model(**inputs, logits_to_keep=1).logits[:, -1].float()
        probabilities.extend(logits.softmax(-1)[:, refusal_token].tolist())
    return probabilities


def choose_floor(answerable: list[float], max_false_refusals: float) -> float:
    """The lowest floor that refuses at most `max_false_refusals` of the answerable prompts (ties refuse)."""
    ranked = sorted(answerable, reverse=True)
    allowed = int(max_false_refusals * len(ranked))
    # refusing p >= floor: just above the (allowed+1)-th highest answerable probability
    return min(1.0, ranked[allowed] + 1e-6) if allowed < len(ranked) else 0.0


def choose_gate(answerable_scores: list[float], share: float) -> float:
    """The highest gate (refuse below it) that refuses at most `share` of the answerable questions."""
    ranked = sorted(answerable_scores)
    allowed = int(share * len(ranked))
    return ranked[allowed] if allowed < len(ranked) else 0.0


def validation_pairs(cfg: Config) -> list[dict]:
    """The newest dataset's validation pairs ([] before there is one)."""
    dataset = latest_artifact(cfg.datasets_dir) if cfg.datasets_dir.exists() else None
    path = dataset / "validation.jsonl" if dataset else None
    if path is None or not path.exists():
        return []
    return [pair for _, pair in read_jsonl(path, QuestionsError)]


def validation_questions(cfg: Config) -> list[str]:
    """The newest dataset's validation questions that have an answer (a phrasing of a trained fact)."""
    return sorted({pair["meta"]["question"] for pair in validation_pairs(cfg)
                   if "point_id" in (pair.get("meta") or {}) and pair["messages"][-1]["content"] != REFUSAL})


def retrieval_scores(assistant, questions: list[str], word_weight: float) -> list[float]:
    """The gate's score for each question's context, as the hybrid path retrieves it."""
    from indexing.retrieve import gate_score

    return [gate_score(question, hits, assistant.retriever.idf, word_weight)
            for question, hits in zip(questions, assistant.retriever.passages_many(questions))]


def calibration_prompts(cfg: Config, assistant, count: int, seed: int) -> tuple[list[list[dict]], list[list[dict]]]:
    """(answerable, unanswerable) prompts from the newest dataset's validation split and off-topic questions."""
    pairs = validation_pairs(cfg)
    if not pairs:
        return [], []
    answerable, unanswerable = [], []
    for pair in pairs:
        meta = pair.get("meta") or {}
        if meta.get("type") != "raft":
            continue
        prompt = [m for m in pair["messages"] if m["role"] != "assistant"]
        (unanswerable if pair["messages"][-1]["content"] == REFUSAL else answerable).append(prompt)
    rng = random.Random(seed)
    answerable = rng.sample(answerable, min(count, len(answerable)))
    off_topic = refusal_questions(assistant.retriever.chunks, count // 2, rng)
    for question, hits in zip(off_topic, assistant.retriever.passages_many(off_topic)):
        unanswerable.append(prompt_messages(question, hits, ()))
    return answerable, unanswerable


def calibrate(cfg: Config, assistant, max_false_refusals: float = 0.05, count: int = 120,
              progress: bool = True) -> dict | None:
    """Measure, choose and write the adapter's floor; None without an adapter, a local model or a dataset."""
    if not assistant.has_adapter or not hasattr(assistant.generator, "tokenizer"):     # a remote model: no logits
        return None
    answerable, unanswerable = calibration_prompts(cfg, assistant, count, cfg.seed)
    questions = validation_questions(cfg)
    if not questions and not answerable:
        return None
    # The floor needs 20 answerable prompts to place its cut; the gate needs only the validation questions.
    # A small corpus still gets its gate: the handbook's split held 17 such prompts in one run, 21 in another.
    floor, p_answerable, p_unanswerable = None, [], []
    if len(answerable) >= MIN_FLOOR_PROMPTS and unanswerable:
        if progress:
            print(f"refusal floor: {len(answerable)} answerable and {len(unanswerable)} unanswerable synthetic "
                  "prompts", file=sys.stderr)
        p_answerable = refusal_probabilities(assistant.generator, answerable)
        p_unanswerable = refusal_probabilities(assistant.generator, unanswerable)
        floor = choose_floor(p_answerable, max_false_refusals)
    words = cfg.answer.retrieval_gate_words
    gate = choose_gate(retrieval_scores(assistant, questions, words), GATE_SHARE)
    off_topic = refusal_questions(assistant.retriever.chunks, count // 2, random.Random(cfg.seed + 1))

    def share(values: list[float], test) -> float | None:     # None where no floor was measured
        return sum(map(test, values)) / len(values) if values else None

    result = {
        "floor": floor, "max_false_refusals": max_false_refusals,
        "answerable": len(answerable), "unanswerable": len(unanswerable),     # synthetic prompts found
        "false_refusals": share(p_answerable, lambda p: p >= floor),
        "refused_unanswerable": share(p_unanswerable, lambda p: p >= floor),
        "greedy_refused_unanswerable": share(p_unanswerable, lambda p: p >= 0.5),
        "retrieval_gate": gate, "gate_word_weight": words, "gate_share": GATE_SHARE,
        "gate_questions": len(questions),
        "gate_refused_off_topic": (sum(score < gate for score in retrieval_scores(assistant, off_topic, words))
                                   / max(1, len(off_topic))),
        "dataset": latest_artifact(cfg.datasets_dir).name,
    }
    target = Path(assistant.adapter) / CALIBRATION_FILE
    target.write_text(json.dumps(result, indent=2), encoding="utf-8")
    if progress:
        print(f"{describe(result)} -> {target}", file=sys.stderr)
    return result


def describe(result: dict) -> str:
    """The calibration in one line, for the progress output and `assistant train`'s summary."""
    floor = result["floor"]
    said = (f"refusal floor {floor:.3f}: refuses {result['refused_unanswerable']:.0%} of unanswerable and "
            f"{result['false_refusals']:.0%} of answerable synthetic prompts" if floor is not None else
            f"no refusal floor: {result['answerable']} answerable validation prompts, fewer than {MIN_FLOOR_PROMPTS}")
    return (f"{said}; retrieval gate {result['retrieval_gate']:.3f}: refuses {result['gate_refused_off_topic']:.0%} "
            f"of off-topic questions and {result['gate_share']:.0%} of {result['gate_questions']} validation ones")


if __name__ == "__main__":
    from assistant.answer import Assistant
    from assistant.core.config import load_config

    config = load_config()
    print(json.dumps(calibrate(config, Assistant(config)), indent=2))
