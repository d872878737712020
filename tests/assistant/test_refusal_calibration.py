"""The hybrid refusal floor measured per adapter on synthetic prompts (eval.refusal_calibration), with the
tiny random model and adapter: the probabilities are noise, but the floor must do what it says on them."""
from __future__ import annotations

import json

from assistant.core.manifest import build_manifest, write_manifest
from assistant.core.prompts import REFUSAL
from assistant.core.records import Chunk, Hit
from training.pairs import pair_record


def test_the_floor_refuses_no_more_than_the_allowed_share_of_answerable_prompts():
    from eval.refusal_calibration import choose_floor

    answerable = [n / 100 for n in range(100)]          # 0.00 ... 0.99
    floor = choose_floor(answerable, 0.05)
    assert sum(p >= floor for p in answerable) == 5
    assert choose_floor(answerable, 0.0) > max(answerable)
    assert choose_floor([0.2, 0.2, 0.2], 0.5) > 0.2     # ties are refused together, so all of them stay answered


def _validation_set(cfg, answerable: int, unanswerable: int) -> None:
    chunk = Chunk("c1", "fees", "Youth members pay $12 a month. Seniors pay $15.", "Fees", "Tiers", "fees.md")
    records = []
    for n in range(answerable + unanswerable):
        refused = n >= answerable
        records.append(pair_record(f"What does tier {n} cost?", REFUSAL if refused else f"[1] Tier {n} costs ${n}.",
                                   [Hit(chunk, 1.0)], pair_type="raft", chunk_ids=["c1"], doc_id="fees",
                                   generator="extractive", prompt_version="v1", extra={"point_id": f"p{n}"}))
    folder = cfg.datasets_dir / "d1"
    folder.mkdir(parents=True)
    (folder / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    write_manifest(folder, build_manifest("dataset", inputs={}, config={}, seed=0))


def test_calibration_writes_a_floor_beside_the_adapter_that_auto_then_uses(new_workspace):
    from assistant.answer import Assistant
    from eval.evaluate import ensure_refusal_floor
    from eval.refusal_calibration import (CALIBRATION_FILE, GATE_SHARE, calibrate, calibration_prompts,
                                          refusal_probabilities, retrieval_scores, validation_questions)

    cfg = new_workspace()
    cfg.answer.refusal_floor = "auto"       # off by default (config.py says why): the measured floor on request
    _validation_set(cfg, answerable=40, unanswerable=4)
    assistant = Assistant(cfg)
    assert assistant.refusal_floor("hybrid") == 0.0   # nothing measured yet

    result = calibrate(cfg, assistant, max_false_refusals=0.1, count=40, progress=False)
    written = json.loads((assistant.adapter / CALIBRATION_FILE).read_text())
    assert written == result and result["dataset"] == "d1" and result["answerable"] == 40
    assert result["unanswerable"] >= 4 + 1          # the taken-out answers plus off-topic questions
    # the floor keeps its promise on the probabilities it was chosen from
    answerable, _ = calibration_prompts(cfg, assistant, 40, cfg.seed)
    probabilities = refusal_probabilities(assistant.generator, answerable)
    assert sum(p >= result["floor"] for p in probabilities) <= 0.1 * len(probabilities)
    assert result["false_refusals"] <= 0.1
    # auto reads it for hybrid only; a number overrides it; a damaged file means greedy
    assert assistant.refusal_floor("hybrid") == result["floor"] and assistant.refusal_floor("offline") == 0.0
    assert assistant.with_config(cfg.model_copy(update={"answer": cfg.answer.model_copy(
        update={"refusal_floor": 0.3})})).refusal_floor("hybrid") == 0.3
    # the retrieval gate refuses at most its share of the validation questions, which all have an answer
    # (scored with the rare words' weight it was measured with, which auto then answers with)
    assert result["gate_word_weight"] == cfg.answer.retrieval_gate_words == assistant.retrieval_gate_words() > 0
    scores = retrieval_scores(assistant, validation_questions(cfg), result["gate_word_weight"])
    assert len(scores) == 40 and 0 < result["retrieval_gate"] <= max(scores)
    assert sum(score < result["retrieval_gate"] for score in scores) <= GATE_SHARE * len(scores)
    assert assistant.retrieval_gate("hybrid") == result["retrieval_gate"] and assistant.retrieval_gate("rag") == 0.0
    # a calibration from before the words counted measured the cosine alone, and is answered with it
    older = {k: v for k, v in result.items() if k != "gate_word_weight"}
    (assistant.adapter / CALIBRATION_FILE).write_text(json.dumps(older))
    assert assistant.retrieval_gate_words() == 0.0 and assistant.retrieval_gate("hybrid") == result["retrieval_gate"]
    # ... and `assistant eval` measures it again, for the configured weight
    ensure_refusal_floor(cfg, assistant, progress=False)
    assert json.loads((assistant.adapter / CALIBRATION_FILE).read_text())["gate_word_weight"] == cfg.answer.retrieval_gate_words
    (assistant.adapter / CALIBRATION_FILE).write_text("{not json")
    assert assistant.refusal_floor("hybrid") == 0.0 and assistant.retrieval_gate("hybrid") == 0.0


def test_a_validation_split_too_small_for_a_floor_still_gets_its_retrieval_gate(new_workspace):
    """The handbook's split once held fewer than 20 answerable RAFT prompts: the calibration then wrote
    nothing, and hybrid answered with no gate at all (0 of 8 unanswerable questions refused)."""
    from assistant.answer import Assistant
    from eval.refusal_calibration import CALIBRATION_FILE, MIN_FLOOR_PROMPTS, calibrate, describe

    cfg = new_workspace()
    cfg.answer.refusal_floor = "auto"
    _validation_set(cfg, answerable=MIN_FLOOR_PROMPTS - 1, unanswerable=4)
    assistant = Assistant(cfg)

    result = calibrate(cfg, assistant, count=40, progress=False)
    assert json.loads((assistant.adapter / CALIBRATION_FILE).read_text()) == result
    assert result["floor"] is None and result["false_refusals"] is None and result["answerable"] == 19
    assert result["gate_questions"] == MIN_FLOOR_PROMPTS - 1 and result["retrieval_gate"] > 0
    assert describe(result).startswith("no refusal floor: 19 answerable validation prompts, fewer than 20; "
                                       f"retrieval gate {result['retrieval_gate']:.3f}")
    assert assistant.refusal_floor("hybrid") == 0.0                      # no floor: greedy
    assert assistant.retrieval_gate("hybrid") == result["retrieval_gate"]


def test_the_gate_refuses_at_most_its_share():
    from eval.refusal_calibration import choose_gate

    scores = [n / 100 for n in range(100)]
    gate = choose_gate(scores, 0.1)
    assert sum(score < gate for score in scores) == 10
    assert choose_gate(scores, 0.0) == 0.0 and choose_gate([], 0.1) == 0.0


def test_below_the_gate_hybrid_refuses_without_generating_and_shows_what_it_found(new_workspace):
    from assistant.answer import Assistant

    cfg = new_workspace()
    question = "How much does a household membership cost per year?"
    gated = Assistant(cfg.model_copy(update={"answer": cfg.answer.model_copy(update={"retrieval_gate": 2.0})}))
    answer = gated.answer(question, "hybrid")
    assert answer.text == REFUSAL and answer.tokens == 0 and answer.hits          # cosine + 0.5 x words < 2
    assert "retrieval gate of 2.00" in answer.note                                 # the user is told why
    batch = gated.answer_batch([question, "Who collects the fees?"], "hybrid")
    assert [a.text for a in batch] == [REFUSAL, REFUSAL] and all(a.tokens == 0 for a in batch)
    assert gated.answer(question, "rag").tokens > 0                               # the base paths stay ungated
    open_gate = gated.with_config(cfg.model_copy(update={"answer": cfg.answer.model_copy(update={"retrieval_gate": 0})}))
    assert open_gate.answer(question, "hybrid").tokens > 0


def test_no_adapter_or_no_dataset_measures_nothing(new_workspace):
    from assistant.answer import Assistant
    from eval.refusal_calibration import calibrate

    cfg = new_workspace()
    assert calibrate(cfg, Assistant(cfg), progress=False) is None        # no dataset yet
    assert not (Assistant(cfg).adapter / "refusal_floor.json").exists()
