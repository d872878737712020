"""The synthetic-dataset recipe: index -> content points -> pairs -> gates -> split -> card and exports.

    python -m training.dataset          # same as `assistant synth` (the index must exist)

Writes `<datasets_dir>/<id>/` atomically: train.jsonl, validation.jsonl, card.md, manifest.json, an
HF `datasets` folder (hf/, `datasets.load_from_disk`) and OpenAI fine-tuning JSONL (openai/). The id
is a hash of the inputs (index, held-out questions, synth and retrieval settings, prompt versions,
seed), so an unchanged re-run is skipped. Generator output is cached per chunk under
`<datasets_dir>/.partial/`, so a killed run resumes without redoing a generation, and a changed
document costs only its own chunks.
"""
from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from assistant.core.config import Config, ConfigError
from assistant.core.corrections import feedback_questions, training_corrections
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import atomic_folder, build_manifest, is_up_to_date, read_manifest, sha256_json, write_manifest
from assistant.core.prompts import PROMPT_VERSION
from assistant.core.records import Chunk
from indexing.ingest import UnreadableFile, split_front_matter
from training.content_points import ContentPoint
from training.gates import answer_of, apply_gates
from training.generators import EXTRACTIVE_VERSION, LLM_PROMPT_VERSION, Generator, make_generator, write_content_points
from training.pairs import (PAIRS_VERSION, REFUSAL_VERSION, pair_record, points_to_output_pair, qa_pairs, raft_pair,
                            refusal_pair, refusal_questions)
from training.split import split_by_phrasing

PAIR_TYPES = ("qa", "points_to_output", "raft", "refusal", "feedback")
GATES = ("malformed", "format", "ungrounded", "duplicate", "near_duplicate", "leakage")


@dataclass
class DatasetReport:
    dataset: Path
    train: int
    validation: int
    by_type: dict[str, int]
    rejected: dict[str, int]
    up_to_date: bool = False
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": str(self.dataset), "train": self.train, "validation": self.validation,
                "by_type": self.by_type, "rejected": self.rejected}


def build_dataset(cfg: Config, progress: bool = True) -> DatasetReport:
    """Build (or find up to date) the fine-tuning set for the configured index."""
    from indexing.retrieve import open_retriever
    from indexing.store import index_fingerprint, load_chunks

    started = time.perf_counter()
    # Step 1: inputs -> dataset id; an unchanged set is not rebuilt.
    chunks = load_chunks(cfg)
    if not chunks:
        raise ConfigError(f"the index at {cfg.kb_dir} holds no chunks; run `assistant index` on a corpus with documents")
    held_out = read_held_out_questions([cfg.questions_path, cfg.general_questions_path])
    corrected = training_corrections(cfg)
    if cfg.synth.feedback_fraction > 0:
        # The corrections left to evaluate with are held out like any evaluation question.
        held_out = sorted({*held_out, *(q["question"] for q in feedback_questions(cfg))})
    inputs = {
        "index": index_fingerprint(cfg),
        "held_out_questions": sha256_json(held_out),
        "synth_config": sha256_json(cfg.synth.model_dump(mode="json")),
        "retrieve_config": sha256_json(cfg.retrieve.model_dump(mode="json")),
        "prompts": sha256_json(prompt_versions()),
        # the base model's tokenizer measures the RAFT answers against the answer length (answer.max_new_tokens)
        "models": sha256_json([cfg.embed_model, cfg.base_model, cfg.answer.max_new_tokens]),
        "seed": str(cfg.seed),
        **({"feedback": sha256_json(corrected)} if corrected else {}),
    }
    folder = cfg.datasets_dir / sha256_json(inputs)[:12]
    if is_up_to_date(folder, inputs):
        # "The newest dataset" (what `assistant train` picks) is the one synth last built or found: after a
        # tune has built one per data mix, synth with the configured settings makes theirs the newest again.
        os.utime(folder / "manifest.json")
        return report_from_manifest(folder)

    # Step 2: content points, per chunk, cached so a killed run resumes.
    generator = make_generator(cfg, chunks)
    cache = cfg.datasets_dir / ".partial" / f"points-{generator.name}-{generator.fingerprint[:16]}.jsonl"
    points, malformed = write_content_points(chunks, generator, cache, batch_size=cfg.synth.batch_size,
                                             progress=progress)
    stage_seconds = {"content_points": round(time.perf_counter() - started, 1)}

    # Step 3: the pair types, and the corrections the app collected.
    retriever = open_retriever(cfg)
    records = build_pairs(cfg, chunks, points, generator, retriever, progress)
    records += feedback_pairs(corrected, retriever)
    stage_seconds["pairs"] = round(time.perf_counter() - started - sum(stage_seconds.values()), 1)

    # Step 4: quality gates.
    sources = {c.id: f"{c.title}\n{c.section}\n{c.text}" for c in chunks}
    kept, rejected = apply_gates(records, sources, held_out, lambda texts: _embed(cfg, retriever, texts),
                                 near_duplicate_threshold=cfg.synth.near_duplicate_threshold,
                                 leakage_threshold=cfg.synth.leakage_threshold,
                                 max_answer_words=cfg.synth.max_answer_words)
    rejected["malformed"] = malformed
    stage_seconds["gates"] = round(time.perf_counter() - started - sum(stage_seconds.values()), 1)

    # Step 5: split by phrasing (every document's facts reach training), then write it all in one atomic folder.
    train, validation = split_by_phrasing(kept, cfg.synth.validation_fraction, cfg.seed)
    report = DatasetReport(dataset=folder, train=len(train), validation=len(validation),
                           by_type={t: sum(r["meta"]["type"] == t for r in kept) for t in PAIR_TYPES},
                           rejected={gate: int(rejected.get(gate, 0)) for gate in GATES},
                           extra={"chunks": len(chunks), "content_points": sum(len(p) for p in points.values()),
                                  "candidates": len(records), "generator": generator.name,
                                  "stage_seconds": stage_seconds,
                                  "exposures": exposures_per_point(train), "question_checks": question_checks(train),
                                  "documents": {"train": _documents(train), "validation": _documents(validation)}})
    report.seconds = round(time.perf_counter() - started, 1)
    manifest = build_manifest("dataset", inputs=inputs, seed=cfg.seed,
                              config={"synth": cfg.synth.model_dump(mode="json"),
                                      "retrieve": cfg.retrieve.model_dump(mode="json"),
                                      "embed_model": cfg.embed_model, "base_model": cfg.base_model,
                                      "answer_max_new_tokens": cfg.answer.max_new_tokens},
                              metrics={**report.to_dict(), **report.extra, "seconds": report.seconds},
                              extra={"prompt_versions": prompt_versions(), "index_fingerprint": inputs["index"],
                                     "held_out_questions": len(held_out)})
    write_dataset(folder, train, validation, report, manifest)
    return report


def answer_fits(cfg: Config) -> Callable[[str], bool]:
    """Whether an answer fits the tokens the app generates (`answer.max_new_tokens`, the end-of-turn token
    included), counted by the base model's tokenizer."""
    from assistant.core.models import MissingModelError, load_tokenizer

    try:
        tokenizer = load_tokenizer(cfg)
    except MissingModelError as err:      # a dataset made for a hosted fine-tune needs no local model
        print(f"RAFT answers are not fitted to answer.max_new_tokens: {err}", file=sys.stderr)
        return lambda answer: True
    limit = cfg.answer.max_new_tokens - 1
    return lambda answer: len(tokenizer(answer, add_special_tokens=False)["input_ids"]) <= limit


def exposures_per_point(records: list[dict]) -> dict[str, int]:
    """How many training pairs teach each content point ({"1": points taught by one pair, ...}): recall
    from the weights needs several varied exposures of a fact (Allen-Zhu & Li 2309.14316; Mecklenburg et
    al. 2404.00213), and one epoch gives exactly these counts."""
    from collections import Counter

    per_point = Counter(r["meta"]["point_id"] for r in records if "point_id" in r["meta"])
    return {str(k): v for k, v in sorted(Counter(per_point.values()).items())}


_QUESTION_START = re.compile(r"^(what|who|whom|whose|which|when|where|why|how|is|are|was|can|could|do|does|did|"
                             r"should|must|may|will|would|i|i'm|my|under|according|in|quick|on|by)\b", re.I)


def question_checks(records: list[dict]) -> dict[str, float]:
    """Cheap naturalness checks over the training questions, as shares: they flag a generator whose
    questions are keyword soup ("37signals policies rule?") rather than what a person would ask."""
    questions = sorted({r["meta"]["question"] for r in records if r["meta"]["type"] in ("qa", "raft")})
    if not questions:
        return {}
    words = [q.split() for q in questions]
    share = lambda hits: round(sum(hits) / len(questions), 3)
    return {"questions": len(questions),
            "opens_like_a_question": share(bool(_QUESTION_START.match(q)) for q in questions),
            "5_to_30_words": share(5 <= len(w) <= 30 for w in words),
            "no_repeated_word": share(not any(a.lower() == b.lower() for a, b in zip(w, w[1:])) for w in words),
            "has_a_verb_or_question_word": share(bool(re.search(
                r"\b(is|are|do|does|can|need|applies|apply|say|handle|use|used|spend|call|talk|contact|who|what|how)\b",
                q, re.I)) for q in questions)}


def write_dataset(folder: Path, train: list[dict], validation: list[dict], report: DatasetReport,
                  manifest: dict) -> None:
    """Pairs, exports, card and manifest, all appearing at once (or not at all)."""
    with atomic_folder(folder) as scratch:
        write_jsonl(scratch / "train.jsonl", train)
        write_jsonl(scratch / "validation.jsonl", validation)
        export_hf(scratch / "hf", train, validation)
        export_openai(scratch / "openai", train, validation)
        (scratch / "card.md").write_text(render_card(report, manifest, train or validation), encoding="utf-8")
        write_manifest(scratch, manifest)


def prompt_versions() -> dict[str, str]:
    return {"answer": PROMPT_VERSION, "extractive": EXTRACTIVE_VERSION, "llm": LLM_PROMPT_VERSION,
            "refusal": REFUSAL_VERSION, "pairs": PAIRS_VERSION}


def build_pairs(cfg: Config, chunks: list[Chunk], points: dict[str, list[ContentPoint]], generator: Generator,
                retriever, progress: bool) -> list[dict]:
    """qa and points_to_output for every chunk, raft for a seeded share of the questions, then refusals."""
    by_id = {chunk.id: chunk for chunk in chunks}
    records: list[dict] = []
    for chunk in chunks:
        for point in points[chunk.id]:
            records.extend(qa_pairs(point, generator.name, generator.version))
        golden = points_to_output_pair(chunk, points[chunk.id], document_type(chunk.source), generator.name,
                                       generator.version)
        records.extend([golden] if golden else [])

    # RAFT: the question's context built exactly as at answer time (the best sentences of the top chunks).
    # Each question draws from its own seeded generator: one context that comes out differently (another
    # document added, a changed chunk) changes that pair only, not every draw after it.
    asked = [(q, p, n, question_rng(cfg.seed, q))
             for c in chunks for p in points[c.id] for n, q in enumerate(p.questions)]
    asked = [(q, p, n, rng) for q, p, n, rng in asked if rng.random() < cfg.synth.raft_fraction]
    retrieved = _search(retriever, [q for q, _, _, _ in asked], "raft contexts", progress)
    fits = answer_fits(cfg) if asked else None
    for (question, point, number, rng), passages in zip(asked, retrieved):
        pair = raft_pair(question, point.answer, point.text, by_id[point.chunk_ids[0]], passages,
                         with_oracle=rng.random() < cfg.synth.raft_oracle_fraction, rng=rng,
                         generator=generator.name, prompt_version=generator.version,
                         follow_ups=cfg.synth.raft_follow_ups, fits=fits,
                         extra={"point_id": point.id, "round": number})
        records.extend([pair] if pair else [])

    # Refusals: alone, and again with whatever retrieval finds for them (RAFT negatives).
    questions = refusal_questions(chunks, cfg.synth.refusals, random.Random(cfg.seed))
    for question, hits in zip(questions, _search(retriever, questions, "refusals", progress)):
        records.append(refusal_pair(question, None))
        records.append(refusal_pair(question, hits))
    return records


def question_rng(seed: int, question: str) -> random.Random:
    """The same draws for the same question and seed, in any process (a str seed is hashed with SHA-512)."""
    return random.Random(f"{seed}\0{question}")


def feedback_pairs(corrected: dict[str, str], retriever) -> list[dict]:
    """Each correction from the app, asked without context and with what retrieval finds for it, answered
    with the correction: a team's corrections reach both tuned paths, in the first phrasing round."""
    questions = sorted(corrected)
    records = []
    for question, hits in zip(questions, retriever.passages_many(questions) if questions else []):
        for context in (None, hits):
            records.append(pair_record(question, corrected[question].strip(), context, pair_type="feedback",
                                       chunk_ids=[h.chunk.id for h in context or ()], doc_id=None,
                                       generator="feedback", prompt_version="feedback-v1"))
    return records


def _search(retriever, queries: list[str], what: str, progress: bool, batch: int = 256) -> list[list]:
    from tqdm import tqdm

    found: list[list] = []
    with tqdm(total=len(queries), desc=what, unit="q", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(queries), batch):
            found.extend(retriever.passages_many(queries[start:start + batch]))
            bar.update(len(queries[start:start + batch]))
    return found


def _embed(cfg: Config, retriever, texts: list[str]):
    from indexing.embed import embed_texts

    return embed_texts(retriever.embedder, texts, bf16=cfg.index.embed_bf16)


@lru_cache(maxsize=None)
def document_type(source: str) -> str:
    """The `type` from a Markdown file's front matter ("policy", "procedure"), else "document"."""
    try:
        front, _ = split_front_matter(Path(source).read_text(encoding="utf-8", errors="replace"))
    except (OSError, UnreadableFile):
        return "document"
    return str(front.get("type") or "document")


def read_held_out_questions(paths: list[Path | None]) -> list[str]:
    """Every held-out question the evaluation will ask; none may leak into training."""
    questions: list[str] = []
    for path in paths:
        if path is None or not Path(path).exists():
            continue
        for number, record in read_jsonl(Path(path), ConfigError):
            try:
                questions.append(str(record["question"]))
            except (KeyError, TypeError) as err:
                raise ConfigError(f"{path}:{number}: not a held-out question ({err}); each line must be a JSON "
                                  "object with a \"question\" field") from err
    return sorted(set(questions))


def _documents(records: list[dict]) -> list[str]:
    return sorted({r["meta"]["doc_id"] for r in records if r["meta"]["doc_id"]})


def write_jsonl(path: Path, records: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def export_hf(folder: Path, train: list[dict], validation: list[dict]) -> None:
    from datasets import Dataset, DatasetDict

    train_set = Dataset.from_list(train)
    # An empty split still needs the columns, or the DatasetDict would not load as one schema.
    validation_set = Dataset.from_list(validation, features=train_set.features) if train else Dataset.from_list(validation)
    DatasetDict({"train": train_set, "validation": validation_set}).save_to_disk(str(folder))


def export_openai(folder: Path, train: list[dict], validation: list[dict]) -> None:
    """OpenAI's fine-tuning format: one {"messages": [...]} per line, nothing else."""
    for name, records in (("train", train), ("validation", validation)):
        write_jsonl(folder / f"{name}.jsonl", [{"messages": r["messages"]} for r in records])


def render_card(report: DatasetReport, manifest: dict, examples: list[dict]) -> str:
    lines = [f"# Dataset card: {report.dataset.name}", "",
             f"Synthetic fine-tuning pairs built by `{manifest['command'] or 'assistant synth'}` on {manifest['created']}.",
             f"{report.train} training and {report.validation} validation pairs from {report.extra['chunks']} chunks "
             f"and {report.extra['content_points']} content points; generator `{report.extra['generator']}`.", "",
             "## Pairs by type", "", "| type | pairs |", "|---|---|"]
    lines += [f"| {t} | {n} |" for t, n in report.by_type.items()]
    exposures = report.extra.get("exposures", {})
    if exposures:
        lines += ["", "## Exposures per content point (one epoch)", "",
                  "Training pairs (closed-book questions and RAFT contexts) that teach each fact. A time budget that "
                  "buys less than an epoch trains every fact's first phrasing before any second one.", "",
                  "| pairs per point | points |", "|---|---|"] + [f"| {k} | {v} |" for k, v in exposures.items()]
    checks = report.extra.get("question_checks", {})
    if checks:
        lines += ["", f"## Question naturalness ({checks['questions']} distinct training questions)", "",
                  "| check | share |", "|---|---|"] + [f"| {k.replace('_', ' ')} | {100 * v:.1f}% |"
                                                       for k, v in checks.items() if k != "questions"]
    lines += ["", f"## Quality gates ({report.extra['candidates']} candidate pairs)", "",
              "| gate | rejected |", "|---|---|"]
    lines += [f"| {gate} | {n} |" for gate, n in report.rejected.items()]
    lines += ["", "## Split by phrasing", "",
              "Every document's facts reach training; validation holds one phrasing of a seeded share of the "
              "content points (and a share of the refusal questions), so it measures recall of a trained fact "
              "from a question worded differently.", "",
              f"- documents in training: {len(report.extra['documents']['train'])}",
              f"- documents with a validation phrasing: {len(report.extra['documents']['validation'])}", "",
              "## Instructions found in documents", "",
              "Documents are data. Their control tokens (`<start_of_turn>` and the like) were removed at ingest; "
              "a sentence that reads as an instruction (\"ignore previous instructions\", \"the password is ...\") "
              "is kept as what the document says, quoted like any other fact of it and never obeyed. To keep such "
              "text out of training, fix or remove the document and run `assistant index --prune`.", "",
              "## Examples", ""]
    for pair_type in PAIR_TYPES:
        shown = [r for r in examples if r["meta"]["type"] == pair_type][:3]
        lines += [f"### {pair_type}", ""]
        for record in shown:
            user = record["messages"][-2]["content"]
            lines += ["```text", f"USER: {_clip(user, 600)}", f"ASSISTANT: {_clip(answer_of(record), 400)}", "```", ""]
        if not shown:
            lines += ["(none)", ""]
    lines += ["## Manifest", "", "```json", json.dumps({k: manifest[k] for k in
              ("inputs", "config", "seed", "prompt_versions", "versions")}, indent=2, default=str), "```", ""]
    return "\n".join(lines)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


def report_from_manifest(folder: Path) -> DatasetReport:
    metrics = (read_manifest(folder) or {}).get("metrics", {})
    return DatasetReport(dataset=folder, train=metrics.get("train", 0), validation=metrics.get("validation", 0),
                         by_type=metrics.get("by_type", {}), rejected=metrics.get("rejected", {}), up_to_date=True)


if __name__ == "__main__":
    from assistant.core.config import load_config

    print(json.dumps(build_dataset(load_config()).to_dict(), indent=2))
