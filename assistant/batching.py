"""Continuous batching for the local model: one generation loop serves every request at once.

Requests (chat sessions, API calls, an evaluation's batch) are queued; one background thread
admits them between decode steps, so a request that arrives while others are generating joins
the very next forward pass instead of waiting for them to finish. The requests that arrived since
the last step are prefilled (logits for the last position only) and their KV cache is then spliced into
the running batch, left-padded so that every row's newest token sits in the last column. Newcomers are
prefilled in groups of similar prompt length, shortest first, and at most `prefill_tokens` prompt tokens
between two decode steps: a 50-token closed-book prompt padded to a 600-token retrieval prompt was mostly
padding, and one prefill of twenty prompts held every running row (and every first token) for seconds.
Base and tuned requests run on different weights, so each model has its own running batch ("lane"); the
loop steps the lanes in turn. Tokens go to each request's queue as they are chosen, greedily. Every prompt
opens with the same 23 tokens (<bos>, the turn marker, the system line): each lane keeps their keys and values
and prefills only what follows.

A decode step may score a shortlist of the vocabulary instead of all of it (`vocabulary`): the
tokens every answer may need (the tokenizer's most frequent pieces, the knowledge base's words)
plus those of the prompts in the batch, which is what an answer that quotes its context is made
of. Gemma 3's output layer has 262k rows: on a 2-core AVX2 EPYC in fp32 it took 145 of a 274-ms
decode step at 16 rows, and a shortlist of ~25k rows takes ~15. The first token still comes from
the whole vocabulary, so the refusal floor's probability is exact.
"""
from __future__ import annotations

import atexit
import queue
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field



@dataclass(eq=False)       # compared by identity: two requests may ask the same
class Request:
    """One prompt on its way through the loop; `tokens` yields token ids, then None (or an exception)."""
    prompt_ids: list[int]
    tuned: bool
    max_new_tokens: int
    refusal_floor: float = 0.0
    tokens: queue.Queue = field(default_factory=queue.Queue)
    cancelled: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        """The reader has gone (a closed tab): the row leaves the batch at the next step."""
        self.cancelled.set()


@dataclass
class _Row:
    request: Request
    generated: int = 0


class _Lane:
    """One model's running batch: its rows, their shared KV cache and padding mask."""

    def __init__(self, model):
        self.model = model
        self.rows: list[_Row] = []
        self.cache = None          # DynamicCache, [rows, kv heads, columns, head dim] per layer
        self.mask = None           # [rows, columns] 1 where a column holds a real token of that row
        self.next_ids = None       # [rows] the token each row feeds into the next step
        self.vocab = None          # [ids] the tokens a decode step scores (sorted), or None: all of them
        self.head = None           # [len(vocab), hidden] those rows of the output layer
        self.prefix_kv = None      # [(keys, values)] per layer of the prompts' shared prefix, one row

    def use_vocabulary(self, vocab) -> None:
        """Score `vocab` (a sorted id tensor) from now on; its rows of the head are gathered at the next step."""
        if self.vocab is None or not (len(vocab) == len(self.vocab) and bool((vocab == self.vocab).all())):
            self.vocab, self.head = vocab, None

    def merge(self, other: _Lane) -> None:
        """Splice `other`'s rows in: the side with fewer columns is left-padded to the other's width."""
        import torch

        if not self.rows:
            self.rows, self.cache, self.mask, self.next_ids = other.rows, other.cache, other.mask, other.next_ids
            self.vocab, self.head = other.vocab, other.head
            return
        if other.vocab is not None and self.vocab is not None:
            self.use_vocabulary(torch.cat([self.vocab, other.vocab]).unique())
        columns = max(self.mask.shape[1], other.mask.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_pad_left(mine.keys, columns), _pad_left(theirs.keys, columns)])
            mine.values = torch.cat([_pad_left(mine.values, columns), _pad_left(theirs.values, columns)])
        self.mask = torch.cat([_pad_left(self.mask, columns), _pad_left(other.mask, columns)])
        self.next_ids = torch.cat([self.next_ids, other.next_ids])
        self.rows += other.rows

    def keep(self, kept: list[int]) -> None:
        """Drop the rows not in `kept`, then the columns that are padding in every row left."""
        import torch

        if not kept:
            self.rows, self.cache, self.mask, self.next_ids, self.vocab, self.head = [], None, None, None, None, None
            return
        # The shortlist keeps the prompt tokens of rows that left: harmless, and no regather of the head.
        index = torch.tensor(kept)
        self.rows = [self.rows[i] for i in kept]
        self.mask, self.next_ids = self.mask[index], self.next_ids[index]
        first = int(self.mask.any(0).nonzero()[0])
        self.mask = self.mask[:, first:]
        for layer in self.cache.layers:
            layer.keys, layer.values = layer.keys[index, :, first:], layer.values[index, :, first:]


def length_groups(requests: list[Request], padding: float = 0.15) -> list[list[Request]]:
    """The requests by prompt length, shortest first, cut into groups prefilled together: a request joins
    the group before it while left padding stays under `padding` of the group's prompt tokens."""
    groups: list[list[Request]] = []
    for request in sorted(requests, key=lambda r: len(r.prompt_ids)):
        width = len(request.prompt_ids)               # the longest so far: the group's width if it joins
        if groups and width * (len(groups[-1]) + 1) <= (1 + padding) * (sum(len(r.prompt_ids) for r in groups[-1]) + width):
            groups[-1].append(request)
        else:
            groups.append([request])
    return groups


def _pad_left(tensor, columns: int):
    """Zeros on the left of the sequence axis (dim 2 of a cache tensor, dim 1 of a mask) up to `columns`."""
    import torch

    axis = 2 if tensor.dim() == 4 else 1
    missing = columns - tensor.shape[axis]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[axis] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=axis)


_OPEN_LOOPS: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_loops(timeout_s: float = 10.0) -> None:
    """Let every decode thread return before the interpreter goes. A daemon thread still waiting in the loop
    when Python exits took the process down with it: `assistant ask` printed "terminate called without an
    active exception" after its answer and exited with status 134 (SIGABRT)."""
    for loop in list(_OPEN_LOOPS):
        loop.close()
        thread = loop._thread
        if thread is not None:
            thread.join(timeout_s)


class DecodeLoop:
    """The one thread that runs the models; `submit` from any thread, read the request's `tokens`."""

    def __init__(self, models: dict[bool, object], stop_ids: set[int], refusal_token: int, max_rows: int = 32,
                 vocabulary: set[int] | None = None, prefill_tokens: int = 2048, prefix_ids: Sequence[int] = ()):
        import torch

        self.lanes = {tuned: _Lane(model) for tuned, model in models.items()}
        self.max_rows = max_rows      # per lane (answer.max_batch_rows); later requests wait for a free row
        # Prompt tokens prefilled between two decode steps (at least one request): the running rows go on
        # generating while a crowd is admitted. A 2048-token prefill is well past the size where a CPU's
        # matmuls reach their speed, and about as long as a few decode steps.
        self.prefill_tokens = prefill_tokens
        # The shortlist every decode step scores, before the prompts' own tokens join it; None: the whole vocabulary.
        self.vocabulary = None if vocabulary is None else torch.tensor(sorted(vocabulary | stop_ids | {refusal_token}))
        self.stop_ids, self.refusal_token = stop_ids, refusal_token
        # The tokens every prompt starts with (<bos>, the turn marker, the system line): each lane computes their
        # keys and values once, and a prompt that starts with them is prefilled from the token after.
        self.prefix_ids = list(prefix_ids)
        self._waiting: list[Request] = []
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        _OPEN_LOOPS.add(self)

    def close(self) -> None:
        """End the thread once every request already submitted has finished (a new adapter replaces this loop)."""
        with self._wake:
            self._closing = True
            self._wake.notify()

    def submit(self, request: Request) -> Request:
        with self._wake:
            self._waiting.append(request)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, daemon=True, name="decode-loop")
                self._thread.start()
            self._wake.notify()
        return request

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
            while True:
                with self._wake:
                    while not self._waiting and not any(lane.rows for lane in self.lanes.values()):
                        if self._closing:
                            self._thread = None      # a late submit starts a new thread (under the lock)
                            return
                        self._wake.wait()
                    arrived = self._admissible()
                for tuned, lane in self.lanes.items():
                    for group in length_groups([request for request in arrived if request.tuned == tuned]):
                        self._guarded(lane, group, lambda: self._admit(lane, group))
                for lane in self.lanes.values():
                    if lane.rows:
                        self._guarded(lane, [row.request for row in lane.rows], lambda: self._step(lane))

    def _admissible(self) -> list[Request]:
        """Waiting requests that fit their lane and this turn's prefill (called holding the lock); the rest
        keep waiting, in order."""
        room = {tuned: self.max_rows - len(lane.rows) for tuned, lane in self.lanes.items()}
        admitted, still, tokens = [], [], 0
        for request in self._waiting:
            if room[request.tuned] > 0 and (not admitted or tokens + len(request.prompt_ids) <= self.prefill_tokens):
                room[request.tuned] -= 1
                tokens += len(request.prompt_ids)
                admitted.append(request)
            else:
                still.append(request)
        self._waiting = still
        return admitted

    def _guarded(self, lane: _Lane, requests: list[Request], work) -> None:
        """Run `work`; if the model fails, every request it touched gets the error and the lane is reset."""
        try:
            work()
        except Exception as err:  # handed to each reader, who raises it in its own thread
            for request in requests:
                request.tokens.put(err)
            lane.keep([i for i, row in enumerate(lane.rows) if row.request not in requests])

    def _choose(self, logits, requests: list[Request], first: bool):
        """Greedy next tokens [rows] from last-position logits [rows, vocab].

        At the first token, a request with a refusal floor starts the refusal sentence when the model
        gives its first token at least that probability, though it would pick something else greedily:
        a small reader that has seen few refusals rarely ranks one first, yet on questions its context
        cannot answer it gives the refusal more weight than on those it can (shipped corpus, dev half of
        the held-out set: AUC 0.79). Greedy decoding throws that signal away; a floor keeps it."""
        logits = logits.float()
        chosen = logits.argmax(-1)
        if first:
            for i, request in enumerate(requests):
                if request.refusal_floor and logits[i].softmax(-1)[self.refusal_token] >= request.refusal_floor:
                    chosen[i] = self.refusal_token
        return chosen

    def _emit(self, row: _Row, token: int) -> bool:
        """Pass one token on; True while the row goes on generating."""
        request = row.request
        if token in self.stop_ids or request.cancelled.is_set():
            request.tokens.put(None)
            return False
        request.tokens.put(token)
        row.generated += 1
        if row.generated >= request.max_new_tokens:
            request.tokens.put(None)
            return False
        return True

    def _admit(self, lane: _Lane, requests: list[Request]) -> None:
        """Prefill the newcomers together (left-padded, logits for the last position only), pass each its
        first token, and splice those that go on into the running batch."""
        import torch
        from transformers import DynamicCache

        shared = self._shared_prefix(lane, requests)
        skip = len(self.prefix_ids) if shared else 0
        tails = [r.prompt_ids[skip:] for r in requests]
        width = max(len(tail) for tail in tails)
        ids = torch.tensor([[0] * (width - len(tail)) + tail for tail in tails])                  # [new, width]
        mask = (torch.arange(width) >= width - torch.tensor([len(tail) for tail in tails])[:, None]).long()
        # A cache without the model's config keeps every column on every layer (no sliding-window
        # trimming), so rows of different lengths can be spliced together; the sliding-window layers
        # still see only their window, through the mask.
        group = _Lane(lane.model)
        group.cache = DynamicCache([(keys.expand(len(requests), -1, -1, -1), values.expand(len(requests), -1, -1, -1))
                                    for keys, values in shared] if shared else None)
        # The shared prefix, then each row's padding, then its own tokens: the positions skip the padding.
        group.mask, group.rows = torch.cat([mask.new_ones(len(requests), skip), mask], 1), [_Row(r) for r in requests]
        logits = lane.model(input_ids=ids, attention_mask=group.mask, position_ids=skip + (mask.cumsum(1) - 1).clamp(min=0),
                            cache=group.cache, use_cache=True, logits_to_keep=1).logits[:, -1]
        group.next_ids = self._choose(logits, requests, first=True)
        if self.vocabulary is not None:
            group.use_vocabulary(torch.cat([self.vocabulary, torch.tensor(self.prefix_ids, dtype=torch.long),
                                            ids.flatten()]).unique())
        kept = [i for i, row in enumerate(group.rows) if self._emit(row, int(group.next_ids[i]))]
        group.keep(kept)
        if group.rows:
            lane.merge(group)

    def _shared_prefix(self, lane: _Lane, requests: list[Request]) -> list | None:
        """The lane's keys and values of `prefix_ids` (computed on first use), when every request starts with
        them; None: prefill whole prompts. On a 2-core AVX2 EPYC in fp32 the 23 prefix tokens were two thirds
        of a closed-book prompt and 15% of twenty sessions' prompt tokens, and prefill runs at ~450 tokens/s.

        The padding between prefix and row widens the distance, in columns, between a row's tokens, and a
        sliding-window layer's window counts columns: the prefix is used only while a whole answer stays
        inside the window, where the window cuts nothing either way."""
        import torch
        from transformers import DynamicCache

        size = len(self.prefix_ids)
        if not size or any(len(r.prompt_ids) <= size or r.prompt_ids[:size] != self.prefix_ids for r in requests):
            return None
        window = getattr(lane.model.config, "sliding_window", None)
        if window and max(len(r.prompt_ids) for r in requests) + max(r.max_new_tokens for r in requests) > window:
            return None
        if lane.prefix_kv is None:
            cache = DynamicCache()
            lane.model(input_ids=torch.tensor([self.prefix_ids]), cache=cache, use_cache=True, logits_to_keep=1)
            lane.prefix_kv = [(layer.keys, layer.values) for layer in cache.layers]
        return lane.prefix_kv

    def _step(self, lane: _Lane) -> None:
        import torch

        live = [i for i, row in enumerate(lane.rows) if not row.request.cancelled.is_set()]
        for row in (row for i, row in enumerate(lane.rows) if i not in live):
            row.request.tokens.put(None)
        if len(live) < len(lane.rows):
            lane.keep(live)
            if not lane.rows:
                return
        # Each row's next position is the count of its real tokens so far (padding has none).
        positions = lane.mask.sum(1, keepdim=True)                                   # [rows, 1]
        mask = torch.cat([lane.mask, torch.ones_like(positions)], dim=1)             # [rows, columns + 1]
        inputs = dict(input_ids=lane.next_ids[:, None], attention_mask=mask, position_ids=positions,
                      cache=lane.cache, use_cache=True)
        if lane.vocab is None:
            logits = lane.model(**inputs, logits_to_keep=1).logits[:, -1]
        else:   # the decoder's last hidden state against the shortlist's rows of the output layer only
            hidden = lane.model.get_decoder()(**inputs).last_hidden_state[:, -1]
            if lane.head is None:
                lane.head = lane.model.get_output_embeddings().weight[lane.vocab]
            logits = hidden @ lane.head.T
        lane.mask = mask
        chosen = self._choose(logits, [row.request for row in lane.rows], first=False)
        lane.next_ids = chosen if lane.vocab is None else lane.vocab[chosen]
        kept = [i for i, row in enumerate(lane.rows) if self._emit(row, int(lane.next_ids[i]))]
        if len(kept) < len(lane.rows):
            lane.keep(kept)
