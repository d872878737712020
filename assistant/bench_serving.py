"""Serving speed on this machine: retrieval + prompt build, time to first token, tokens/s per path,
batched vs one-at-a-time generation, and concurrent chat sessions through the real Gradio app.

    assistant bench serving            # the real model, full-length answers
    assistant bench serving --quick    # shorter answers, fewer questions (21 min on 2 shared cores)

Targets (issue 6): retrieval + prompt build <= 50 ms, first token <= 1.5 s on hybrid, 20 concurrent
chat sessions finish with no error. Paths that need an adapter are measured only when one exists;
without it, rag (the same weights minus the LoRA) stands in and the row says so.
"""
from __future__ import annotations

import json
import socket
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from assistant.answer import Assistant, prompt_messages
from assistant.core.config import Config
from assistant.core.jsonl import read_jsonl
from assistant.core.modes import Mode

FALLBACK_QUESTIONS = [
    "Who approves a purchase order over 25,000 EUR?", "How do I report a lost corporate card?",
    "What is the meal allowance on a business trip?", "When is the month-end close?",
    "How are vendor bank details changed?", "What does three-way match compare?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def row(measure: str, value: float | int | None, unit: str, target: str = "", detail: str = "") -> dict:
    return {"measure": measure, "value": value, "unit": unit, "target": target, "detail": detail}


def bench_questions(cfg: Config, count: int) -> list[str]:
    path = cfg.questions_path
    questions = []
    if path is not None and path.exists():
        questions = [record["question"] for _, record in read_jsonl(path)]
    questions = questions or FALLBACK_QUESTIONS
    return [questions[i % len(questions)] for i in range(count)]


def bench_retrieval(assistant: Assistant, questions: list[str]) -> list[dict]:
    """Search, the prompt, and its tokens: everything before the model runs, as the answer paths do it (the
    sentences that best match the question, under their chunks' headings; whole chunks made a 591-token prompt
    where the paths send about half that). A chunk's sentences are embedded the first time a question reaches
    it and kept for the process, so the questions go twice: a server that has just started, then one that has
    run a while."""
    tokenizer = assistant.generator.tokenizer
    retrieve = assistant.cfg.retrieve
    detail = f"{len(questions)} questions, top_k={retrieve.top_k}, sentences={retrieve.sentences}, {retrieve.retriever}"
    rows = []
    for again in (False, True):
        timings, lengths = [], []
        for question in questions:
            start = time.perf_counter()
            messages = prompt_messages(question, assistant._retrieve([question], Mode.HYBRID)[0], ())
            prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)["input_ids"]
            timings.append(1000 * (time.perf_counter() - start))
            lengths.append(len(prompt))
        name = "retrieval + prompt build" + ("" if again else ", sentences not embedded yet")
        rows += [row(f"{name} p50", round(percentile(timings, 0.5), 1), "ms", "<= 50 ms" if again else "", detail),
                 row(f"{name} p95", round(percentile(timings, 0.95), 1), "ms", "", detail)]
    # Prefill cost grows with the prompt, so its length explains most of the time to first token.
    return rows + [row("prompt with context p50", percentile(lengths, 0.5), "tokens", "", detail)]


def bench_paths(assistant: Assistant, questions: list[str], max_new_tokens: int) -> list[dict]:
    """One request at a time, streamed: tokens/s per path, and time to first token on hybrid."""
    rows, first_tokens = [], {}
    for mode in Mode:
        if mode.tuned and not assistant.has_adapter:
            rows.append(row(f"{mode}: tokens/s", None, "tokens/s", "", "no adapter yet (assistant train)"))
            continue
        answers = [assistant.answer(q, mode, max_new_tokens=max_new_tokens) for q in questions]
        tokens, seconds = sum(a.tokens for a in answers), sum(a.latency_s for a in answers)
        first_tokens[mode] = [a.first_token_s for a in answers if a.first_token_s is not None]
        rows.append(row(f"{mode}: tokens/s", round(tokens / seconds, 1), "tokens/s", "",
                        f"{len(answers)} questions, {tokens} tokens, one stream, prompt included"))
    mode = "hybrid" if assistant.has_adapter else "rag"
    detail = f"{mode}, {len(questions)} questions" + ("" if mode == "hybrid" else " (stands in for hybrid: no adapter yet)")
    if first_tokens.get(mode):
        rows.append(row(f"{mode}: time to first token p50", round(percentile(first_tokens[mode], 0.5), 2), "s",
                        "<= 1.5 s", detail))
        rows.append(row(f"{mode}: time to first token p95", round(percentile(first_tokens[mode], 0.95), 2), "s", "", detail))
    return rows


def bench_batching(assistant: Assistant, questions: list[str], max_new_tokens: int) -> list[dict]:
    """The same questions through answer_batch with batches of 16 and of 1."""
    mode = "hybrid" if assistant.has_adapter else "rag"
    cfg = assistant.cfg
    throughput = {}
    for size in (1, 16):
        batched = assistant.with_config(cfg.model_copy(update={"eval": cfg.eval.model_copy(update={"batch_size": size})}))
        start = time.perf_counter()
        answers = batched.answer_batch(questions, mode, max_new_tokens=max_new_tokens)
        seconds = time.perf_counter() - start
        throughput[size] = sum(a.tokens for a in answers) / seconds
    detail = f"{mode}, {len(questions)} questions, max {max_new_tokens} new tokens"
    return [row("batch 1 throughput", round(throughput[1], 1), "tokens/s", "", detail),
            row("batch 16 throughput", round(throughput[16], 1), "tokens/s", "", detail),
            row("batch 16 speedup", round(throughput[16] / throughput[1], 2), "x", "", detail)]


def bench_sessions(assistant: Assistant, questions: list[str], sessions: int, max_new_tokens: int) -> list[dict]:
    """Concurrent chat sessions against the real app on loopback, through Gradio's HTTP API (a POST per
    question, then its server-sent events), as `curl` or a browser would: gradio_client's job iterator
    polls every millisecond, and twenty of them in this process took more CPU than the model did."""
    import httpx

    from assistant.app import launch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = assistant.cfg
    answer_cfg = cfg.answer.model_copy(update={"max_new_tokens": max_new_tokens})
    short = assistant.with_config(cfg.model_copy(update={"answer": answer_cfg}))
    modes = tuple(m.value for m in Mode if assistant.has_adapter or not m.tuned)
    app, url = launch(short.cfg, port=port, block=False, assistant=short)

    def one_session(i: int) -> tuple[float, float | None, str | None]:
        start, first = time.perf_counter(), None
        try:
            with httpx.Client(base_url=url, timeout=900) as http:
                posted = http.post("/gradio_api/call/respond",
                                   json={"data": [questions[i % len(questions)], [], modes[i % len(modes)]]})
                posted.raise_for_status()
                event, outputs = None, None
                with http.stream("GET", f"/gradio_api/call/respond/{posted.json()['event_id']}") as stream:
                    for line in stream.iter_lines():
                        if line.startswith("event:"):
                            event = line.removeprefix("event:").strip()
                        elif line.startswith("data:") and event == "error":
                            return time.perf_counter() - start, first, f"session {i}: {line.removeprefix('data:').strip()[:200]}"
                        elif line.startswith("data:") and event in ("generating", "complete"):
                            first = first or time.perf_counter() - start      # one event per streamed piece
                            outputs = json.loads(line.removeprefix("data:"))
            chat, sources = outputs[:2] if outputs else (None, "")
            ok = event == "complete" and chat and chat[-1]["role"] == "assistant" and "tokens" in sources
            return time.perf_counter() - start, first, None if ok else f"session {i}: incomplete reply"
        except Exception as err:  # counted and reported, not raised: the bench measures failures
            return time.perf_counter() - start, first, f"session {i}: {err}"

    try:
        with ThreadPoolExecutor(max_workers=sessions) as pool:
            results = list(pool.map(one_session, range(sessions)))
    finally:
        app.close()
    latencies = [seconds for seconds, _, _ in results]
    firsts = [first for _, first, _ in results if first is not None]
    errors = [error for _, _, error in results if error]
    detail = f"{sessions} sessions at once, paths {'/'.join(modes)}, max {max_new_tokens} new tokens"
    return [row("concurrent sessions: errors", len(errors), "count", "0", "; ".join(errors[:3]) or detail),
            row("concurrent sessions: latency p50", round(statistics.median(latencies), 1), "s", "", detail),
            row("concurrent sessions: latency p95", round(percentile(latencies, 0.95), 1), "s", "", detail),
            row("concurrent sessions: time to first token p50", round(statistics.median(firsts), 1) if firsts else None,
                "s", "", detail),
            row("concurrent sessions: time to first token p95", round(percentile(firsts, 0.95), 1) if firsts else None,
                "s", "", detail)]


def run_bench(cfg: Config, quick: bool) -> list[dict]:
    max_new_tokens = 32 if quick else cfg.answer.max_new_tokens
    start = time.perf_counter()
    assistant = Assistant(cfg)
    rows = [row("load model", round(time.perf_counter() - start, 1), "s", "",
                f"adapter: {assistant.adapter or 'none'}; backend {cfg.answer.backend}")]
    from indexing.store import IndexNotFound

    try:
        assistant.retriever.search("warm-up")        # opens the index and loads the embedder once
    except IndexNotFound as err:
        return rows + [row("bench skipped", None, "", "", str(err))]
    stages = [
        ("retrieval", lambda: bench_retrieval(assistant, bench_questions(cfg, 20 if quick else 50))),
        ("paths", lambda: bench_paths(assistant, bench_questions(cfg, 2 if quick else 5), max_new_tokens)),
        ("batching", lambda: bench_batching(assistant, bench_questions(cfg, 16), max_new_tokens)),
        ("sessions", lambda: bench_sessions(assistant, bench_questions(cfg, 20), 20, 16 if quick else max_new_tokens)),
    ]
    # Plain progress lines: the app launched in the sessions stage patches tqdm (gradio's track_tqdm),
    # which breaks a bar opened before it.
    for number, (name, measure) in enumerate(stages, 1):
        print(f"bench serving: stage {number}/{len(stages)}: {name}...", file=sys.stderr, flush=True)
        rows += measure()
    return rows


if __name__ == "__main__":
    import argparse

    from assistant.core.config import load_config
    from eval.report import format_table

    parser = argparse.ArgumentParser(description="Serving benchmark on the configured model.")
    parser.add_argument("--quick", action="store_true")
    print(format_table(run_bench(load_config(), quick=parser.parse_args().quick)))
