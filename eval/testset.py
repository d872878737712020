"""A generated test set, for a corpus that comes without evaluation questions.

    python -m eval.testset --corpus path/to/docs      # writes <workspace>/questions.generated.jsonl

Questions are drawn from the documents of the synthetic dataset's validation split, which holds out
phrasings, not documents: every document's facts are trained on (that is what tuning is for), and a
generated question asks for one in a form (a sentence with a blank) no training pair uses. RAGAS's
TestsetGenerator is tried first when an LLM is configured (`--judge-url`): it needs an
instruction-following model for its extractors and question writers, which a 270M model on a CPU
is not. Otherwise our own extractive generator writes them: the fact-bearing sentences of each
held-out chunk (a sum of money, a duration, a code, a mailbox, a name) become a question about that
sentence's section, with the figure as its key fact. The file is written once and kept with the
workspace, so later runs compare on the same questions; delete it to draw a new set.
"""
from __future__ import annotations

import json
import random
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from assistant.core.config import Config
from assistant.core.figures import find_span_matches
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import latest_artifact
from eval.questions import Question, QuestionsError, load_questions

GENERATED_NAME = "questions.generated.jsonl"
TARGET_QUESTIONS = 60
PER_CHUNK = 2

# The kinds of span asked about (assistant.core.figures reads them), most telling first, and the kind of
# question each makes. A number glued to a hyphen or a dot is part of a code or a version ("L1-2") and a
# lone digit is rarely the point of a sentence: neither is asked about.
ASKED_KINDS = {"email": "fact", "money": "numeric", "percent": "numeric", "duration": "numeric", "code": "fact",
               "time": "numeric", "name": "fact", "person": "fact", "number": "numeric"}
BLANK = "____"


@dataclass
class GeneratedSet:
    questions: list[Question]
    path: Path
    generator: str        # "ragas TestsetGenerator" | "extractive"
    why: str              # why this generator, shown in the report


def held_out_doc_ids(cfg: Config) -> set[str]:
    """Documents of the newest synthetic dataset's validation split (empty when there is none)."""
    dataset = latest_artifact(cfg.datasets_dir) if cfg.datasets_dir.exists() else None
    validation = dataset / "validation.jsonl" if dataset else None
    if validation is None or not validation.exists():
        return set()
    return {doc_id for _, record in read_jsonl(validation) if (doc_id := (record.get("meta") or {}).get("doc_id"))}


def _sentences(text: str) -> list[str]:
    text = text.replace("**", "").replace("`", "")     # link targets went at ingest (strip_link_targets)
    pieces = []
    for line in text.splitlines():
        line = line.strip().strip("|").strip()
        if not line or line.startswith("#") or re.fullmatch(r"[-:| ]+", line):
            continue
        line = re.sub(r"^(?:[-*+]|\d+[.)])\s+", "", line).replace(" | ", ", ")
        pieces += re.split(r"(?<=[.!?])\s+(?=[A-Z0-9])", line)
    return [p.strip() for p in pieces if len(p.split()) >= 5]


def question_from_sentence(sentence: str, title: str, heading: str) -> tuple[str, str, str] | None:
    """(question, key fact, kind) for a sentence with a salient span, else None.

    The question is the sentence with its most telling span blanked out, placed by document and section:
    plain to read, answerable from exactly one place, and unlike the templates the training pairs are
    written with, so the tuned paths are not asked in the words they were trained on."""
    where = f"the {title}" if not heading or heading == title else f'the "{heading}" section of the {title}'
    spans = find_span_matches(sentence)
    for asked, kind in ASKED_KINDS.items():
        # A span the heading already names ("New Jersey" in "New Jersey Medical Leave") gives itself away.
        match = next(((start, end, span) for start, end, found, span in spans if found == asked
                      and span.lower() not in where.lower() and (asked != "number" or _askable_number(sentence, start, end))),
                     None)
        if not match:
            continue
        start, end, fact = match
        if len(sentence.split()) - len(fact.split()) < 4:     # too little left around the blank to ask about
            return None
        cloze = f"{sentence[:start]}{BLANK}{sentence[end:]}".strip()
        return f'In {where}, what fills the blank: "{cloze}"', fact, kind
    return None


def _askable_number(sentence: str, start: int, end: int) -> bool:
    return (sentence[start:start + 2].isdigit() and sentence[start - 1:start] not in (".", "-", "$", "€", "£")
            and sentence[end:end + 1] != "-")


def extractive_questions(chunks, doc_ids: set[str], seed: int, target: int = TARGET_QUESTIONS) -> list[Question]:
    """Up to `target` questions, spread over the chunks of `doc_ids` (all chunks when empty)."""
    chosen = [c for c in chunks if not doc_ids or c.doc_id in doc_ids]
    candidates: list[list[Question]] = []
    for chunk in chosen:
        heading = chunk.section.split(" > ")[-1] if chunk.section else chunk.title
        found = []
        for sentence in _sentences(chunk.text):
            made = question_from_sentence(sentence, chunk.title, heading)
            if made:
                question, fact, kind = made
                found.append(Question(id="", question=question, reference=sentence, key_facts=(fact,),
                                      source_ids=(chunk.doc_id,), kind=kind))
        if found:
            candidates.append(found[:PER_CHUNK])
    random.Random(seed).shuffle(candidates)
    picked, seen = [], set()
    for rank in range(PER_CHUNK):            # one per chunk first, then a second, so documents share the set
        for found in candidates:
            if rank < len(found) and found[rank].question not in seen and len(picked) < target:
                seen.add(found[rank].question)
                picked.append(found[rank])
    return [Question(**{**q.__dict__, "id": f"gen-{n:03d}"}) for n, q in enumerate(picked, 1)]


def ragas_questions(cfg: Config, chunks, target: int) -> list[Question]:
    """RAGAS's TestsetGenerator with the configured OpenAI-compatible LLM; raises when it cannot run."""
    from eval.ragas_compat import ragas  # noqa: F401
    from langchain_openai import ChatOpenAI
    from ragas.embeddings import HuggingfaceEmbeddings
    from ragas.llms import LangchainLLMWrapper
    from ragas.testset import TestsetGenerator

    from indexing.embed import embedder_path

    llm = LangchainLLMWrapper(ChatOpenAI(base_url=cfg.eval.judge_url, model=cfg.eval.judge_model or "default",
                                         api_key="not-needed", temperature=0))
    generator = TestsetGenerator(llm=llm, embedding_model=HuggingfaceEmbeddings(model_name=embedder_path(cfg)))
    by_text = {c.text: c.doc_id for c in chunks}
    testset = generator.generate_with_chunks([c.text for c in chunks], testset_size=target)
    questions = []
    for n, sample in enumerate(testset.to_list(), 1):
        sources = tuple(sorted({by_text[t] for t in sample.get("reference_contexts") or [] if t in by_text}))
        questions.append(Question(id=f"gen-{n:03d}", question=sample["user_input"], reference=sample.get("reference"),
                                  key_facts=None, source_ids=sources or None, kind="generated"))
    return questions


def generated_questions(cfg: Config) -> GeneratedSet:
    """The workspace's generated set: read when it exists, otherwise generated and written once."""
    path = cfg.home / GENERATED_NAME
    if path.exists():
        first = read_jsonl(path, QuestionsError)[0][1]
        return GeneratedSet(load_questions(path), path, first.get("generator", "extractive"),
                            first.get("why", "kept from an earlier run"))
    from indexing.store import load_chunks

    chunks = load_chunks(cfg)
    doc_ids = held_out_doc_ids(cfg)
    scope = (f"from the {len(doc_ids)} documents with held-out phrasings" if doc_ids else
             "from all documents (no synthetic dataset yet, so none is held out)")
    chosen = [c for c in chunks if not doc_ids or c.doc_id in doc_ids]
    generator, why = "extractive", f"no LLM configured (--judge-url) for RAGAS's TestsetGenerator; {scope}"
    questions: list[Question] = []
    if cfg.eval.judge_url:
        try:
            questions, generator, why = ragas_questions(cfg, chosen, TARGET_QUESTIONS), "ragas TestsetGenerator", scope
        except Exception as err:  # an LLM that cannot follow RAGAS's prompts: fall back, and say so
            why = f"RAGAS's TestsetGenerator failed ({type(err).__name__}: {str(err)[:120]}); {scope}"
    if not questions:
        questions = extractive_questions(chunks, doc_ids, cfg.seed)
    if not questions:
        raise QuestionsError(f"{cfg.corpus}: no sentence with a figure, code or name to ask about; "
                         "pass --questions with your own JSONL of questions")
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.tmp")
    with open(scratch, "w", encoding="utf-8") as sink:
        for question in questions:
            sink.write(json.dumps({**question.to_dict(), "generator": generator, "why": why}) + "\n")
    scratch.replace(path)
    return GeneratedSet(questions, path, generator, why)


if __name__ == "__main__":
    import argparse

    from assistant.core.config import load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", type=Path)
    options = parser.parse_args()
    made = generated_questions(load_config(overrides={"corpus": str(options.corpus)} if options.corpus else None))
    print(f"{made.path}: {len(made.questions)} questions by {made.generator} ({made.why})", file=sys.stderr)
