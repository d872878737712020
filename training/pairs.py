"""Pairs: content points become fine-tuning records, all in one schema.

A record is `{"messages": [system, user, assistant], "meta": {...}}`: the messages come from
`assistant.prompts.build_messages`, the one prompt every answer path uses, so the tuned model sees
at train time exactly what it sees at answer time. Four types:
- qa: a question without context -> the point's short answer (recall from the weights);
- points_to_output: "write a <type> section covering these points" -> the original section text;
- raft: the question with retrieved context -> "[n] answer", citing the right block first, or, when the
  context holds distractors only, the refusal sentence (the model must use retrieval and not trust it blindly);
- refusal: a question the knowledge base does not answer -> the refusal sentence, with and without context.
"""
from __future__ import annotations

import random
import re
from collections.abc import Sequence

from assistant.prompts import REFUSAL, build_messages
from indexing.records import Chunk, Hit
from training.content_points import ContentPoint

REFUSAL_VERSION = "refusal-templates-v1"
PAIRS_VERSION = "raft-cites-first-v1"     # the layout of the pairs themselves; a change rebuilds the dataset


def pair_record(question: str, answer: str, hits: Sequence[Hit] | None, *, pair_type: str, chunk_ids: Sequence[str],
                doc_id: str | None, generator: str, prompt_version: str) -> dict:
    return {
        "messages": [*build_messages(question, hits), {"role": "assistant", "content": answer}],
        "meta": {"type": pair_type, "chunk_ids": list(chunk_ids), "doc_id": doc_id, "generator": generator,
                 "prompt_version": prompt_version, "question": question},
    }


def qa_pairs(point: ContentPoint, generator: str, prompt_version: str) -> list[dict]:
    return [pair_record(question, point.answer, None, pair_type="qa", chunk_ids=point.chunk_ids,
                        doc_id=point.doc_id, generator=generator, prompt_version=prompt_version)
            for question in point.questions]


def points_to_output_pair(chunk: Chunk, points: Sequence[ContentPoint], doc_type: str, generator: str,
                          prompt_version: str) -> dict | None:
    """'Write a policy section covering these points: ...' -> the section as the house wrote it."""
    facts = list(dict.fromkeys(point.text for point in points))
    if not facts:
        return None
    where = f"the \"{chunk.section}\" section of the {chunk.title}" if chunk.section else f"the {chunk.title}"
    request = f"Write {where} ({doc_type}) covering these points:\n" + "\n".join(f"- {fact}" for fact in facts)
    return pair_record(request, chunk.text.strip(), None, pair_type="points_to_output", chunk_ids=[chunk.id],
                       doc_id=chunk.doc_id, generator=generator, prompt_version=prompt_version)


def raft_pair(question: str, answer: str, oracle: Chunk, retrieved: Sequence[Hit], *, with_oracle: bool,
              distractors: int, rng: random.Random, generator: str, prompt_version: str) -> dict | None:
    """The question with a context laid out as at answer time.

    With the oracle: the right chunk at a random place among `distractors` retrieved ones, and the
    answer cites its block. Without: distractors only (none that holds the answer's figures), and
    the answer is the refusal sentence.
    """
    figures = answer_figures(answer)
    others = [hit for hit in retrieved if hit.chunk.id != oracle.id
              and not (figures and all(f in hit.chunk.text for f in figures))][:distractors]
    if not with_oracle:
        if not others:
            return None
        return pair_record(question, REFUSAL, others, pair_type="raft", chunk_ids=[h.chunk.id for h in others],
                           doc_id=oracle.doc_id, generator=generator, prompt_version=prompt_version)
    position = rng.randint(0, len(others))
    hits = others[:position] + [Hit(chunk=oracle, score=1.0)] + others[position:]
    # The citation comes first: a small model that ends with "[n]" learns "[n]" as the end and, early in
    # training, answers with the bare number; naming the block first, then copying from it, it does not.
    cited = f"[{position + 1}] {answer.strip()}"
    return pair_record(question, cited, hits, pair_type="raft", chunk_ids=[oracle.id, *(h.chunk.id for h in others)],
                       doc_id=oracle.doc_id, generator=generator, prompt_version=prompt_version)


def answer_figures(answer: str) -> list[str]:
    """The figures and codes an answer states; a chunk holding all of them would answer it too."""
    found = re.findall(r"[$€£]?\d[\d,.:%]*|\b[A-Z]{2,}[A-Z0-9]*-?\d[\w-]*\b|[\w.+-]+@[\w-]+(?:\.[\w-]+)+", answer)
    return [figure.rstrip(".,:") for figure in found]


# --- Refusals: plausible workplace questions on topics the corpus does not cover -------------------

OUT_OF_SCOPE_TOPICS = (
    "parental leave", "the employee stock purchase plan", "remote work equipment stipends", "gym membership subsidies",
    "the company pension match", "sabbatical leave", "the cafeteria menu", "parking permits at headquarters",
    "laptop replacement cycles", "VPN access", "password resets", "the dress code", "performance review ratings",
    "promotion criteria", "the employee referral bonus", "tuition reimbursement", "health insurance deductibles",
    "dental coverage", "the holiday party budget", "office relocation", "the sustainability report",
    "product warranty claims", "the customer loyalty programme", "software licence requests",
    "the whistleblower hotline for safety incidents", "jury duty leave", "bereavement leave", "the mentoring programme",
    "pet insurance", "bike-to-work schemes", "electric car charging at the office", "the annual shareholder meeting",
    "stock option vesting", "the company's share price", "mobile phone plans", "visa sponsorship",
    "the quality management certification", "factory safety shoes", "conference room booking", "the intranet redesign",
)
REFUSAL_TEMPLATES = (
    "What is our policy on {topic}?", "How do I apply for {topic}?", "Who do I contact about {topic}?",
    "How much does the company pay towards {topic}?", "What are the rules for {topic}?",
    "Is there a deadline for {topic}?", "Can you explain {topic}?", "Where can I find the form for {topic}?",
    "I have a question about {topic}. Who approves it?", "What changed this year in {topic}?",
)


def refusal_questions(chunks: Sequence[Chunk], count: int, rng: random.Random) -> list[str]:
    """`count` out-of-scope questions; topics the corpus mentions at all are left out, so a refusal
    never contradicts a document."""
    corpus_words = {w for chunk in chunks for w in re.findall(r"[a-z][a-z'-]*", chunk.text.lower())}
    topics = [t for t in OUT_OF_SCOPE_TOPICS
              if _topic_words(t) and not any(w in corpus_words for w in _topic_words(t))]
    combos = [(topic, template) for topic in topics for template in REFUSAL_TEMPLATES]
    rng.shuffle(combos)
    return [template.format(topic=topic) for topic, template in combos[:count]]


def _topic_words(topic: str) -> list[str]:
    """The distinctive words of a topic ('parental leave' -> ['parental']); generic ones are no evidence."""
    generic = {"the", "company", "company's", "employee", "office", "annual", "leave", "at", "for", "to", "of",
               "programme", "plan", "report", "requests", "access", "cycles", "criteria", "ratings", "claims",
               "budget", "bonus", "meeting", "price", "duty", "insurance", "coverage", "booking", "code"}
    return [w for w in topic.lower().split() if w not in generic]


def refusal_pair(question: str, hits: Sequence[Hit] | None) -> dict:
    return pair_record(question, REFUSAL, hits, pair_type="refusal", chunk_ids=[h.chunk.id for h in hits or ()],
                       doc_id=None, generator="templates", prompt_version=REFUSAL_VERSION)
