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
import queue
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from assistant.batching import DecodeLoop, Request
from assistant.core.config import Config, ConfigError
from assistant.core.prompts import END_OF_TURN, REFUSAL, build_messages


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
    return LocalGenerator(base, tokenizer, tuned, max_rows=cfg.answer.max_batch_rows,
                          vocabulary=decode_vocabulary(cfg, base, tokenizer))


# The tokenizer's first ids are its most frequent pieces (BPE merges in order): on the shipped training pairs,
# 99.65% of the tokens of answers given with context are among the first 16,384 or in the prompt.
CORE_TOKENS = 16384


def decode_vocabulary(cfg: Config, model, tokenizer) -> set[int] | None:
    """The shortlist a decode step scores (see assistant.batching): the core pieces and every token of the
    knowledge base, which an offline answer recalls without a prompt to copy from. None: the whole
    vocabulary (answer.decode_vocabulary = full, auto on a GPU, or a model whose output layer has a bias)."""
    setting = cfg.answer.decode_vocabulary
    head = model.get_output_embeddings()
    if setting == "full" or (setting == "auto" and model.device.type != "cpu") or getattr(head, "bias", None) is not None:
        return None
    if head.weight.shape[0] <= 2 * CORE_TOKENS:      # a small vocabulary gains little from a shortlist
        return None
    from indexing.store import IndexNotFound, load_chunks

    try:
        chunks = load_chunks(cfg)
    except IndexNotFound:       # nothing indexed yet: the core and the prompts
        chunks = []
    vocabulary = set(range(CORE_TOKENS))
    for start in range(0, len(chunks), 256):
        texts = [chunk.text for chunk in chunks[start:start + 256]]
        for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]:
            vocabulary.update(ids)
    return vocabulary


class LocalGenerator:
    """The base model, and the tuned one (base weights with the adapter merged in) when there is one.

    Every call goes through one `DecodeLoop`: concurrent requests share forward passes (a request
    joins the running batch at the next decode step) instead of queueing behind a lock.
    """

    def __init__(self, base, tokenizer, tuned=None, max_rows: int = 32, vocabulary: set[int] | None = None):
        self.base = base
        self.tuned = tuned
        self.tokenizer = tokenizer
        self.has_adapter = tuned is not None
        eos = base.generation_config.eos_token_id
        stop_ids = set(eos if isinstance(eos, list) else [eos])
        refusal_token = tokenizer(REFUSAL, add_special_tokens=False)["input_ids"][0]
        models = {False: base, True: tuned} if tuned is not None else {False: base}
        self.vocabulary = vocabulary
        self.loop = DecodeLoop(models, stop_ids, refusal_token, max_rows, vocabulary,
                               prefix_ids=self._shared_prefix())

    def model(self, tuned: bool):
        return self.tuned if tuned and self.tuned is not None else self.base

    def with_adapter(self, cfg: Config, adapter: Path) -> LocalGenerator:
        """A generator on the same base weights with `adapter` merged into the tuned copy; this one's
        loop ends once the requests it is serving have finished."""
        from assistant.core.models import load_tuned_model

        tuned = load_tuned_model(cfg, adapter, cfg.answer.dtype)[0].merge_and_unload()
        self.loop.close()
        return LocalGenerator(self.base, self.tokenizer, tuned, self.loop.max_rows, self.vocabulary)

    def _prompt_ids(self, messages: list[dict]) -> list[int]:
        # The template writes <bos> itself. One prompt per call, unpadded: the loop pads, and a fast
        # tokenizer whose padding settings change under concurrent calls fails ("Already borrowed").
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _shared_prefix(self) -> list[int]:
        """The tokens that a closed-book prompt and a prompt with context both start with."""
        return os.path.commonprefix([self._prompt_ids(build_messages("Who?", hits)) for hits in (None, [])])

    def _submit(self, messages: list[dict], tuned: bool, max_new_tokens: int, refusal_floor: float) -> Request:
        ids = self._prompt_ids(messages)
        return self.loop.submit(Request(ids, tuned and self.tuned is not None, max_new_tokens, refusal_floor))

    def _text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def generate_batch(self, conversations: Sequence[list[dict]], *, tuned: bool,
                       max_new_tokens: int, refusal_floor: float = 0.0) -> list[Generation]:
        start = time.perf_counter()
        requests = [self._submit(m, tuned, max_new_tokens, refusal_floor) for m in conversations]
        answers = [[token for run in _token_runs(request) for token in run] for request in requests]
        seconds = time.perf_counter() - start
        return [Generation(self._text(ids).strip(), len(ids), None, seconds) for ids in answers]

    def stream(self, messages: list[dict], *, tuned: bool, max_new_tokens: int,
               refusal_floor: float = 0.0) -> Iterator[str | Generation]:
        start = time.perf_counter()
        request = self._submit(messages, tuned, max_new_tokens, refusal_floor)
        first_token_s, ids, shown = None, [], ""
        try:
            for run in _token_runs(request):
                ids += run
                text = self._text(ids)
                # Hold back a piece that ends inside a character (a multi-token UTF-8 sequence).
                if text.startswith(shown) and len(text) > len(shown) and not text.endswith("\ufffd"):
                    first_token_s = first_token_s or time.perf_counter() - start
                    yield text[len(shown):]
                    shown = text
        finally:
            # A consumer that stops early (a closed browser tab) must not keep a row of the batch busy.
            request.cancel()
        text = self._text(ids)
        if text.startswith(shown) and len(text) > len(shown):
            first_token_s = first_token_s or time.perf_counter() - start
            yield text[len(shown):]
        yield Generation(text.strip(), len(ids), first_token_s, time.perf_counter() - start)


def _token_runs(request: Request) -> Iterator[list[int]]:
    """The request's token ids as the loop sends them, in runs: the next token and every one already sent
    after it. A reader that falls behind the loop (an app streaming twenty answers on two cores) catches
    up in one piece instead of paying its per-piece cost for each token. Raises the loop's error in the
    reader's thread."""
    run: list[int] = []
    item = request.tokens.get()
    while True:
        if item is None:
            if run:
                yield run
            return
        if isinstance(item, Exception):
            raise item
        run.append(item)
        try:
            item = request.tokens.get_nowait()
        except queue.Empty:
            yield run
            run, item = [], request.tokens.get()


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

    def with_adapter(self, cfg: Config, adapter: Path) -> RemoteGenerator:
        return self     # the server's adapter is a model name, not a folder here

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
