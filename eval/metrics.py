"""Per-answer metrics: key facts and refusals (ours), and RAGAS's non-LLM and LLM-judged metrics.

    python -m eval.metrics "6 weeks" "The limit is a 6-week window."   # prints the key-fact match

Every metric is a small function that returns a float or raises `Missing(reason)` when it does
not apply (no reference, no retrieval in this path, no judge). `score_sample` turns both a
`Missing` and any error into a `null` value with its reason, so a metric that could not be
computed never reads as 0.
"""
from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from assistant.core.figures import contains_fact, fact_tokens
from assistant.core.prompts import REFUSAL
from eval.questions import Question
from eval.ragas_compat import ragas  # noqa: F401  (makes the ragas imports below work)
from ragas.dataset_schema import SingleTurnSample
# ragas 0.4.3 warns that these moved to ragas.metrics.collections, but no collections version exists yet.
from ragas.metrics import NonLLMContextPrecisionWithReference, NonLLMContextRecall
from ragas.metrics.collections import (AnswerRelevancy, FactualCorrectness, Faithfulness, RougeScore,
                                       SemanticSimilarity)

OFFLINE_METRICS = ("key_fact_accuracy", "refusal", "context_precision", "context_recall",
                   "rouge_l", "semantic_similarity")
JUDGED_METRICS = ("faithfulness", "answer_relevancy", "factual_correctness")


class Missing(Exception):
    """This metric does not apply to this answer; str() is the reason shown in the report."""


@dataclass
class Sample:
    """One answer to score: what was asked, by which path, what came back, what it was shown."""
    question: Question
    mode: str
    answer: str
    contexts: list[str] | None          # None: the path does not retrieve
    reference_contexts: list[str] = field(default_factory=list)   # the source documents' units stating a key fact


# --- key facts -----------------------------------------------------------------------------
def key_fact_accuracy(sample: Sample) -> float:
    """Share of the question's key facts found in the answer."""
    question = sample.question
    if question.unanswerable:
        raise Missing("unanswerable question: scored on refusal")
    if not question.key_facts:
        raise Missing("question has no key_facts")
    return sum(contains_fact(sample.answer, fact) for fact in question.key_facts) / len(question.key_facts)


# --- refusals ------------------------------------------------------------------------------
def _plain_words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("n't", " not").replace("'", "")))


_REFUSAL_PATTERNS = [re.compile(p) for p in (
    re.escape(_plain_words(REFUSAL)),
    r"\b(?:does|do|is|are) not (?:cover|covered|contain|include|mention|say|state|specify)",
    r"\bnot (?:covered|mentioned|specified|stated|included|available|found|provided)\b",
    r"\b(?:no|not enough|insufficient) information\b",
    r"\bi (?:do not|dont|cannot|can not|cant) (?:know|find|answer|say)\b",
    r"\b(?:cannot|can not|cant|unable to) (?:find|answer|determine|tell)\b",
    r"\bnot (?:in|part of) (?:the|my|our) (?:knowledge base|document|context|handbook)",
)]


def is_refusal(answer: str) -> bool:
    """The answer says the knowledge base does not cover the question (REFUSAL or a close variant)."""
    text = _plain_words(answer)
    return any(pattern.search(text) for pattern in _REFUSAL_PATTERNS)


def refusal(sample: Sample) -> float:
    """1 when an unanswerable question is declined, 0 when the path makes up an answer."""
    if not sample.question.unanswerable:
        raise Missing("answerable question")
    return float(is_refusal(sample.answer))


# --- RAGAS, no LLM -------------------------------------------------------------------------
def _needs_retrieval(sample: Sample) -> tuple[list[str], list[str]]:
    if sample.contexts is None:
        raise Missing(f"no retrieval in the {sample.mode} path")
    if sample.question.unanswerable:
        raise Missing("unanswerable question: no source documents")
    if not sample.question.source_ids:
        raise Missing("question has no source_ids")
    if not sample.reference_contexts:
        raise Missing(f"source documents {', '.join(sample.question.source_ids)} not found in the index")
    # compared unit with unit: a retrieved block is several lines, a reference one line
    retrieved = [line for block in sample.contexts for line in block.split("\n") if line.strip()]
    if not retrieved:
        return [""], sample.reference_contexts    # nothing retrieved: RAGAS scores it 0, as it should
    return retrieved, sample.reference_contexts


def context_precision(sample: Sample) -> float:
    retrieved, reference = _needs_retrieval(sample)
    ragas_sample = SingleTurnSample(retrieved_contexts=retrieved, reference_contexts=reference)
    return float(asyncio.run(NonLLMContextPrecisionWithReference().single_turn_ascore(ragas_sample)))


def context_recall(sample: Sample) -> float:
    retrieved, reference = _needs_retrieval(sample)
    ragas_sample = SingleTurnSample(retrieved_contexts=retrieved, reference_contexts=reference)
    return float(asyncio.run(NonLLMContextRecall().single_turn_ascore(ragas_sample)))


def _needs_reference(sample: Sample) -> str:
    if not sample.question.reference:
        raise Missing("question has no reference answer")
    return sample.question.reference


def rouge_l(sample: Sample) -> float:
    reference = _needs_reference(sample)
    return float(asyncio.run(RougeScore(rouge_type="rougeL").ascore(reference=reference, response=sample.answer)).value)


def semantic_similarity_with(embeddings) -> Callable[[Sample], float]:
    """Semantic similarity with our local embedder (eval.ragas_compat.LocalEmbeddings)."""
    metric = SemanticSimilarity(embeddings=embeddings)

    def semantic_similarity(sample: Sample) -> float:
        reference = _needs_reference(sample)
        return float(asyncio.run(metric.ascore(reference=reference, response=sample.answer)).value)

    return semantic_similarity


def missing_metric(name: str, reason: str) -> Callable[[Sample], float]:
    """A metric that cannot run at all here (no embedder, no judge): missing for every sample."""
    def unavailable(sample: Sample) -> float:
        raise Missing(reason)

    unavailable.__name__ = name
    return unavailable


# --- RAGAS, judged by an LLM ---------------------------------------------------------------
async def _judge_one(name: str, sample: Sample, metric, limit: asyncio.Semaphore) -> tuple[float | None, str | None]:
    question = sample.question.question
    try:
        if name == "faithfulness":
            if not sample.contexts:
                raise Missing(f"no retrieved context in the {sample.mode} path to be faithful to")
            call = metric.ascore(user_input=question, response=sample.answer, retrieved_contexts=sample.contexts)
        elif name == "answer_relevancy":
            call = metric.ascore(user_input=question, response=sample.answer)
        else:
            call = metric.ascore(response=sample.answer, reference=_needs_reference(sample))
        async with limit:
            result = await call
        if result.value is None:
            return None, f"judge gave no score: {result.reason or 'no reason given'}"
        return float(result.value), None
    except Missing as why:
        return None, str(why)
    except Exception as err:  # local judges fail often (bad JSON, timeouts): shown, never 0
        return None, f"judge failed: {type(err).__name__}: {str(err)[:200]}"


def score_judged(samples: Sequence[Sample], judge_url: str | None, judge_model: str | None,
                 embeddings, concurrency: int = 4) -> list[tuple[dict, dict]]:
    """Faithfulness, response relevancy and factual correctness by an OpenAI-compatible judge.

    All calls share one event loop (the async client's connections belong to it), a few at a time."""
    from openai import AsyncOpenAI
    from ragas.llms import llm_factory

    async def run_all() -> list[tuple[dict, dict]]:
        try:
            client = AsyncOpenAI(base_url=judge_url, api_key=os.environ.get("OPENAI_API_KEY", "not-needed"))
            llm = llm_factory(judge_model or "default", client=client)
            judges = {"faithfulness": Faithfulness(llm=llm),
                      "answer_relevancy": AnswerRelevancy(llm=llm, embeddings=embeddings),
                      "factual_correctness": FactualCorrectness(llm=llm)}
        except Exception as err:  # no judge at all: every judged value is missing, with this reason
            reason = f"judge unavailable: {type(err).__name__}: {str(err)[:200]}"
            return [({m: None for m in JUDGED_METRICS}, {m: reason for m in JUDGED_METRICS}) for _ in samples]
        limit = asyncio.Semaphore(concurrency)
        outcomes = iter(await asyncio.gather(*(_judge_one(name, sample, judges[name], limit)
                                               for sample in samples for name in JUDGED_METRICS)))
        await client.close()
        rows = []
        for _ in samples:
            pairs = {name: next(outcomes) for name in JUDGED_METRICS}
            rows.append(({n: v for n, (v, _) in pairs.items()}, {n: r for n, (_, r) in pairs.items() if r}))
        return rows

    return asyncio.run(run_all())


# --- scoring -------------------------------------------------------------------------------
def score_sample(sample: Sample, metrics: Sequence[Callable[[Sample], float]]) -> tuple[dict, dict]:
    """(values, reasons): each metric's value, or None with the reason it is missing."""
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for metric in metrics:
        name = metric.__name__
        try:
            values[name] = float(metric(sample))
        except Missing as why:
            values[name], reasons[name] = None, str(why)
        except Exception as err:  # a metric's failure must not sink the run; it is shown instead
            values[name], reasons[name] = None, f"failed: {type(err).__name__}: {str(err)[:200]}"
    return values, reasons


def offline_metrics(embeddings=None) -> list[Callable[[Sample], float]]:
    """The metrics that need no judge; semantic similarity only when an embedder is given."""
    similarity = (semantic_similarity_with(embeddings) if embeddings is not None
                  else missing_metric("semantic_similarity", "no embedding model loaded"))
    return [key_fact_accuracy, refusal, context_precision, context_recall, rouge_l, similarity]


if __name__ == "__main__":
    fact, answer = sys.argv[1], sys.argv[2]
    print(f"{fact_tokens(fact)} in {fact_tokens(answer)}: {contains_fact(answer, fact)}")
