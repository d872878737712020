"""Run the questions through the answer paths (base, rag, offline, hybrid), and score references by perplexity.

    python -m eval.paths "Who approves a $30,000 purchase?" --modes base,rag   # one question, each path

Answers come from `assistant.answer.Assistant.answer_batch`, a batch at a time, so the model's
memory-bound LM head is shared across questions. Each finished batch is appended to a cache file
in the evals folder, keyed by everything that decides the answer (model, adapter, index, prompt,
token limit, question); a killed evaluation therefore resumes where it stopped, and a re-run with
nothing changed generates nothing.
"""
from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from assistant.core.answer_loss import IGNORE, answer_token_losses
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import sha256_json
from assistant.core.modes import Mode
from assistant.core.prompts import PROMPT_VERSION, build_messages
from eval.questions import Question


@dataclass
class PathAnswer:
    question_id: str
    mode: str
    answer: str
    contexts: list[str] | None        # chunk texts put in the prompt; None when the path does not retrieve
    context_doc_ids: list[str] | None
    latency_s: float
    tokens: int
    first_token_s: float | None


def answer_key(question: Question, mode: str, settings: dict) -> str:
    """What decides an answer: the question, the path, and the run's model/index/prompt settings."""
    return sha256_json({"q": question.question, "mode": mode, **settings})[:24]


def _load_cache(path: Path) -> dict[str, dict]:
    cached: dict[str, dict] = {}
    if path.exists():
        # A line cut by a kill is skipped: that answer is simply generated again.
        for _, record in read_jsonl(path, skip_broken=True):
            if "key" in record and "answer" in record:
                cached[record["key"]] = record["answer"]
    return cached


def answer_all(assistant, questions: Sequence[Question], modes: Sequence[str], *, settings: dict,
               cache_path: Path, batch_size: int, max_new_tokens: int | None = None,
               progress: bool = True) -> list[PathAnswer]:
    """Every question through every mode, reusing cached answers; returns them in mode, question order."""
    cache = _load_cache(cache_path)
    cache_path.parent.mkdir(parents=True, exist_ok=True)
    keys = {(q.id, mode): answer_key(q, mode, settings) for q in questions for mode in modes}
    todo = [(q, mode) for mode in modes for q in questions if keys[q.id, mode] not in cache]
    bar = tqdm(total=len(todo), desc="answering", unit="q", disable=not progress or not todo, file=sys.stderr)
    with open(cache_path, "a", encoding="utf-8") as sink:
        for mode in modes:
            waiting = [q for q, m in todo if m == mode]
            # answer_batch sorts what it gets by length into batches of `batch_size`; handing it a few
            # batches at once lets it group similar lengths, and each call is one checkpoint.
            step = batch_size * 4          # also one whole batch on the paths without retrieval
            for start in range(0, len(waiting), step):
                batch = waiting[start:start + step]
                answers = assistant.answer_batch([q.question for q in batch], mode, max_new_tokens=max_new_tokens)
                for question, answer in zip(batch, answers):
                    record = _path_answer(question.id, mode, answer)
                    cache[keys[question.id, mode]] = asdict(record)
                    sink.write(json.dumps({"key": keys[question.id, mode], "answer": asdict(record)}) + "\n")
                sink.flush()
                bar.update(len(batch))
    bar.close()
    return [PathAnswer(**{**cache[keys[q.id, mode]], "question_id": q.id}) for mode in modes for q in questions]


def _path_answer(question_id: str, mode: str, answer) -> PathAnswer:
    retrieves = Mode(mode).retrieves
    return PathAnswer(
        question_id=question_id, mode=mode, answer=answer.text,
        contexts=[hit.chunk.text for hit in answer.hits] if retrieves else None,
        context_doc_ids=[hit.chunk.doc_id for hit in answer.hits] if retrieves else None,
        latency_s=float(answer.latency_s), tokens=int(answer.tokens),
        first_token_s=answer.first_token_s,
    )


def answer_settings(cfg, adapter: str | None, index: str | None) -> dict:
    """The run settings that decide answers, for the cache key and the manifest."""
    return {"base_model": cfg.base_model, "adapter": adapter, "index": index, "prompt": PROMPT_VERSION,
            "max_new_tokens": cfg.eval.max_new_tokens, "top_k": cfg.retrieve.top_k,
            "retriever": cfg.retrieve.retriever, "sentences": cfg.retrieve.sentences,
            "search_ef": cfg.retrieve.search_ef, "refusal_floor": cfg.answer.refusal_floor,
            "backend": cfg.answer.backend, "decode_vocabulary": cfg.answer.decode_vocabulary}


def reference_perplexity(model, tokenizer, questions: Sequence[Question], *, label: str,
                         batch_size: int = 8, progress: bool = True) -> dict[str, float | None]:
    """Perplexity of each question's reference answer after the prompt, per question id; only answer
    tokens count toward the loss. `label` names the model on the progress bar."""
    import torch

    scored = [q for q in questions if q.reference]
    result: dict[str, float | None] = {q.id: None for q in questions}
    with torch.inference_mode():
        for start in tqdm(range(0, len(scored), batch_size), desc=f"perplexity ({label})",
                          disable=not progress, file=sys.stderr):
            batch = scored[start:start + batch_size]
            for question, value in zip(batch, _batch_perplexity(model, tokenizer, batch)):
                result[question.id] = value
    return result


def _batch_perplexity(model, tokenizer, batch: Sequence[Question]) -> list[float]:
    import torch

    prompts, full = [], []
    for q in batch:
        messages = build_messages(q.question)
        prompts.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
        full.append(tokenizer.apply_chat_template([*messages, {"role": "assistant", "content": q.reference}],
                                                  tokenize=False))
    encoded = tokenizer(full, return_tensors="pt", padding=True, add_special_tokens=False, padding_side="right")
    prompt_lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    labels = encoded["input_ids"].clone()                                   # [batch, seq]
    labels[encoded["attention_mask"] == 0] = IGNORE
    for row, length in enumerate(prompt_lengths):
        labels[row, :length] = IGNORE
    losses, rows = answer_token_losses(model, dict(encoded), labels)       # per answer token, and its row
    counts = torch.zeros(labels.shape[0]).index_add_(0, rows, torch.ones_like(losses))
    per_row = torch.zeros(labels.shape[0]).index_add_(0, rows, losses) / counts.clamp(min=1)
    return [math.exp(min(float(v), 50.0)) for v in per_row]


if __name__ == "__main__":
    import argparse

    from assistant.answer import Assistant
    from assistant.core.config import load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("question")
    parser.add_argument("--modes", default="base,rag,offline,hybrid")
    options = parser.parse_args()
    helper = Assistant(load_config())
    for path_mode in options.modes.split(","):
        reply = helper.answer_batch([options.question], path_mode)[0]
        print(f"[{path_mode}] {reply.text}  ({reply.tokens} tokens, {reply.latency_s:.1f} s)")
