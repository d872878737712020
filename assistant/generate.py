"""Generation backends: the local transformers model, or any OpenAI-compatible server.

Both backends offer the same two calls, so the answer paths do not care which one runs:
`generate_batch(conversations, tuned=, max_new_tokens=)` for many prompts at once, and
`stream(messages, tuned=, max_new_tokens=)` that yields text pieces and then one `Generation`.
`tuned=True` means "with the LoRA adapter": locally that is a second copy of the weights with the
adapter merged in; remotely it is a second model name (vLLM's LoRA module).

    python -m assistant.generate "Who approves a purchase order over 25,000 EUR?"   # base model, streamed
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from assistant.core.config import Config, ConfigError
from assistant.core.prompts import END_OF_TURN, REFUSAL


@dataclass
class Generation:
    text: str
    tokens: int                   # generated tokens, the end-of-turn marker not counted
    first_token_s: float | None   # from the call to the first text piece (streaming only)
    seconds: float                # the whole call


def open_generator(cfg: Config, adapter: Path | None) -> LocalGenerator | RemoteGenerator:
    """The backend the config asks for; `adapter` (a PEFT folder or None) matters only locally."""
    if cfg.answer.backend == "openai":
        return RemoteGenerator(cfg)
    from assistant.core.models import load_base_model, load_tuned_model

    base, tokenizer = load_base_model(cfg, cfg.answer.dtype)
    # The adapter merged into a second copy of the weights (0.5 GB in bf16): the unmerged PEFT model
    # recomputes LoRA on every linear layer and its trained turn-token rows of the 262k-row tied head at
    # each generated token, and answered 7x slower here (8 questions: 15.8 s against 2.3 s merged).
    tuned = load_tuned_model(cfg, adapter, cfg.answer.dtype)[0].merge_and_unload() if adapter else None
    return LocalGenerator(base, tokenizer, tuned)


class LocalGenerator:
    """The base model, and the tuned one (base weights with the adapter merged in) when there is one.

    One lock serialises generation: on two CPU cores, running two generations at once would not be
    faster anyway.
    """

    def __init__(self, base, tokenizer, tuned=None):
        self.base = base
        self.tuned = tuned
        self.tokenizer = tokenizer
        self.has_adapter = tuned is not None
        eos = base.generation_config.eos_token_id
        self.stop_ids = set(eos if isinstance(eos, list) else [eos])
        self.refusal_token = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"][0]
        self._lock = threading.Lock()

    def model(self, tuned: bool):
        return self.tuned if tuned and self.tuned is not None else self.base

    def _encode(self, conversations: Sequence[list[dict]]):
        # The template writes <bos> itself; left padding keeps every prompt's end next to its answer.
        texts = [self.tokenizer.apply_chat_template(m, tokenize=False, add_generation_prompt=True)
                 for m in conversations]
        return self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False,
                              padding_side="left")

    def _answer_length(self, new_ids) -> int:
        """Tokens before the first stop token (the rest is the stop token and padding)."""
        for position, token in enumerate(new_ids.tolist()):
            if token in self.stop_ids:
                return position
        return len(new_ids)

    def _refusal_rule(self, refusal_floor: float, prompt_length: int) -> list:
        return [_RefuseWhenLikely(self.refusal_token, refusal_floor, prompt_length)] if refusal_floor else []

    def generate_batch(self, conversations: Sequence[list[dict]], *, tuned: bool,
                       max_new_tokens: int, refusal_floor: float = 0.0) -> list[Generation]:
        import torch
        from transformers import LogitsProcessorList

        inputs = self._encode(conversations)
        rules = LogitsProcessorList(self._refusal_rule(refusal_floor, inputs["input_ids"].shape[1]))
        start = time.perf_counter()
        with self._lock, torch.inference_mode():
            output = self.model(tuned).generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False,
                                         top_p=None, top_k=None, logits_processor=rules)
        seconds = time.perf_counter() - start
        new_ids = output[:, inputs["input_ids"].shape[1]:]   # [batch, generated]
        results = []
        for row in new_ids:
            length = self._answer_length(row)
            text = self.tokenizer.decode(row[:length], skip_special_tokens=True).strip()
            results.append(Generation(text, length, None, seconds))
        return results

    def stream(self, messages: list[dict], *, tuned: bool, max_new_tokens: int,
               refusal_floor: float = 0.0) -> Iterator[str | Generation]:
        import torch
        from transformers import LogitsProcessorList, StoppingCriteriaList, TextIteratorStreamer

        inputs = self._encode([messages])
        rules = LogitsProcessorList(self._refusal_rule(refusal_floor, inputs["input_ids"].shape[1]))
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        left = threading.Event()
        outcome: dict = {}

        def work() -> None:
            try:
                with self._lock, torch.inference_mode():
                    outcome["ids"] = self.model(tuned).generate(
                        **inputs, max_new_tokens=max_new_tokens, do_sample=False, top_p=None, top_k=None,
                        streamer=streamer, stopping_criteria=StoppingCriteriaList([_StopWhenSet(left)]),
                        logits_processor=rules)
            except Exception as err:  # handed to the consumer below, which raises it
                outcome["error"] = err
                streamer.end()

        start = time.perf_counter()
        first_token_s = None
        thread = threading.Thread(target=work, daemon=True, name="generate")
        thread.start()
        try:
            for piece in streamer:
                if piece:
                    first_token_s = first_token_s or time.perf_counter() - start
                    yield piece
        finally:
            # A consumer that stops early (a closed browser tab) must not keep the model busy.
            left.set()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        new_ids = outcome["ids"][0, inputs["input_ids"].shape[1]:]
        length = self._answer_length(new_ids)
        text = self.tokenizer.decode(new_ids[:length], skip_special_tokens=True).strip()
        yield Generation(text, length, first_token_s, time.perf_counter() - start)


class _RefuseWhenLikely:
    """At the answer's first token: start the refusal sentence when the model gives its first token at
    least `floor` probability, though it would pick something else greedily.

    A small reader that has seen few refusals rarely ranks one first, yet on questions its context cannot
    answer it gives the refusal more weight than on those it can (shipped corpus, dev half of the held-out
    set: AUC 0.79). Greedy decoding throws that signal away; a floor keeps it."""

    def __init__(self, token: int, floor: float, prompt_length: int):
        self.token, self.floor, self.prompt_length = token, floor, prompt_length

    def __call__(self, input_ids, scores):
        if input_ids.shape[1] != self.prompt_length:
            return scores
        likely = scores.float().softmax(-1)[:, self.token] >= self.floor
        scores[likely] = float("-inf")
        scores[likely, self.token] = 0.0
        return scores


class _StopWhenSet:
    """A stopping criterion that ends generation once the reader has gone away."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)


class RemoteGenerator:
    """Any OpenAI-compatible chat endpoint: vLLM, llama.cpp server, Ollama, or `assistant serve`.

    The server applies its own chat template to our messages; the adapter is a second model name.
    """

    def __init__(self, cfg: Config):
        from openai import OpenAI

        answer = cfg.answer
        if not answer.backend_url or not answer.backend_model:
            raise ConfigError("answer.backend=openai needs answer.backend_url and answer.backend_model "
                              "(e.g. ASSISTANT_ANSWER__BACKEND_URL=http://gpu:8000/v1 ASSISTANT_ANSWER__BACKEND_MODEL=google/gemma-3-270m-it)")
        self.client = OpenAI(base_url=answer.backend_url, api_key=os.environ.get("OPENAI_API_KEY", "unused"))
        self.models = {False: answer.backend_model, True: answer.backend_adapter_model}
        self.has_adapter = answer.backend_adapter_model is not None

    def _request(self, messages: list[dict], tuned: bool, max_new_tokens: int, stream: bool):
        return self.client.chat.completions.create(
            model=self.models[tuned], messages=messages, max_tokens=max_new_tokens, temperature=0.0,
            stop=[END_OF_TURN], stream=stream)

    def _generate_one(self, messages: list[dict], tuned: bool, max_new_tokens: int) -> Generation:
        start = time.perf_counter()
        reply = self._request(messages, tuned, max_new_tokens, stream=False)
        text = (reply.choices[0].message.content or "").strip()
        tokens = reply.usage.completion_tokens if reply.usage else len(text.split())
        return Generation(text, tokens, None, time.perf_counter() - start)

    def generate_batch(self, conversations: Sequence[list[dict]], *, tuned: bool,
                       max_new_tokens: int, refusal_floor: float = 0.0) -> list[Generation]:
        # (A server's first-token probabilities are not ours to floor: refusal_floor applies locally only.)
        # The server batches concurrent requests itself; we only have to send them together.
        with ThreadPoolExecutor(max_workers=max(1, min(16, len(conversations)))) as pool:
            return list(pool.map(lambda m: self._generate_one(m, tuned, max_new_tokens), conversations))

    def stream(self, messages: list[dict], *, tuned: bool, max_new_tokens: int,
               refusal_floor: float = 0.0) -> Iterator[str | Generation]:
        start = time.perf_counter()
        first_token_s, pieces = None, []
        for chunk in self._request(messages, tuned, max_new_tokens, stream=True):
            piece = chunk.choices[0].delta.content if chunk.choices else None
            if piece:
                first_token_s = first_token_s or time.perf_counter() - start
                pieces.append(piece)
                yield piece
        # Servers differ on streamed usage; one piece per token is what they send in practice.
        yield Generation("".join(pieces).strip(), len(pieces), first_token_s, time.perf_counter() - start)


if __name__ == "__main__":
    import sys

    from assistant.core.config import load_config
    from assistant.core.prompts import build_messages

    generator = open_generator(load_config(), adapter=None)
    for item in generator.stream(build_messages(" ".join(sys.argv[1:]) or "What is a purchase order?"),
                                 tuned=False, max_new_tokens=64):
        print(item if isinstance(item, str) else f"\n[{item.tokens} tokens in {item.seconds:.2f} s]",
              end="", flush=True)
    print()
