"""The evaluation recipe: questions -> answers from each path -> metrics -> statistics -> report.

    assistant eval                                  # all four paths on the held-out questions
    python -m eval.evaluate --modes base,rag --limit 10

Read top to bottom: 1. the questions (held-out, else a generated set; plus a sample of the synthetic
validation split and the general questions for forgetting), 2. answers from every path in batches,
resumable, 3. per-answer metrics, 4. forgetting, 5. statistics and the recommendation, 6. the run
folder `<workspace>/evals/<run-id>/`, written atomically.
"""
from __future__ import annotations

import random
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from assistant.core.config import Config
from assistant.core.figures import contains_fact
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import atomic_folder, build_manifest, latest_artifact, sha256_json
from assistant.core.modes import Mode
from eval import stats
from eval.questions import Question, load_questions, load_validation_pairs, questions_hash



@dataclass
class EvalReport:
    report_dir: Path
    summary: dict
    table: str             # the side-by-side table as text

    def to_dict(self) -> dict:
        heldout = self.summary["sets"]["heldout"]
        return {"report": str(self.report_dir / "report.md"), "report_dir": str(self.report_dir), "table": self.table,
                "paths": heldout["paths"], "differences": heldout["differences"],
                "recommendation": self.summary["recommendation"], "forgetting": self.summary["forgetting"],
                "questions": self.summary["questions"]}


@dataclass
class QuestionSource:
    questions: list[Question]
    path: Path
    generated: bool = False
    generator: str | None = None
    why: str | None = None


def choose_questions(cfg: Config, questions_path: Path | None) -> QuestionSource:
    """The file given, else the corpus's held-out file, else the workspace's generated set."""
    path = questions_path or cfg.questions_path
    if path is not None:
        return QuestionSource(load_questions(path), Path(path))
    from eval.testset import generated_questions

    made = generated_questions(cfg)
    return QuestionSource(made.questions, made.path, True, made.generator, made.why)


def evaluate(cfg: Config, modes: Sequence[str] = tuple(Mode), questions_path: Path | None = None,
             progress: bool = True, budget_minutes: float | None = None) -> EvalReport:
    """Score every path on the held-out questions, then the checks that fit `budget_minutes` (default
    `eval.budget_minutes`; `assistant run` passes what its own time budget has left)."""
    budget_minutes = cfg.eval.budget_minutes if budget_minutes is None else budget_minutes
    # 1. questions
    source = choose_questions(cfg, questions_path)
    heldout = source.questions[:cfg.eval.limit] if cfg.eval.limit else source.questions
    validation, validation_path = load_validation_pairs(cfg.datasets_dir)
    validation = _sample(validation, cfg.eval.validation_sample, cfg.seed)
    general = load_questions(cfg.general_questions_path) if cfg.general_questions_path.exists() else []
    if cfg.eval.limit:
        validation, general = validation[:cfg.eval.limit], general[:cfg.eval.limit]

    # 2. answers, every path, in batches; tuned paths only when there is an adapter
    from assistant.answer import Assistant
    from eval.paths import answer_all, answer_settings

    assistant = Assistant(cfg)
    inputs = _inputs(cfg, assistant, source, general)
    skipped = {m: "no LoRA adapter found; train one with `assistant train`"
               for m in modes if Mode(m).tuned and not assistant.has_adapter}
    skipped.update({m: "no index found; build one with `assistant index`"
                    for m in modes if Mode(m).retrieves and inputs["index"] is None and m not in skipped})
    runnable = [m for m in modes if m not in skipped]
    if "hybrid" in runnable and "auto" in (cfg.answer.refusal_floor, cfg.answer.retrieval_gate):
        ensure_refusal_floor(cfg, assistant, progress)
    settings = answer_settings(cfg, inputs["adapter"], inputs["index"])
    settings["refusal_floor"] = assistant.refusal_floor("hybrid") if "hybrid" in runnable else 0.0
    settings["retrieval_gate"] = assistant.retrieval_gate("hybrid") if "hybrid" in runnable else 0.0
    settings["retrieval_gate_words"] = assistant.retrieval_gate_words() if settings["retrieval_gate"] else 0.0
    cache = cfg.evals_dir / ".answers.jsonl"
    common = dict(settings=settings, cache_path=cache, batch_size=cfg.eval.batch_size,
                  max_new_tokens=cfg.eval.max_new_tokens, progress=progress)
    started = time.perf_counter()
    answers = answer_all(assistant, heldout, runnable, **common)
    general_modes = [m for m in ("base", "offline") if m in runnable] if "offline" in runnable else []
    validation, sized = fit_extras(answers, validation, general, runnable, general_modes,
                                   budget_minutes * 60 - (time.perf_counter() - started))
    answers += answer_all(assistant, validation, runnable, **common)
    general_answers = answer_all(assistant, general, general_modes, **common) if general_modes else []

    # 3. metrics
    by_id = {q.id: q for q in heldout + validation + general}
    sets = {**{q.id: "heldout" for q in heldout}, **{q.id: "validation" for q in validation},
            **{q.id: "general" for q in general}}
    rows = score_answers(cfg, answers + general_answers, by_id, sets, progress)

    # 4. forgetting, 5. statistics, 6. the run folder
    forgetting = measure_forgetting(cfg, assistant, rows, general, progress)
    summary = summarise(cfg, rows, runnable, skipped, source, forgetting, inputs)
    summary["questions"]["validation_path"] = str(validation_path) if validation_path else None
    summary["questions"]["sized_by_budget"] = sized
    return write_report(cfg, summary, rows, inputs)


# What one question costs on all four paths, the validation sample and the general questions, in rag answers:
# the paths without retrieval answer four times as many at once (2-core EPYC, bf16, per question: base 0.22 s,
# rag 0.74, offline 0.24, hybrid 0.70, i.e. 2.6 rag answers; the refusal floor's prefills add ~0.3).
PATHS_IN_RAG_ANSWERS, GENERAL_IN_RAG_ANSWERS, FIXED_SECONDS = 2.9, 1.2, 60.0


def estimate_seconds(cfg: Config) -> tuple[float, str] | None:
    """How long `evaluate(cfg)` will take on this machine, from one batch of rag answers by the base model,
    and how that was worked out; None when the questions are not known yet (they are generated at eval)."""
    path = cfg.questions_path
    if path is None:
        return None
    from assistant.answer import Assistant

    questions = load_questions(path)
    heldout = questions[:cfg.eval.limit] if cfg.eval.limit else questions
    general = load_questions(cfg.general_questions_path) if cfg.general_questions_path.exists() else []
    probe = [q.question for q in heldout[:cfg.eval.batch_size]]
    started = time.perf_counter()
    assistant = Assistant(cfg, tuned=False)
    # warm-up first: opening the index, the first forward pass and embedding the sentences of the probe's
    # chunks (done once per chunk, for all 132 questions in about 15 s) cost seconds that no later batch pays
    # (untimed, a first batch of 8 put fp32 answering at 5.8 s an answer where the evaluation ran at ~3)
    assistant.answer_batch(probe[:2], Mode.RAG, max_new_tokens=2)
    assistant.retriever.passages_many(probe)
    answers = assistant.answer_batch(probe, Mode.RAG, max_new_tokens=cfg.eval.max_new_tokens)
    pace = sum(a.latency_s for a in answers) / len(answers)
    work = ((len(heldout) + cfg.eval.validation_sample) * PATHS_IN_RAG_ANSWERS
            + len(general) * GENERAL_IN_RAG_ANSWERS)
    seconds = pace * work + FIXED_SECONDS + (time.perf_counter() - started)
    return seconds, (f"{pace:.2f} s per rag answer x {work:.0f} rag answers' worth "
                     f"({len(heldout)} held-out questions on four paths, checks, refusal floor)")


def ensure_refusal_floor(cfg: Config, assistant, progress: bool) -> None:
    """Measure the adapter's refusal floor and gate on synthetic questions unless they were, for the newest
    dataset, the gate's share and its words' weight."""
    import json

    from eval.refusal_calibration import CALIBRATION_FILE, GATE_SHARE, calibrate

    path = Path(assistant.adapter) / CALIBRATION_FILE if assistant.has_adapter and assistant.adapter else None
    dataset = latest_artifact(cfg.datasets_dir) if cfg.datasets_dir.exists() else None
    if path is None or dataset is None:
        return
    try:
        measured = json.loads(path.read_text(encoding="utf-8"))
        if (measured.get("dataset") == dataset.name and "retrieval_gate" in measured
                and measured.get("gate_share") == GATE_SHARE
                and measured.get("gate_word_weight", 0.0) == cfg.answer.retrieval_gate_words):
            return
    except (OSError, ValueError):
        pass
    calibrate(cfg, assistant, progress=progress)


def fit_extras(heldout_answers, validation: list[Question], general: list[Question], modes: Sequence[str],
               general_modes: Sequence[str], seconds_left: float) -> tuple[list[Question], str | None]:
    """The validation sample that fits the eval budget's remaining seconds, at the pace the held-out answers
    just set on each path, once the general questions are paid for. Held-out and general questions are never
    cut: the first are the result, the second the forgetting check, a line of the goal that costs closed-book
    answers only (about a minute for 55 questions on a 2-core AVX2 EPYC in fp32). When they were cut to fit,
    a machine slowed by other work spent the whole budget on the held-out answers and the report had no
    forgetting line. The validation sample only checks the held-out picture, so it shrinks, and says so."""
    pace = {}
    for mode in modes:
        mine = [a for a in heldout_answers if a.mode == mode]
        pace[mode] = sum(a.latency_s or 0.0 for a in mine) / len(mine) if mine else 0.0
    # general answers, then the reference perplexity of both models: about as long again
    general_each, validation_each = sum(pace[m] for m in general_modes) * 2, sum(pace[m] for m in modes)
    left = seconds_left - general_each * len(general)
    if validation_each * len(validation) <= left:
        return validation, None
    kept = validation[:max(0, int(left / validation_each))] if validation_each else validation
    note = (f"eval.budget_minutes: held-out and general answers left {max(0.0, left):.0f} s for the validation "
            f"sample, so {len(kept)} of {len(validation)} validation questions were answered")
    print(note, file=sys.stderr)
    return kept, note


def _sample(questions: list[Question], size: int, seed: int) -> list[Question]:
    if len(questions) <= size:
        return questions
    picked = set(random.Random(seed).sample(range(len(questions)), size))
    return [q for n, q in enumerate(questions) if n in picked]


def _inputs(cfg: Config, assistant, source: QuestionSource, general: list[Question]) -> dict:
    """What this run scored, for the manifest and the answer cache."""
    from indexing.store import IndexNotFound, index_fingerprint

    try:
        index = index_fingerprint(cfg)
    except IndexNotFound:
        index = None
    adapter = assistant.adapter if assistant.has_adapter else None
    dataset = latest_artifact(cfg.datasets_dir) if cfg.datasets_dir.exists() else None
    return {"adapter": Path(adapter).name if adapter else None, "adapter_path": str(adapter) if adapter else None,
            "index": index, "dataset": dataset.name if dataset else None,
            "questions": questions_hash(source.questions), "questions_path": str(source.path),
            "general": questions_hash(general) if general else None, "base_model": cfg.base_model}


def score_answers(cfg: Config, answers, by_id: dict[str, Question], sets: dict[str, str], progress: bool) -> list[dict]:
    """One row per answer: its metrics (None + reason where missing), latency and tokens."""
    from eval.metrics import Sample, offline_metrics, score_judged, score_sample

    embeddings, embed_problem = _embeddings(cfg, answers, by_id)
    metrics = offline_metrics(embeddings) if embeddings else offline_metrics(None)
    units_by_doc = _document_units(cfg)
    samples = [Sample(question=by_id[a.question_id], mode=a.mode, answer=a.answer, contexts=a.contexts,
                      reference_contexts=reference_units(by_id[a.question_id], units_by_doc))
               for a in answers]
    judged = (score_judged(samples, cfg.eval.judge_url, cfg.eval.judge_model, embeddings)
              if cfg.eval.judge_url or cfg.eval.judge_model else None)
    rows = []
    for n, (answer, sample) in enumerate(tqdm(list(zip(answers, samples)), desc="scoring", unit="answer",
                                              disable=not progress, file=sys.stderr)):
        values, reasons = score_sample(sample, metrics)
        if embed_problem:
            reasons["semantic_similarity"] = embed_problem
        if judged:
            values.update(judged[n][0])
            reasons.update(judged[n][1])
        question = sample.question
        values["domain_score"] = values["refusal"] if question.unanswerable else values["key_fact_accuracy"]
        if values["domain_score"] is None:
            reasons["domain_score"] = reasons.get("key_fact_accuracy", "not scored")
        rows.append({"question_id": question.id, "set": sets[question.id], "mode": answer.mode, "kind": question.kind,
                     "question": question.question, "answer": answer.answer, "contexts": answer.contexts,
                     "context_doc_ids": answer.context_doc_ids, **values, "missing": reasons,
                     "latency_s": answer.latency_s, "tokens": answer.tokens, "first_token_s": answer.first_token_s})
    return rows


def _embeddings(cfg: Config, answers, by_id: dict[str, Question]):
    """Our embedder wrapped for RAGAS, with every text it will see encoded up front."""
    from assistant.core.models import MissingModelError, load_embedder
    from eval.ragas_compat import LocalEmbeddings

    try:
        embeddings = LocalEmbeddings(load_embedder(cfg.embed_model), batch_size=cfg.index.embed_batch_size)
    except (MissingModelError, OSError) as err:
        return None, f"embedding model unavailable: {err}"
    embeddings.remember([a.answer for a in answers] + [q.reference for q in by_id.values() if q.reference])
    return embeddings, None


def _document_units(cfg: Config) -> dict[str, list[str]]:
    """doc_id -> its chunks' lines and sentences, the units the answer paths' context is made of."""
    from indexing.sentences import unit_texts
    from indexing.store import IndexNotFound, load_chunks

    try:
        chunks = load_chunks(cfg)
    except IndexNotFound:
        return {}
    grouped: dict[str, list[str]] = defaultdict(list)
    for chunk in chunks:
        grouped[chunk.doc_id].extend(unit_texts(chunk))
    return grouped


def reference_units(question: Question, units_by_doc: dict[str, list[str]]) -> list[str]:
    """The reference contexts of context precision and recall: the source documents' units that state a key
    fact (all their units when the question names none). Against whole documents, as before, a context of six
    sentences could only ever recall a few percent of them, whatever retrieval did."""
    units = [u for d in question.source_ids or () for u in units_by_doc.get(d, [])]
    stating = [u for u in units if any(contains_fact(u, fact) for fact in question.key_facts or ())]
    return stating or units


def measure_forgetting(cfg: Config, assistant, rows: list[dict], general: list[Question], progress: bool) -> dict:
    """Base vs tuned on general questions: key-fact accuracy and reference perplexity, with the drop."""
    if not general:
        return {"skipped": f"no general questions at {cfg.general_questions_path}"}
    if not assistant.has_adapter:
        return {"skipped": "no adapter: nothing was tuned, so nothing can be forgotten"}
    samples, seed = cfg.eval.bootstrap_samples, cfg.seed
    accuracy = {mode: stats.values_by_question([r for r in rows if r["set"] == "general"], mode, "key_fact_accuracy")
                for mode in ("base", "offline")}
    result = {"key_fact_accuracy": _drop(accuracy["base"], accuracy["offline"], samples, seed)}
    from assistant.generate import LocalGenerator

    generator = assistant.generator
    if not isinstance(generator, LocalGenerator):
        result["perplexity_skipped"] = "the answers come from a remote server; perplexity needs the local weights"
    else:
        from eval.paths import reference_perplexity

        base = reference_perplexity(generator.base, generator.tokenizer, general, label="base", progress=progress)
        tuned = reference_perplexity(generator.tuned, generator.tokenizer, general, label="tuned", progress=progress)
        # A rise in perplexity is forgetting: base - tuned is negative then, like a fall in accuracy.
        result["perplexity"] = _drop(base, tuned, samples, seed)
    drop = result["key_fact_accuracy"]["drop"]
    result["verdict"] = ("Forgetting not measured (no general question scored)." if drop["mean"] is None else
                         f"General-knowledge key-fact accuracy drops by {100 * drop['mean']:+.1f} points "
                         f"[{100 * drop['ci'][0]:.1f}, {100 * drop['ci'][1]:.1f}] after tuning "
                         "(positive = forgotten).")
    return result


def _drop(base: dict, tuned: dict, samples: int, seed: int) -> dict:
    return {"base": stats.bootstrap_mean(base.values(), samples, seed).to_dict(),
            "tuned": stats.bootstrap_mean(tuned.values(), samples, seed).to_dict(),
            "drop": stats.paired_difference(base, tuned, samples, seed).to_dict()}


def summarise(cfg: Config, rows: list[dict], modes: list[str], skipped: dict, source: QuestionSource,
              forgetting: dict, inputs: dict) -> dict:
    from eval.metrics import JUDGED_METRICS, OFFLINE_METRICS

    judged = JUDGED_METRICS if cfg.eval.judge_url or cfg.eval.judge_model else ()
    metrics = ["domain_score", *OFFLINE_METRICS, *judged]
    samples, seed = cfg.eval.bootstrap_samples, cfg.seed
    sets = {}
    for name in ("heldout", "validation"):
        mine = [r for r in rows if r["set"] == name]
        first_mode = [r for r in mine if r["mode"] == (modes[0] if modes else None)]
        sets[name] = {"n": len(first_mode), "paths": stats.summarise_paths(mine, modes, metrics, samples, seed),
                      "differences": stats.compare_paths(mine, modes, metrics, samples, seed),
                      "by_kind": stats.by_kind(mine, modes, "domain_score"),
                      "kind_counts": dict(Counter(r.get("kind") or "unlabelled" for r in first_mode))}
    heldout_rows = [r for r in rows if r["set"] == "heldout"]
    from eval.breakdown import breakdowns

    sets["heldout"]["breakdowns"] = breakdowns(heldout_rows, modes, {q.id: q for q in source.questions},
                                               trained_documents(cfg, inputs.get("dataset")), samples, seed)
    missing: dict = defaultdict(lambda: defaultdict(Counter))
    for row in heldout_rows:
        for metric, reason in row["missing"].items():
            missing[row["mode"]][metric][reason] += 1
    return {
        "run_id": time.strftime("%Y%m%d-%H%M%S"), "modes": modes, "skipped_modes": skipped, "metrics": metrics,
        "questions": {"path": str(source.path), "n": len(source.questions), "scored": sets["heldout"]["n"],
                      "generated": source.generated, "generator": source.generator, "why": source.why},
        "inputs": inputs, "sets": sets, "forgetting": forgetting,
        "cost": stats.cost(heldout_rows, modes),
        "recommendation": stats.recommend(sets["heldout"]["paths"], sets["heldout"]["differences"]),
        "missing": {mode: {metric: dict(reasons) for metric, reasons in per.items()} for mode, per in missing.items()},
    }


def trained_documents(cfg: Config, dataset: str | None) -> set[str] | None:
    """The documents whose pairs the tuned model was trained on (None without a dataset)."""
    path = cfg.datasets_dir / dataset / "train.jsonl" if dataset else None
    if path is None or not path.exists():
        return None
    return {record["meta"].get("doc_id") for _, record in read_jsonl(path)} - {None}


def write_report(cfg: Config, summary: dict, rows: list[dict], inputs: dict) -> EvalReport:
    from eval.report import side_by_side_table, write_run

    final = cfg.evals_dir / summary["run_id"]
    while final.exists():                       # two runs in one second: keep both
        final = final.with_name(final.name + "-1")
    summary["run_id"] = final.name
    heldout = summary["sets"]["heldout"]
    manifest = build_manifest("eval", inputs={k: str(v) for k, v in inputs.items()},
                              config=cfg.model_dump(mode="json"), seed=cfg.seed,
                              metrics={mode: {m: v["mean"] for m, v in per.items()} for mode, per in heldout["paths"].items()},
                              extra={"run_id": final.name, "config_hash": sha256_json(cfg.model_dump(mode="json"))})
    with atomic_folder(final) as folder:
        write_run(folder, summary, rows, manifest)
    table = side_by_side_table(heldout["paths"], summary["modes"], summary["metrics"])
    return EvalReport(final, summary, table)


if __name__ == "__main__":
    import argparse

    from assistant.core.config import load_config

    parser = argparse.ArgumentParser()
    parser.add_argument("--modes", default=",".join(Mode))
    parser.add_argument("--limit", type=int)
    options = parser.parse_args()
    config = load_config(overrides={"eval": {"limit": options.limit}} if options.limit else None)
    report = evaluate(config, modes=options.modes.split(","))
    print(report.table)
    print(report.report_dir / "report.html")
