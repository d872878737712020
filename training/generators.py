"""Generators: who writes the content points and their questions.

    python -m training.generators hf 3     # runs the hf generator on the first 3 chunks of the index and prints its points

One small interface, three implementations chosen by `synth.generator`:
- "extractive" needs no LLM: the key units of a chunk become points, and question templates in several
  styles (direct, employee, section-aware, keyword, and the source sentence turned into a question)
  give each point `synth.paraphrases` different phrasings. Works offline in seconds.
- "hf" prompts the base model (few-shot, batched greedy generation with left padding).
- "openai" sends the same prompt to any OpenAI-compatible endpoint (vLLM, Ollama, a hosted teacher).
An LLM output that cannot be parsed is skipped and counted, never fatal.
"""
from __future__ import annotations

import os
import random
import re
import sys
from pathlib import Path
from typing import Protocol

from assistant.core.config import Config, ConfigError
from assistant.core.jsonl import append_jsonl, read_jsonl
from assistant.core.manifest import sha256_json
from assistant.core.records import Chunk
from training.content_points import ContentPoint, KeyUnit, key_units, point_id, word_weights

EXTRACTIVE_VERSION = "extractive-templates-v3"
LLM_PROMPT_VERSION = "qa-lines-v1"


class Generator(Protocol):
    name: str            # "extractive" | "hf" | "openai"
    version: str         # the prompt or template set, recorded in every pair and the manifest
    fingerprint: str     # changes whenever the same chunk could get different points

    def content_points(self, chunks: list[Chunk]) -> list[tuple[list[ContentPoint], int]]:
        """For each chunk: its content points, and how many generations were malformed."""


def make_generator(cfg: Config, chunks: list[Chunk]) -> Generator:
    if cfg.synth.generator == "extractive":
        return ExtractiveGenerator(chunks, cfg.synth.paraphrases, cfg.seed)
    if cfg.synth.generator == "hf":
        return HFGenerator(cfg)
    if not cfg.synth.generator_url or not cfg.synth.generator_model:
        raise ConfigError("--generator openai needs --generator-url (e.g. http://localhost:8000/v1) "
                          "and --generator-model (the model name that endpoint serves)")
    return OpenAIGenerator(cfg)


# --- Extractive: key units + question templates --------------------------------------------------

# What a question asks for, by the kind of the fact's salient span.
ATTRIBUTE = {"money": "limit", "percent": "percentage", "duration": "time limit", "date": "date", "time": "time",
             "code": "code", "email": "email address", "phone": "phone number", "person": "contact", "name": "name",
             "number": "number", "rule": "rule", "value": "value"}
ECHO_WORDS = {"money": "how much", "percent": "what percentage", "date": "what day", "time": "what time",
              "code": "which code", "email": "which address", "phone": "which number", "person": "who", "name": "what",
              "number": "how many", "value": "what"}

# Question templates by family; a point's questions come from different families first.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "direct": ("What is the {attr} for {topic}?", "Can you tell me the {attr} for {topic}?",
               "What {attr} applies to {topic}?"),
    "employee": ("I need to sort out {topic}. What's the {attr}?", "Quick question about {topic}: what's the {attr}?",
                 "I'm dealing with {topic} - what {attr} do I need to know?"),
    "section": ("Under the {title}, what is the {attr} for {topic}?",
                "According to the {title}, what {attr} applies to {topic}?",
                "In the {title}, section {heading}, what is the {attr} for {topic}?"),
    "keyword": ("{topic} {attr}?", "{title}: {topic} {attr}?", "{heading} - {topic} {attr}?"),
}
KIND_TEMPLATES: dict[str, tuple[str, ...]] = {
    "money": ("How much can I spend on {topic}?", "How much is allowed for {topic}?",
              "What's the maximum for {topic} under the {title}?"),
    "duration": ("How long do I have for {topic}?", "What is the deadline for {topic}?",
                 "By when do I need to handle {topic}?"),
    "date": ("When is {topic}?", "On what date does {topic} happen?"),
    "time": ("At what time is {topic}?",),
    "code": ("Which code or form do I use for {topic}?", "What is the code for {topic} in the {title}?"),
    "person": ("Who is responsible for {topic}?", "Who handles {topic}?", "Who do I talk to about {topic}?"),
    "name": ("What is the name of the {topic}?", "Which one is used for {topic}?",
             "What does the {title} name for {topic}?"),
    "email": ("Where do I email about {topic}?", "What email address is used for {topic}?"),
    "phone": ("What number do I call for {topic}?",),
    "percent": ("What percentage applies to {topic}?", "What rate is used for {topic}?"),
    "number": ("How many are allowed for {topic}?", "What is the number for {topic} in the {title}?"),
    "rule": ("What is the rule on {topic}?", "What does the {title} say about {topic}?",
             "Is there a rule about {topic}?", "What do I need to know about {topic}?",
             "How does the {title} handle {topic}?"),
}
TABLE_TEMPLATES = ("What is the {attr} for {topic}?", "{heading}: what is the {attr} for {topic}?",
                   "Under the {title}, what is the {attr} for {topic}?", "What {attr} applies to {topic}?",
                   "{topic}: {heading_lc} {attr}?", "What are the {heading_lc} rules for {topic} - the {attr}?")
MONEY_TABLE_TEMPLATES = ("How much can I spend on {heading_lc} in {topic}?", "How much is the {attr} for {topic}?")


class ExtractiveGenerator:
    name = "extractive"
    version = EXTRACTIVE_VERSION

    def __init__(self, chunks: list[Chunk], paraphrases: int, seed: int):
        self.weights = word_weights(chunks)
        self.paraphrases = paraphrases
        self.seed = seed
        # Topics are picked by corpus-wide word rarity, so any chunk change may change every point.
        self.fingerprint = sha256_json([self.name, self.version, paraphrases, seed, sorted(c.id for c in chunks)])

    def content_points(self, chunks: list[Chunk]) -> list[tuple[list[ContentPoint], int]]:
        return [(self._points(chunk), 0) for chunk in chunks]

    def _points(self, chunk: Chunk) -> list[ContentPoint]:
        points = []
        for unit in key_units(chunk, self.weights):
            pid = point_id(chunk.id, f"{unit.kind}:{unit.value}:{unit.text}")
            rng = random.Random(f"{self.seed}:{pid}")
            questions = extractive_questions(unit, chunk.title, self.paraphrases, rng)
            if questions:
                points.append(ContentPoint(id=pid, doc_id=chunk.doc_id, chunk_ids=(chunk.id,), text=unit.text,
                                           answer=unit.text, questions=tuple(questions)))
        return points


def extractive_questions(unit: KeyUnit, title: str, count: int, rng: random.Random) -> list[str]:
    """`count` differently phrased questions about one key unit, one per template family first."""
    fields = {"topic": unit.topic, "attr": unit.attribute or ATTRIBUTE.get(unit.kind, "detail"), "title": title,
              "heading": unit.heading, "heading_lc": unit.heading[:1].lower() + unit.heading[1:]}
    if unit.attribute:   # a table row
        families = [list(TABLE_TEMPLATES) + (list(MONEY_TABLE_TEMPLATES) if unit.kind == "money" else [])]
    else:
        families = [list(KIND_TEMPLATES.get(unit.kind, ())), *(list(t) for t in TEMPLATES.values())]
        if unit.kind == "rule":
            families = families[:1] + [list(TEMPLATES["section"]), list(TEMPLATES["keyword"])]
    if unit.heading in ("", title):   # "the Hotels section of the Hotels" says nothing
        families = [[t for t in family if "{heading" not in t] for family in families]
    for family in families:
        rng.shuffle(family)
    rng.shuffle(families)
    echo = echo_question(unit)
    picked: list[str] = [echo] if echo else []
    while len(picked) < count and any(families):
        for family in families:
            if family and len(picked) < count:
                question = tidy_question(family.pop().format(**fields))
                if question.lower() not in {p.lower() for p in picked}:
                    picked.append(question)
    return picked


_YOU = re.compile(r"\b(you|your|yours|yourself)\b", re.I)
_AFTER_PREPOSITION = re.compile(r"\b(to|for|with|by|from|at|let|lets|gives|give|tell|tells|help|helps)\s+$", re.I)


def echo_question(unit: KeyUnit) -> str | None:
    """The source sentence turned into a question by putting a question word where the fact was:
    'Submit your report within 30 days' -> 'Submit my report within how many days?'."""
    if unit.kind not in ECHO_WORDS and unit.kind != "duration" or not unit.value or unit.attribute:
        return None
    sentence = unit.sentence.rstrip(".!;: ")
    if unit.value not in sentence or len(sentence.split()) > 30:
        return None
    if unit.kind == "duration":
        measure = re.sub(r"^[\d.]+[- ]", "", unit.value)
        wh = f"how many {measure if measure.endswith('s') else measure + 's'}"
    else:
        wh = ECHO_WORDS[unit.kind]
    before, _, after = sentence.partition(unit.value)
    before = re.sub(r"\b(the|a|an)\s+$", "", before, flags=re.I)   # not "The what approved ..."
    asked = f"{before}{wh}{after}"

    def first_person(match: re.Match) -> str:
        word = match.group(0).lower()
        if word == "you":
            word = "me" if _AFTER_PREPOSITION.search(asked[:match.start()]) else "I"
        else:
            word = {"your": "my", "yours": "mine", "yourself": "myself"}[word]
        return word
    return tidy_question(_YOU.sub(first_person, asked))


def tidy_question(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip(" -:")
    text = re.sub(r"\s+([?,.:])", r"\1", text).rstrip(".")
    text = text[:1].upper() + text[1:]
    return text if text.endswith("?") else text + "?"


# --- LLM generators: one few-shot prompt, parsed line by line --------------------------------------

LLM_SYSTEM = "You write training questions from company documents. Follow the format exactly."
LLM_INSTRUCTION = (
    "Passage from \"{where}\":\n{text}\n\n"
    "Write {n} questions an employee could ask that this passage answers. After each question write a short "
    "answer that copies the exact figure, code, name or deadline from the passage. Format:\n"
    "Q: <question>\nA: <answer>"
)
FEW_SHOT_PASSAGE = (
    "Library Rules > Borrowing",
    "Members may borrow up to 6 books at a time. Loans last 21 days. A late fee of $0.25 per day applies, "
    "and overdue notices are sent by circulation@library.example.",
)
FEW_SHOT_ANSWER = (
    "Q: How many books can I borrow at once?\nA: Members may borrow up to 6 books at a time.\n"
    "Q: How long can I keep a library book?\nA: Loans last 21 days.\n"
    "Q: What is the late fee for an overdue book?\nA: A late fee of $0.25 per day applies.\n"
    "Q: Who sends overdue notices?\nA: Overdue notices are sent by circulation@library.example."
)
_QA_LINES = re.compile(r"^\s*Q\s*\d*\s*[:.]\s*(?P<q>.+?)\s*\n\s*A\s*\d*\s*[:.]\s*(?P<a>.+?)\s*$", re.M)


def llm_messages(chunk: Chunk, count: int) -> list[dict]:
    where = f"{chunk.title} > {chunk.section}" if chunk.section else chunk.title
    return [
        {"role": "system", "content": LLM_SYSTEM},
        {"role": "user", "content": LLM_INSTRUCTION.format(where=FEW_SHOT_PASSAGE[0], text=FEW_SHOT_PASSAGE[1], n=4)},
        {"role": "assistant", "content": FEW_SHOT_ANSWER},
        {"role": "user", "content": LLM_INSTRUCTION.format(where=where, text=chunk.text.strip(), n=count)},
    ]


def parse_llm_points(chunk: Chunk, output: str) -> tuple[list[ContentPoint], int]:
    """Q/A pairs grouped by answer into points; an output with no usable pair counts as malformed."""
    by_answer: dict[str, list[str]] = {}
    for match in _QA_LINES.finditer(output):
        question, answer = match.group("q").strip(), match.group("a").strip()
        if question in FEW_SHOT_ANSWER or answer in FEW_SHOT_ANSWER:   # a small model echoing the example
            continue
        if question.endswith("?") and len(answer.split()) >= 2 and question not in by_answer.get(answer, []):
            by_answer.setdefault(answer, []).append(question)
    points = [ContentPoint(id=point_id(chunk.id, answer), doc_id=chunk.doc_id, chunk_ids=(chunk.id,), text=answer,
                           answer=answer, questions=tuple(questions)) for answer, questions in by_answer.items()]
    return points, 0 if points else 1


class HFGenerator:
    name = "hf"
    version = LLM_PROMPT_VERSION

    def __init__(self, cfg: Config):
        from assistant.core.models import load_base_model

        self.model, self.tokenizer = load_base_model(cfg)
        self.tokenizer.padding_side = "left"   # decoder-only batches grow to the right
        self.count = cfg.synth.paraphrases
        self.max_new_tokens = cfg.synth.max_new_tokens
        self.fingerprint = sha256_json([self.name, self.version, cfg.base_model, self.count, self.max_new_tokens])

    def content_points(self, chunks: list[Chunk]) -> list[tuple[list[ContentPoint], int]]:
        import torch

        prompts = [self.tokenizer.apply_chat_template(llm_messages(c, self.count), tokenize=False,
                                                      add_generation_prompt=True) for c in chunks]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = self.model.generate(**batch, max_new_tokens=self.max_new_tokens, do_sample=False)
        texts = self.tokenizer.batch_decode(output[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        return [parse_llm_points(chunk, text) for chunk, text in zip(chunks, texts)]


class OpenAIGenerator:
    name = "openai"
    version = LLM_PROMPT_VERSION

    def __init__(self, cfg: Config):
        from openai import OpenAI

        # Local servers (vLLM, Ollama) ignore the key, but the client insists on one.
        self.client = OpenAI(base_url=cfg.synth.generator_url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed"))
        self.model = cfg.synth.generator_model
        self.count = cfg.synth.paraphrases
        self.max_new_tokens = cfg.synth.max_new_tokens
        self.fingerprint = sha256_json([self.name, self.version, cfg.synth.generator_url, self.model, self.count,
                                        self.max_new_tokens])

    def content_points(self, chunks: list[Chunk]) -> list[tuple[list[ContentPoint], int]]:
        written = []
        for chunk in chunks:
            reply = self.client.chat.completions.create(model=self.model, messages=llm_messages(chunk, self.count),
                                                        temperature=0.0, max_tokens=self.max_new_tokens)
            written.append(parse_llm_points(chunk, reply.choices[0].message.content or ""))
        return written


# --- Running a generator over every chunk, resumably --------------------------------------------

def read_cache(path: Path) -> dict[str, dict]:
    """chunk id -> cached generator output; a half-written last line (a kill) is ignored."""
    if not path.exists():
        return {}
    return {record["chunk_id"]: record for _, record in read_jsonl(path, skip_broken=True)}


def write_content_points(chunks: list[Chunk], generator: Generator, cache: Path, *, batch_size: int = 8,
                         progress: bool = True) -> tuple[dict[str, list[ContentPoint]], int]:
    """Content points for every chunk (chunk id -> points) and the count of malformed generations.

    Each batch is appended to `cache` as soon as it is written, so a killed run redoes at most one
    batch, and an unchanged chunk is never sent to the generator twice.
    """
    from tqdm import tqdm

    cache.parent.mkdir(parents=True, exist_ok=True)
    done = read_cache(cache)
    todo = [chunk for chunk in chunks if chunk.id not in done]
    with tqdm(total=len(chunks), initial=len(chunks) - len(todo), desc=f"content points ({generator.name})",
              unit="chunk", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(todo), batch_size):
            batch = todo[start:start + batch_size]
            written = generator.content_points(batch)
            records = [{"chunk_id": chunk.id, "points": [p.to_dict() for p in points], "malformed": malformed}
                       for chunk, (points, malformed) in zip(batch, written)]
            append_jsonl(cache, records)
            done.update((r["chunk_id"], r) for r in records)
            bar.update(len(batch))
    by_chunk = {chunk.id: [ContentPoint.from_dict(p) for p in done[chunk.id]["points"]] for chunk in chunks}
    malformed = sum(int(done[chunk.id]["malformed"]) for chunk in chunks)
    return by_chunk, malformed


if __name__ == "__main__":
    from assistant.core.config import load_config
    from indexing.store import load_chunks

    config = load_config(overrides={"synth": {"generator": sys.argv[1] if len(sys.argv) > 1 else "extractive"}})
    stored = load_chunks(config)[: int(sys.argv[2]) if len(sys.argv) > 2 else 3]
    generator = make_generator(config, stored)
    for piece, (found, bad) in zip(stored, generator.content_points(stored)):
        print(f"--- {piece.title} > {piece.section}  ({len(found)} points, {bad} malformed)")
        for point in found:
            print(f"  A: {point.answer}\n" + "".join(f"     Q: {q}\n" for q in point.questions))
