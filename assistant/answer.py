"""One answer function, four paths over the same prompt.

| mode    | model           | retrieval                        |
|---------|-----------------|----------------------------------|
| base    | base            | none                             |
| rag     | base            | top-k chunks in the prompt       |
| offline | base + adapter  | none (never opens the index)     |
| hybrid  | base + adapter  | top-k chunks in the prompt       |

The hot path is four steps: retrieve -> build prompt -> generate -> cite.

    python -m assistant.answer "How much does a household membership cost?" --mode hybrid
"""
from __future__ import annotations

import copy
import re
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from assistant.core.config import Config
from assistant.core.manifest import latest_artifact
from assistant.core.modes import Mode
from assistant.core.prompts import REFUSAL, build_messages
from assistant.core.records import Hit
from assistant.generate import Generation, open_generator
from indexing.ingest import strip_control_tokens


EMPTY_REPLY = "Please type a question about the documents in the knowledge base."
NO_ADAPTER_REPLY = (
    "No fine-tuned adapter exists yet, so the {mode} path has no tuned model to answer with. "
    "Make one with `assistant train` (after `assistant index` and `assistant synth`), or run the whole "
    "pipeline with `assistant run`. The base and rag paths work now.")
NO_INDEX_REPLY = "There is no knowledge base yet, so the {mode} path has nothing to retrieve. Build it with `assistant index`."

_CITATION = re.compile(r"\[(\d{1,2})\]")


@dataclass
class Answer:
    text: str
    mode: str
    hits: list[Hit] = field(default_factory=list)   # the numbered context blocks: hits[0] is [1]
    latency_s: float = 0.0
    tokens: int = 0
    first_token_s: float | None = None
    note: str | None = None                         # shown beside the answer, e.g. that the message was cut

    @property
    def cited(self) -> list[int]:
        """The context numbers the answer refers to, e.g. [1, 3]."""
        return sorted({n for n in map(int, _CITATION.findall(self.text)) if 1 <= n <= len(self.hits)})

    @property
    def tokens_per_s(self) -> float | None:
        return self.tokens / self.latency_s if self.tokens and self.latency_s else None

    def to_dict(self) -> dict:
        cited = set(self.cited)
        return {
            "answer": self.text,
            "mode": self.mode,
            "sources": [{"n": n, "id": h.chunk.id, "title": h.chunk.title, "section": h.chunk.section,
                         "source": h.chunk.source, "score": round(h.score, 4), "text": h.chunk.text,
                         "cited": n in cited}
                        for n, h in enumerate(self.hits, 1)],
            "latency_s": round(self.latency_s, 3),
            "tokens": self.tokens,
            "first_token_s": None if self.first_token_s is None else round(self.first_token_s, 3),
            "note": self.note,
        }


def check_mode(mode: str) -> Mode:
    if mode not in tuple(Mode):
        raise ValueError(f"unknown mode {mode!r}; pick one of {', '.join(Mode)} (--mode)")
    return Mode(mode)


def message_text(content) -> str:
    """Plain text of a chat message: a string, or a list of parts [{"type": "text", "text": ...}]."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text", ""))
    return "\n".join(message_text(part) for part in content or [] if not isinstance(part, dict)
                     or part.get("type", "text") == "text")


def clean_question(question: str, max_chars: int) -> tuple[str, str | None]:
    """The question as the model will read it, and a note for the user when it was cut."""
    question = (question or "").strip()
    if len(question) <= max_chars:
        return question, None
    return question[:max_chars], (f"Your message was {len(question):,} characters long; "
                                  f"only the first {max_chars:,} were read.")


def bounded_history(history: Sequence[dict], turns: int, max_chars: int) -> list[dict]:
    """The last `turns` question/answer pairs as plain-text user/assistant messages."""
    messages = [{"role": m["role"], "content": message_text(m.get("content"))[:max_chars]}
                for m in history if m.get("role") in ("user", "assistant")]
    messages = messages[-2 * turns:] if turns else []
    # Gemma's turns alternate and start with the user.
    while messages and messages[0]["role"] != "user":
        messages.pop(0)
    return messages


def prompt_messages(question: str, hits: list[Hit] | None, history: Sequence[dict]) -> list[dict]:
    """The project's one prompt, with control tokens defused in everything that is data (the question,
    the history; chunks lost theirs at ingest, but an index built before that may still hold some)."""
    messages = build_messages(question, hits, history)
    return [{**m, "content": strip_control_tokens(m["content"])} for m in messages]


def find_adapter(cfg: Config, adapter: Path | None) -> Path | None:
    """The adapter asked for, else the configured one, else the newest trained one, else None."""
    chosen = adapter or cfg.answer.adapter
    if chosen is not None:
        return Path(chosen)
    if cfg.answer.backend == "openai":
        return None
    return latest_artifact(cfg.adapters_dir) if cfg.adapters_dir.exists() else None


REFUSAL_FLOOR_FILE = "refusal_floor.json"   # written beside an adapter by eval.refusal_calibration


def calibrated(adapter: Path | None, key: str) -> float:
    """A refusal setting measured for this adapter (eval.refusal_calibration: "floor", "retrieval_gate"), 0 (off)
    if none was. Read at each answer, so a recalibration takes effect without a restart."""
    import json

    path = Path(adapter) / REFUSAL_FLOOR_FILE if adapter else None
    if path is None or not path.exists():
        return 0.0
    try:
        return float(json.loads(path.read_text(encoding="utf-8")).get(key, 0.0))
    except (ValueError, TypeError, AttributeError):
        return 0.0     # a damaged file is recomputed by the next `assistant eval`; answering goes on ungated


class NoIndexError(RuntimeError):
    """rag or hybrid was asked for before any index exists; str() is the reply to show."""


class Assistant:
    """Loads the generator once and answers on any path; the index is opened on first retrieval."""

    def __init__(self, cfg: Config, adapter: Path | None = None, tuned: bool = True):
        self.cfg = cfg
        self.adapter = find_adapter(cfg, adapter) if tuned else None
        self.generator = open_generator(cfg, self.adapter)
        self._retriever = None
        self._retriever_lock = threading.Lock()

    @property
    def has_adapter(self) -> bool:
        return self.generator.has_adapter

    def use_adapter(self, adapter: Path) -> None:
        """Answer the tuned paths with `adapter` from now on, without a restart (the app's Pipeline tab
        has just trained it); answers already streaming finish on the previous one."""
        self.generator = self.generator.with_adapter(self.cfg, adapter)
        self.adapter = adapter

    def with_config(self, cfg: Config) -> Assistant:
        """Another assistant on the same loaded model and open index, answering with `cfg`'s settings
        (a benchmark's batch size or answer length); this one is left as it is."""
        other = copy.copy(self)
        other.cfg = cfg
        return other

    @property
    def retriever(self):
        with self._retriever_lock:
            if self._retriever is None:
                from indexing.retrieve import open_retriever

                self._retriever = open_retriever(self.cfg)
            return self._retriever

    def reload_knowledge(self) -> None:
        """Forget the open index, so the next retrieval sees documents added since."""
        with self._retriever_lock:
            self._retriever = None

    def _canned_reply(self, question: str, mode: str) -> Answer | None:
        """The reply for a request the model cannot take, or None when it can."""
        if not question:
            return Answer(EMPTY_REPLY, mode)
        if mode.tuned and not self.has_adapter:
            return Answer(NO_ADAPTER_REPLY.format(mode=mode), mode)
        return None

    def refusal_floor(self, mode: str) -> float:
        """hybrid refuses when the refusal's first token gets at least this probability."""
        return self._refusal_setting(mode, "refusal_floor", "floor")

    def retrieval_gate(self, mode: str) -> float:
        """hybrid refuses without generating when its context's gate score is below this."""
        return self._refusal_setting(mode, "retrieval_gate", "retrieval_gate")

    def retrieval_gate_words(self) -> float:
        """The rare words' weight in the gate score: the one the gate was measured with (an older
        calibration, without it, measured the cosine alone), or the configured one beside a number."""
        if self.cfg.answer.retrieval_gate == "auto":
            return calibrated(self.adapter, "gate_word_weight")
        return self.cfg.answer.retrieval_gate_words

    def _refusal_setting(self, mode: str, setting: str, measured: str) -> float:
        # hybrid only: the tuned reader was taught to refuse from its context, and both were measured there
        if mode != "hybrid":
            return 0.0
        value = getattr(self.cfg.answer, setting)
        return calibrated(self.adapter, measured) if value == "auto" else float(value)

    def _gate_note(self, question: str, hits: list[Hit] | None, gate: float, words: float) -> str | None:
        """Why hybrid refuses before generating (retrieval found nothing close enough), or None to go on."""
        from indexing.retrieve import gate_score

        if hits is None or gate <= 0:
            return None
        score = gate_score(question, hits, self.retriever.idf, words)
        if score >= gate:
            return None
        return (f"Refused before generating: what retrieval found matches the question at {score:.2f} (its closest "
                f"sentence's similarity, plus its rare words found), under this adapter's retrieval gate of "
                f"{gate:.2f} (answer.retrieval_gate; 0 turns it off).")

    def _retrieve(self, questions: list[str], mode: str) -> list[list[Hit] | None]:
        if not mode.retrieves:
            return [None] * len(questions)
        from indexing.store import IndexNotFound

        try:
            return self.retriever.passages_many(questions)
        except IndexNotFound as err:
            raise NoIndexError(NO_INDEX_REPLY.format(mode=mode)) from err

    def stream(self, question: str, mode: str, history: Sequence[dict] = (), *,
               max_new_tokens: int | None = None) -> Iterator[str | Answer]:
        """Text pieces as they are generated, then the finished `Answer` (whose text is complete)."""
        start = time.perf_counter()
        mode = check_mode(mode)
        question, note = clean_question(question, self.cfg.answer.max_question_chars)
        canned = self._canned_reply(question, mode)
        if canned is not None:
            yield canned
            return
        # Step 1: retrieve (rag and hybrid only; the others never touch the index).
        try:
            hits = self._retrieve([question], mode)[0]
        except NoIndexError as err:
            yield Answer(str(err), mode, latency_s=time.perf_counter() - start)
            return
        gated = self._gate_note(question, hits, self.retrieval_gate(mode), self.retrieval_gate_words())
        if gated:
            yield Answer(REFUSAL, mode, hits or [], time.perf_counter() - start, 0, None,
                         " ".join(filter(None, [note, gated])))
            return
        # Step 2: build the one prompt.
        history = bounded_history(history, self.cfg.answer.history_turns, self.cfg.answer.max_question_chars)
        messages = prompt_messages(question, hits, history)
        # Step 3: generate, greedily, passing text pieces on as they come.
        first_token_s, generation = None, None
        for piece in self.generator.stream(messages, tuned=mode.tuned,
                                           max_new_tokens=max_new_tokens or self.cfg.answer.max_new_tokens,
                                           refusal_floor=self.refusal_floor(mode)):
            if isinstance(piece, Generation):
                generation = piece
            else:
                first_token_s = first_token_s or time.perf_counter() - start
                yield piece
        # Step 4: cite; the hits are the numbered blocks the answer's [n] refer to.
        yield Answer(generation.text, mode, hits or [], time.perf_counter() - start, generation.tokens,
                     first_token_s, note)

    def answer(self, question: str, mode: str, history: Sequence[dict] = (), *,
               max_new_tokens: int | None = None) -> Answer:
        for item in self.stream(question, mode, history, max_new_tokens=max_new_tokens):
            if isinstance(item, Answer):
                return item
        raise AssertionError("stream() always ends with an Answer")

    def answer_batch(self, questions: list[str], mode: str, max_new_tokens: int | None = None) -> list[Answer]:
        """Many single-turn questions on one path, generated `cfg.eval.batch_size` at a time (four times that
        on the paths without retrieval, whose prompts are short).

        Each answer's latency_s is its share of the batch's wall time (amortised), not a
        single-request latency: use `answer` to measure that.
        """
        mode = check_mode(mode)
        cleaned = [clean_question(q, self.cfg.answer.max_question_chars) for q in questions]
        answers: list[Answer | None] = [self._canned_reply(q, mode) for q, _ in cleaned]
        todo = [i for i, a in enumerate(answers) if a is None]
        if not todo:
            return answers
        # Step 1: retrieve every question in one call (one batch of query embeddings).
        start = time.perf_counter()
        try:
            hits = self._retrieve([cleaned[i][0] for i in todo], mode)
        except NoIndexError as err:
            return [a or Answer(str(err), mode) for a in answers]
        retrieve_share = (time.perf_counter() - start) / len(todo)
        gate, words = self.retrieval_gate(mode), self.retrieval_gate_words()    # read once for the batch
        for j, i in enumerate(todo):
            gated = self._gate_note(cleaned[i][0], hits[j], gate, words)
            if gated:
                answers[i] = Answer(REFUSAL, mode, hits[j] or [], retrieve_share, 0, None,
                                    " ".join(filter(None, [cleaned[i][1], gated])))
        # Step 2: prompts.
        prompts = [prompt_messages(cleaned[i][0], h, ()) for i, h in zip(todo, hits)]
        # Step 3: generate in batches of similar length, so little of each batch is padding.
        by_length = sorted((j for j, i in enumerate(todo) if answers[i] is None),
                           key=lambda j: sum(len(m["content"]) for m in prompts[j]))
        # Without context a prompt is ~60 tokens, so four times the batch fits the same work: 32 base answers
        # took 11.7 s in one batch against 27.0 s in batches of 8 here.
        size = self.cfg.eval.batch_size * (1 if mode.retrieves else 4)
        for group in (by_length[k:k + size] for k in range(0, len(by_length), size)):
            generations = self.generator.generate_batch(
                [prompts[j] for j in group], tuned=mode.tuned,
                max_new_tokens=max_new_tokens or self.cfg.answer.max_new_tokens,
                refusal_floor=self.refusal_floor(mode))
            # Step 4: cite.
            for j, generation in zip(group, generations):
                i = todo[j]
                answers[i] = Answer(generation.text, mode, hits[j] or [],
                                    retrieve_share + generation.seconds / len(group), generation.tokens,
                                    None, cleaned[i][1])
        return answers


if __name__ == "__main__":
    import argparse
    import json

    from assistant.core.config import load_config

    parser = argparse.ArgumentParser(description="Answer one question on one path.")
    parser.add_argument("question")
    parser.add_argument("--mode", choices=[m.value for m in Mode], default="hybrid")
    args = parser.parse_args()
    print(json.dumps(Assistant(load_config()).answer(args.question, args.mode).to_dict(), indent=2))
