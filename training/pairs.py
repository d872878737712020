"""Pairs: content points become fine-tuning records, all in one schema.

A record is `{"messages": [system, user, assistant], "meta": {...}}`: the messages come from
`assistant.core.prompts.build_messages`, the one prompt every answer path uses, so the tuned model sees
at train time exactly what it sees at answer time. Four types:
- qa: a question without context -> the point's short answer (recall from the weights);
- points_to_output: "write a <type> section covering these points" -> the original section text;
- raft: the question with the sentences retrieval picks for it, laid out as at answer time -> "[n] answer",
  citing the block that holds the point's sentence, then quoting it (the sentence is put in at a random
  place when retrieval missed it), or, when the context holds distractors only, the refusal sentence (the
  model must use retrieval and not trust it blindly);
- refusal: a question the knowledge base does not answer -> the refusal sentence, with and without context.
"""
from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from assistant.core.figures import stated_figures
from assistant.core.prompts import REFUSAL, build_messages
from assistant.core.records import Chunk, Hit
from training.content_points import ContentPoint

REFUSAL_VERSION = "refusal-templates-v2"
PAIRS_VERSION = "raft-fitted-v7"        # the layout of the pairs themselves; a change rebuilds the dataset
LAST_ROUND = 99                          # `meta.round` of pairs trained after every phrasing round


def pair_record(question: str, answer: str, hits: Sequence[Hit] | None, *, pair_type: str, chunk_ids: Sequence[str],
                doc_id: str | None, generator: str, prompt_version: str, extra: dict | None = None) -> dict:
    """`extra` meta: the content point and which of its phrasings (`round`) a qa or raft pair asks."""
    return {
        "messages": [*build_messages(question, hits), {"role": "assistant", "content": answer}],
        "meta": {"type": pair_type, "chunk_ids": list(chunk_ids), "doc_id": doc_id, "generator": generator,
                 "prompt_version": prompt_version, "question": question, "with_context": hits is not None,
                 **(extra or {})},
    }


def qa_pairs(point: ContentPoint, generator: str, prompt_version: str) -> list[dict]:
    return [pair_record(question, point.answer, None, pair_type="qa", chunk_ids=point.chunk_ids,
                        doc_id=point.doc_id, generator=generator, prompt_version=prompt_version,
                        extra={"point_id": point.id, "round": number})
            for number, question in enumerate(point.questions)]


def points_to_output_pair(chunk: Chunk, points: Sequence[ContentPoint], doc_type: str, generator: str,
                          prompt_version: str) -> dict | None:
    """'Write a policy section covering these points: ...' -> the section as the house wrote it."""
    facts = list(dict.fromkeys(point.text for point in points))
    if not facts:
        return None
    where = f"the \"{chunk.section}\" section of the {chunk.title}" if chunk.section else f"the {chunk.title}"
    request = f"Write {where} ({doc_type}) covering these points:\n" + "\n".join(f"- {fact}" for fact in facts)
    # Trained after every phrasing round: a section rewrite costs ~300 tokens and teaches the house style,
    # not a fact the questions ask for, so a budget that buys less than an epoch spends nothing on it.
    return pair_record(request, chunk.text.strip(), None, pair_type="points_to_output", chunk_ids=[chunk.id],
                       doc_id=chunk.doc_id, generator=generator, prompt_version=prompt_version,
                       extra={"round": LAST_ROUND})


def raft_pair(question: str, answer: str, point_text: str, oracle: Chunk, passages: Sequence[Hit], *,
              with_oracle: bool, rng: random.Random, generator: str, prompt_version: str,
              follow_ups: int = 0, fits: Callable[[str], bool] = lambda answer: True,
              extra: dict | None = None) -> dict | None:
    """The question with the context laid out as at answer time: the sentences retrieval picks for it
    (`Retriever.passages_many`), in numbered blocks.

    With the oracle: the point's sentence is in the context (put into a random block when retrieval
    missed it, so the gold is not always first), and the answer cites its block, then quotes it. Without:
    the sentence, and any other that states all of the answer's figures, is taken out, and the answer is
    the refusal sentence. The follow-up lines stop before one that would make the answer longer than the
    app generates (`fits` says whether it still fits).
    """
    figures = stated_figures(answer)

    def answers_it(unit: str) -> bool:
        return unit == point_text or bool(figures) and all(f in unit for f in figures)

    blocks = [(hit, hit.chunk.text.split("\n")) for hit in passages]
    if not with_oracle:
        kept = [(hit, [u for u in units if not answers_it(u)]) for hit, units in blocks]
        kept = [(hit, units) for hit, units in kept if units]
        if not kept:
            return None
        hits = [Hit(replace(hit.chunk, text="\n".join(units)), hit.score) for hit, units in kept]
        return pair_record(question, REFUSAL, hits, pair_type="raft", chunk_ids=[h.chunk.id for h in hits],
                           doc_id=oracle.doc_id, generator=generator, prompt_version=prompt_version, extra=extra)
    position = next((n for n, (_, units) in enumerate(blocks) if point_text in units), None)
    if position is None:
        position = rng.randint(0, min(len(blocks), 3))
        blocks.insert(position, (Hit(replace(oracle, text=point_text), 1.0), [point_text]))
    hits = [Hit(replace(hit.chunk, text="\n".join(units)), hit.score) for hit, units in blocks]
    # The citation comes first: a small model that ends with "[n]" learns "[n]" as the end and, early in
    # training, answers with the bare number; naming the block first, then copying from it, it does not.
    cited = f"[{position + 1}] {answer.strip()}"
    # Then the first `follow_ups` other lines of the context, where the sentences that best match a question sit
    # at answer time: a reader that only quotes one line states what that line holds and no more, and held-out
    # answers need a second sentence (multi-hop, procedures) about as often as retrieval ranks it second.
    others = [(n, unit) for n, (_, units) in enumerate(blocks) for unit in units if unit != point_text]
    # An answer longer than the app generates is cut mid-sentence at answer time (37% of the shipped corpus's
    # four-line answers ran past 128 tokens): the reader learns to stop after the last line that fits.
    last_block = position
    for block, unit in others[:follow_ups]:
        longer = cited + (f" {unit}" if block == last_block else f" [{block + 1}] {unit}")
        if not fits(longer):
            break
        cited, last_block = longer, block
    return pair_record(question, cited, hits, pair_type="raft", chunk_ids=[oracle.id, *(h.chunk.id for h in hits)],
                       doc_id=oracle.doc_id, generator=generator, prompt_version=prompt_version, extra=extra)


# --- Refusals: plausible workplace questions on topics the corpus does not cover -------------------

# Written without the held-out file: four earlier topics (tuition, pension match, phone plans, stock options)
# sat next to held-out unanswerable questions and were replaced, so refusals are learnt, not matched.
OUT_OF_SCOPE_TOPICS = (
    "parental leave", "the employee stock purchase plan", "remote work equipment stipends", "gym membership subsidies",
    "the office plant service", "sabbatical leave", "the cafeteria menu", "parking permits at headquarters",
    "laptop replacement cycles", "VPN access", "password resets", "the dress code", "performance review ratings",
    "promotion criteria", "the employee referral bonus", "the company library", "health insurance deductibles",
    "dental coverage", "the holiday party budget", "office relocation", "the sustainability report",
    "product warranty claims", "the customer loyalty programme", "software licence requests",
    "the whistleblower hotline for safety incidents", "jury duty leave", "bereavement leave", "the mentoring programme",
    "pet insurance", "bike-to-work schemes", "electric car charging at the office", "the annual shareholder meeting",
    "the volunteering day programme", "the company's share price", "the company choir", "visa sponsorship",
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
