"""Each pair type has the shape the trainer and the answer paths expect; generators never crash on bad output."""
from __future__ import annotations

import json
import random
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from assistant.core.prompts import REFUSAL, build_messages
from assistant.core.records import Chunk, Hit
from training.generators import ExtractiveGenerator, make_generator, parse_llm_points
from training.pairs import points_to_output_pair, qa_pairs, raft_pair, refusal_pair, refusal_questions

HOTELS = Chunk(id="c-hotels", doc_id="travel-booking", title="Booking Business Travel", section="Hotels",
               source="travel-booking.md", text=(
                   "## Hotels\n\nBook hotels through Halvard Online. Nightly caps exclude taxes:\n\n"
                   "| Location | Cap per night |\n|---|---|\n| US standard | $185 |\n| Stuttgart | €165 |\n\n"
                   "Anything over the cap needs your department director's approval in the **TE160** request."))
RECEIPTS = Chunk(id="c-receipts", doc_id="expense-policy", title="Travel and Expense Policy", section="Receipts",
                 source="expense-policy.md", text=(
                     "## Receipts\n\nAn itemized receipt is required for every expense of **$25** or more. "
                     "Submit your expense report within **30 days** after the trip ends."))
MILEAGE = Chunk(id="c-mileage", doc_id="mileage", title="Mileage", section="Rates", source="mileage.md",
                text="## Rates\n\nPrivate cars are reimbursed at $0.67 per mile, up to 400 miles per trip.")
CHUNKS = [HOTELS, RECEIPTS, MILEAGE]


def _points(chunk, paraphrases=4):
    (points, malformed), = ExtractiveGenerator(CHUNKS, paraphrases, seed=0).content_points([chunk])
    assert malformed == 0
    return points


def test_extractive_points_keep_facts_verbatim_with_varied_questions():
    points = _points(HOTELS)
    stuttgart = next(p for p in points if "Stuttgart" in p.answer)
    assert "€165" in stuttgart.answer and "cap per night" in stuttgart.answer
    assert len(stuttgart.questions) == 4 and len(set(stuttgart.questions)) == 4
    assert all(q.endswith("?") and "Stuttgart" in q for q in stuttgart.questions)
    deadline = next(p for p in _points(RECEIPTS) if "30 days" in p.answer)
    assert any("how many days" in q.lower() for q in deadline.questions)   # the sentence turned into a question


def test_qa_pair_is_the_answer_prompt_plus_the_answer():
    point = _points(RECEIPTS)[0]
    records = qa_pairs(point, "extractive", "v1")
    assert len(records) == len(point.questions)
    record = records[0]
    assert record["messages"][:-1] == build_messages(point.questions[0], None)
    assert record["messages"][-1] == {"role": "assistant", "content": point.answer}
    assert record["meta"] | {"question": None} == {"type": "qa", "chunk_ids": ["c-receipts"], "doc_id": "expense-policy",
                                                 "generator": "extractive", "prompt_version": "v1", "question": None,
                                                 "with_context": False, "point_id": point.id, "round": 0}


def test_points_to_output_asks_for_the_section_and_gets_the_original_text():
    record = points_to_output_pair(HOTELS, _points(HOTELS), "reference", "extractive", "v1")
    user = record["messages"][-2]["content"]
    assert user.startswith('Write the "Hotels" section of the Booking Business Travel (reference) covering these points:')
    assert "- Booking Business Travel, hotels: for Stuttgart, the cap per night is €165." in user
    assert record["messages"][-1]["content"] == HOTELS.text
    assert record["meta"]["type"] == "points_to_output"


STUTTGART = "Booking Business Travel, hotels: for Stuttgart, the cap per night is €165."


def passage(chunk: Chunk, *units: str) -> Hit:
    """A block as `Retriever.passages_many` makes it: some of a chunk's sentences under its heading."""
    return Hit(replace(chunk, text="\n".join(units)), 0.5)


def test_raft_with_oracle_cites_the_block_that_holds_the_sentence_and_quotes_it():
    retrieved = [passage(RECEIPTS, "Submit your expense report within 30 days after the trip ends."),
                 passage(HOTELS, "Book hotels through Halvard Online.", STUTTGART),
                 passage(MILEAGE, "Private cars are reimbursed at $0.67 per mile, up to 400 miles per trip.")]
    record = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS, retrieved, with_oracle=True,
                       rng=random.Random(0), generator="extractive", prompt_version="v1",
                       extra={"point_id": "p1", "round": 2})
    assert record["messages"][-1]["content"] == f"[2] {STUTTGART}"
    assert record["messages"][:-1] == build_messages("Hotel cap in Stuttgart?", retrieved)
    assert record["meta"]["chunk_ids"][0] == HOTELS.id and record["meta"]["round"] == 2


def test_raft_follow_up_quotes_the_first_other_line_and_stays_grounded():
    from training.gates import is_grounded

    receipts = "Submit your expense report within 30 days after the trip ends."
    retrieved = [passage(HOTELS, STUTTGART, "Book hotels through Halvard Online."), passage(RECEIPTS, receipts)]
    same_block = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS, retrieved, with_oracle=True,
                           rng=random.Random(0), generator="extractive", prompt_version="v1", follow_ups=1)
    assert same_block["messages"][-1]["content"] == f"[1] {STUTTGART} Book hotels through Halvard Online."
    other_block = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS,
                            [passage(HOTELS, STUTTGART), passage(RECEIPTS, receipts)], with_oracle=True,
                            rng=random.Random(0), generator="extractive", prompt_version="v1", follow_ups=1)
    answer = other_block["messages"][-1]["content"]
    assert answer == f"[1] {STUTTGART} [2] {receipts}"
    # the grounding gate reads every chunk the pair names, and citations anywhere in the answer
    sources = {HOTELS.id: HOTELS.text, RECEIPTS.id: RECEIPTS.text}
    assert is_grounded(answer, "\n".join(sources[i] for i in other_block["meta"]["chunk_ids"]))
    assert not is_grounded(answer, HOTELS.text)
    # two follow-ups: the block is named again only when the quote moves to another one
    two = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS,
                    [passage(HOTELS, STUTTGART, "Book hotels through Halvard Online."), passage(RECEIPTS, receipts)],
                    with_oracle=True, rng=random.Random(0), generator="extractive", prompt_version="v1", follow_ups=2)
    assert two["messages"][-1]["content"] == f"[1] {STUTTGART} Book hotels through Halvard Online. [2] {receipts}"


def test_raft_follow_ups_stop_before_a_line_the_answer_length_cannot_hold():
    receipts = "Submit your expense report within 30 days after the trip ends."
    retrieved = [passage(HOTELS, STUTTGART, "Book hotels through Halvard Online."), passage(RECEIPTS, receipts)]
    words = lambda limit: (lambda answer: len(answer.split()) <= limit)
    quote = lambda fits: raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS, retrieved, with_oracle=True,
                                   rng=random.Random(0), generator="extractive", prompt_version="v1", follow_ups=2,
                                   fits=fits)["messages"][-1]["content"]
    assert quote(words(100)) == f"[1] {STUTTGART} Book hotels through Halvard Online. [2] {receipts}"
    # room for the first follow-up (18 words), not the second (30): the quote ends after the first
    assert quote(words(20)) == f"[1] {STUTTGART} Book hotels through Halvard Online."
    # the answering line is always quoted, whatever its length: it is what the question asks for
    assert quote(words(3)) == f"[1] {STUTTGART}"


def test_raft_puts_a_missed_sentence_into_the_context_at_varying_places():
    retrieved = [passage(RECEIPTS, "Submit your expense report within 30 days after the trip ends."),
                 passage(MILEAGE, "Private cars are reimbursed at $0.67 per mile, up to 400 miles per trip.")]
    cited = set()
    for seed in range(12):
        record = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS, retrieved, with_oracle=True,
                           rng=random.Random(seed), generator="extractive", prompt_version="v1")
        number = int(record["messages"][-1]["content"][1:].split("]", 1)[0])
        user = record["messages"][-2]["content"]
        assert f"[{number}] Booking Business Travel > Hotels\n{STUTTGART}" in user
        assert user.count("] ") == 3
        cited.add(number)
    assert len(cited) >= 2      # the gold is not always first


def test_raft_distractors_only_say_the_context_does_not_cover_it():
    copy_with_answer = Chunk(id="c-copy", doc_id="faq", title="FAQ", section="Hotels", source="faq.md",
                             text="The Stuttgart hotel cap is €165 per night.")
    retrieved = [passage(HOTELS, STUTTGART, "Book hotels through Halvard Online."),
                 passage(copy_with_answer, "The Stuttgart hotel cap is €165 per night."),
                 passage(RECEIPTS, "Submit your expense report within 30 days after the trip ends.")]
    record = raft_pair("Hotel cap in Stuttgart?", STUTTGART, STUTTGART, HOTELS, retrieved, with_oracle=False,
                       rng=random.Random(0), generator="extractive", prompt_version="v1")
    assert record["messages"][-1]["content"].startswith(REFUSAL)
    assert record["meta"]["chunk_ids"] == [HOTELS.id, RECEIPTS.id]     # the copy of the fact is gone entirely
    user = record["messages"][-2]["content"]
    assert "€165" not in user and "Halvard Online" in user


def test_refusals_are_out_of_scope_and_come_with_and_without_context():
    covered = Chunk(id="c-leave", doc_id="hr", title="HR", section="", source="hr.md",
                    text="Parental leave lasts 16 weeks. The dress code is business casual.")
    questions = refusal_questions([covered], 30, random.Random(0))
    assert len(questions) == 30 and len(set(questions)) == 30
    assert not any("parental" in q.lower() or "dress" in q.lower() for q in questions)
    plain, with_context = refusal_pair(questions[0], None), refusal_pair(questions[0], [Hit(MILEAGE, 0.1)])
    assert plain["messages"][-1]["content"] == with_context["messages"][-1]["content"] == REFUSAL
    assert plain["messages"][-2]["content"] == questions[0]
    assert with_context["messages"][-2]["content"].startswith("Context:\n[1] Mileage > Rates")
    assert plain["meta"]["type"] == "refusal" and plain["meta"]["doc_id"] is None


def test_llm_output_is_parsed_and_garbage_is_counted_not_raised():
    points, malformed = parse_llm_points(HOTELS, "Q: What is the hotel cap in Stuttgart?\nA: The cap is €165 per night.\n"
                                                 "Q: How much per night in Stuttgart?\nA: The cap is €165 per night.\n"
                                                 "Q: broken line without answer")
    assert malformed == 0 and len(points) == 1 and len(points[0].questions) == 2
    assert parse_llm_points(HOTELS, "lorem ipsum <unk> ###")[1] == 1


def test_hf_generator_runs_batched_on_the_tiny_model(tiny_cfg):
    cfg = tiny_cfg.model_copy(update={"synth": tiny_cfg.synth.model_copy(update={"generator": "hf",
                                                                                  "max_new_tokens": 8})})
    generator = make_generator(cfg, CHUNKS)
    written = generator.content_points(CHUNKS)      # random weights: nothing parseable, and no crash
    assert len(written) == 3
    assert all(malformed == (0 if points else 1) for points, malformed in written)


class _ChatCompletions(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible endpoint (no real teacher model can run here)."""
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        assert body["messages"][-1]["content"].startswith('Passage from "Booking Business Travel > Hotels"')
        reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant",
                             "content": "Q: What is the Stuttgart hotel cap?\nA: The cap per night is €165."}}]}
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_openai_generator_speaks_the_chat_completions_api(tiny_cfg):
    server = HTTPServer(("127.0.0.1", 0), _ChatCompletions)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        synth = tiny_cfg.synth.model_copy(update={"generator": "openai", "generator_model": "teacher",
                                                  "generator_url": f"http://127.0.0.1:{server.server_port}/v1"})
        generator = make_generator(tiny_cfg.model_copy(update={"synth": synth}), [HOTELS])
        (points, malformed), = generator.content_points([HOTELS])
    finally:
        server.shutdown()
    assert malformed == 0 and points[0].answer == "The cap per night is €165."


def test_openai_generator_without_url_is_a_clear_config_error(tiny_cfg):
    from assistant.core.config import ConfigError

    synth = tiny_cfg.synth.model_copy(update={"generator": "openai"})
    with pytest.raises(ConfigError, match="--generator-url"):
        make_generator(tiny_cfg.model_copy(update={"synth": synth}), [HOTELS])


def test_llm_output_that_echoes_the_few_shot_example_is_malformed():
    from training.generators import FEW_SHOT_ANSWER

    assert parse_llm_points(HOTELS, FEW_SHOT_ANSWER) == ([], 1)
