"""Content points: the few self-contained facts or instructions a knowledge-base section teaches.

    python -m training.content_points corpora/finance/docs/travel-booking.md   # prints the key units of one file

A content point is one fact as written in the source (a sentence, a list item, a table row put into
words), the short answer that teaches it, and several differently phrased questions it answers.
The generator that writes the questions, and the resumable loop that runs it over every chunk, live in
`training.generators`; this module holds the record and the extractive reading of a chunk (key units
and their salient spans).
"""
from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from assistant.core.figures import find_spans
from assistant.core.records import Chunk
from indexing.sentences import markdown_units, split_sentences


@dataclass(frozen=True)
class ContentPoint:
    id: str
    doc_id: str
    chunk_ids: tuple[str, ...]
    text: str                      # the fact as the source words it
    answer: str                    # what the assistant says; contains the fact's figures verbatim
    questions: tuple[str, ...]     # differently phrased questions the answer answers

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ContentPoint:
        return cls(id=data["id"], doc_id=data["doc_id"], chunk_ids=tuple(data["chunk_ids"]), text=data["text"],
                   answer=data["answer"], questions=tuple(data["questions"]))


def point_id(chunk_id: str, text: str) -> str:
    return hashlib.sha256(f"{chunk_id}\0{text}".encode()).hexdigest()[:16]


# --- Reading a chunk: key units and the spans that make them worth asking about -------------------

# Sentences without a figure still teach a rule when they say what must or must not happen.
RULE_WORDS = re.compile(r"\b(must|never|only|required|not reimbursed|may not|cannot|always|no longer|need[s]? )\b", re.I)


@dataclass(frozen=True)
class KeyUnit:
    """One fact-bearing unit of a chunk, with what a question about it would ask for."""
    text: str                 # cleaned, self-contained sentence(s)
    kind: str                 # the primary span's kind, or "rule"
    value: str                # the primary span ("" for rules)
    topic: str                # what the fact is about ("Stuttgart", "expense report")
    attribute: str = ""       # what is asked of the topic ("cap per night"); "" = by kind
    heading: str = ""         # the nearest heading above the unit
    sentence: str = ""        # the sentence that holds the value, for echo questions
    spans: tuple[tuple[str, str], ...] = field(default=())


STOPWORDS = frozenset("""a an the and or but if then than of for to in on at by with from into onto over under
within after before about as is are was were be been being it its this that these those there their they them
you your yours we our us i my me he she his her who whom which what when where how why all any each every no not
can may must should shall will would could do does did done has have had so such also only more most less least
up down out off per via just same other another one two three four five six seven eight nine ten first last
both either neither nor own very too again once here while during until because whether whatever even get gets
needs need use used using make makes made go goes call book get choose submit enter check pay send file keep
apply applies appear appears charges charged find follow take takes give gives see""".split())


def _content_runs(text: str) -> list[list[str]]:
    runs: list[list[str]] = [[]]
    # A word may open with digits ("37signals", "3M"): split there, it would read "signals".
    for token in re.findall(r"\d*[A-Za-z][A-Za-z0-9'&-]*|[^\sA-Za-z0-9]+|\d+", text):
        if re.match(r"\d*[A-Za-z]", token) and token.lower() not in STOPWORDS and len(token) > 2 and not token.endswith("ly"):
            runs[-1].append(token)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def salient_topic(sentence: str, spans: Iterable[tuple[str, str]], weight: dict[str, float]) -> str:
    """The best short run of content words, figures removed: 'expense report', 'late bookings'."""
    remainder = sentence
    for _, span in spans:
        remainder = remainder.replace(span, " , ")
    best, best_score = "", 0.0
    for run in _content_runs(remainder):
        for size in (3, 2, 1):
            for start in range(0, max(1, len(run) - size + 1)):
                window = run[start:start + size]
                score = sum(weight.get(w.lower(), 1.0) for w in window) * (1 + 0.15 * len(window))
                if score > best_score:
                    best, best_score = " ".join(window), score
    words = best.split()
    # "Book flights" opens a sentence: lower it; "Travel Desk" is a name: keep it.
    if words and words[0].istitle() and all(w.islower() for w in words[1:]):
        return best[:1].lower() + best[1:]
    return best


def key_units(chunk: Chunk, weight: dict[str, float]) -> list[KeyUnit]:
    """The units of a chunk worth asking about: those holding a figure, code, name or rule.

    A unit with figures of two different kinds (a contact line: name and e-mail) gives one key unit
    per kind, so each can be asked about.
    """
    found: list[KeyUnit] = []
    for heading, text, row in markdown_units(chunk):
        if len(text.split()) < 4:
            continue
        if row is not None:   # a table row: the row label is the topic, the first value column the attribute
            header, cells = row
            value = next((c for c in cells[1:] if c), "")
            spans = find_spans(value)
            found.append(KeyUnit(text=text, kind=spans[0][0] if spans else "value", value=value, heading=heading,
                                 topic=cells[0], attribute=(header[1] if len(header) > 1 else "").lower(),
                                 sentence=text, spans=tuple(find_spans(text))))
            continue
        spans = [s for s in find_spans(text) if not (s[0] == "number" and len(s[1]) == 4 and s[1].startswith("20"))]
        if not spans and not RULE_WORDS.search(text):
            continue
        primaries: list[tuple[str, str]] = []
        for kind, value in spans or [("rule", "")]:
            if kind not in {k for k, _ in primaries} and len(primaries) < 2:
                primaries.append((kind, value))
        for kind, value in primaries:
            sentence = next((s for s in split_sentences(text) if value and value in s), text)
            found.append(KeyUnit(text=text, kind=kind, value=value, sentence=sentence, spans=tuple(spans), heading=heading,
                                 topic=salient_topic(sentence, spans, weight) or heading))
    return found


def word_weights(chunks: Iterable[Chunk]) -> dict[str, float]:
    """Inverse document frequency over chunks: rare words make better topics than common ones."""
    import math

    counts: dict[str, int] = {}
    total = 0
    for chunk in chunks:
        total += 1
        for word in set(re.findall(r"[a-z][a-z'&-]+", chunk.text.lower())):
            counts[word] = counts.get(word, 0) + 1
    return {w: math.log((1 + total) / (1 + n)) + 1 for w, n in counts.items()}


if __name__ == "__main__":
    from indexing.chunk import chunk_document
    from indexing.embed import load_tokenize
    from indexing.ingest import read_document

    from assistant.core.config import load_config

    config = load_config()
    document = read_document(Path(sys.argv[1]), config.index.max_file_mb)
    pieces = chunk_document(document, chunk_size=config.index.chunk_size, chunk_overlap=config.index.chunk_overlap,
                            tokenize=load_tokenize(config))
    weights = word_weights(pieces)
    for piece in pieces:
        for unit in key_units(piece, weights):
            print(f"[{unit.kind}:{unit.value}] topic={unit.topic!r} attr={unit.attribute!r}\n    {unit.text}")
