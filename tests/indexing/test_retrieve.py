"""Vector, BM25 and hybrid search return cited hits; filters, top-k and batching behave."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from indexing.retrieve import content_words, gate_score, open_retriever, question_weights, word_idf, word_overlap
from indexing.store import IndexNotFound


@pytest.fixture(scope="module")
def retriever(built_cfg):
    return open_retriever(built_cfg)


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_each_mode_finds_the_right_document(retriever, mode):
    hits = retriever.search("How much is the late fee for a tool returned late?", top_k=3, mode=mode)
    assert len(hits) == 3
    assert hits[0].chunk.doc_id == "tool-loans"
    assert hits[0].chunk.title == "Tool Loan Rules" and hits[0].chunk.source.endswith("tool-loans.md")
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_fuses_both_rankings(retriever):
    query = "Which day is the shop open just for youth builders?"
    vector = [h.chunk.id for h in retriever.search(query, top_k=20, mode="vector")]
    bm25 = [h.chunk.id for h in retriever.search(query, top_k=20, mode="bm25")]
    hybrid = retriever.search(query, top_k=5, mode="hybrid")
    k = retriever.cfg.retrieve.rrf_k
    expected = {i: sum(1 / (k + ranked.index(i) + 1) for ranked in (vector, bm25) if i in ranked) for i in set(vector + bm25)}
    assert [h.chunk.id for h in hybrid] == sorted(expected, key=lambda i: (-expected[i], i))[:5]
    assert hybrid[0].score == pytest.approx(expected[hybrid[0].chunk.id])


@pytest.mark.parametrize("mode", ["vector", "bm25", "hybrid"])
def test_metadata_filter_limits_every_mode(retriever, mode):
    hits = retriever.search("late fee", top_k=4, mode=mode, where={"doc_id": "membership-fees"})
    assert hits and {h.chunk.doc_id for h in hits} == {"membership-fees"}
    both = retriever.search("late fee", top_k=50, mode=mode, where={"doc_id": ["membership-fees", "workshop-hours"]})
    assert {h.chunk.doc_id for h in both} <= {"membership-fees", "workshop-hours"}


def test_search_many_equals_search_one_by_one(retriever):
    queries = ["household membership price", "volunteer shift length", "Class C deposit"]
    batched = retriever.search_many(queries, top_k=4, mode="hybrid")
    single = [retriever.search(q, top_k=4, mode="hybrid") for q in queries]
    assert [[h.chunk.id for h in hits] for hits in batched] == [[h.chunk.id for h in hits] for hits in single]


def test_defaults_come_from_the_config(retriever):
    assert len(retriever.search("membership")) == retriever.cfg.retrieve.top_k
    with pytest.raises(ValueError, match="unknown retriever"):
        retriever.search("membership", mode="sparse")


def test_no_index_is_a_clear_error(tmp_path):
    from assistant.core.config import load_config

    with pytest.raises(IndexNotFound, match=r"no index at .*run `assistant index` first"):
        open_retriever(load_config(overrides={"workspace": str(tmp_path / "empty")}))


def test_cli_search_json_lists_hits(built_cfg):
    result = subprocess.run([sys.executable, "-m", "assistant", "search", "late fee for tools", "--json", "--top-k", "2",
                             "--corpus", str(built_cfg.corpus), "--workspace", str(built_cfg.workspace)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)
    assert len(hits) == 2 and {"id", "text", "score", "source", "title"} <= set(hits[0])
    assert hits[0]["title"] == "Tool Loan Rules"


def test_passages_put_the_best_sentences_of_the_top_chunks_under_their_headings(retriever):
    question = "How much is the late fee for a tool returned late?"
    chunks = {h.chunk.id: h.chunk for h in retriever.search(question, top_k=3, mode="hybrid")}
    passages = retriever.passages_many([question], top_k=3, sentences=4, mode="hybrid")[0]
    units = [unit for hit in passages for unit in hit.chunk.text.split("\n")]
    assert 1 <= len(units) <= 4 and len(set(units)) == len(units)     # no sentence twice (chunks overlap)
    for hit in passages:
        source = chunks[hit.chunk.id]                                   # a block belongs to a retrieved chunk
        assert (hit.chunk.title, hit.chunk.section, hit.chunk.doc_id) == (source.title, source.section, source.doc_id)
        assert all(unit.split(": ", 1)[-1].rstrip(".")[:20] in source.text.replace("**", "") for unit in hit.chunk.text.split("\n"))
    assert "$1 per day" in passages[0].chunk.text                       # the answering sentence comes first
    assert [h.score for h in passages] == sorted((h.score for h in passages), reverse=True)
    whole = retriever.passages_many([question], top_k=3, sentences=0, mode="hybrid")[0]
    assert [h.chunk for h in whole] == list(chunks.values())            # sentences=0: whole chunks, as before


def test_a_sentence_holding_the_questions_rare_words_matches_it_more_than_one_holding_common_ones():
    idf = word_idf(["the deposit is $40", "the deposit is waived", "a truing stand needs a deposit"])
    weights = question_weights("What deposit does a truing stand need?", idf)
    assert set(weights) == content_words("What deposit does a truing stand need?") == {"deposit", "truing", "stand", "need"}
    assert weights["truing"] > weights["deposit"]
    assert word_overlap(weights, content_words("A truing stand.")) > word_overlap(weights, content_words("The deposit is paid.")) > 0
    assert word_overlap(weights, content_words("Nothing in common here.")) == 0.0
    assert word_overlap(weights, content_words("The truing stand needs a deposit.")) == 1.0
    assert word_overlap(question_weights("What is it?", idf), content_words("anything")) == 0.0      # only stop words asked


def test_the_gate_score_adds_the_share_of_the_questions_rare_words_that_one_context_line_holds():
    from assistant.core.records import Chunk, Hit

    idf = word_idf(["the deposit is $40", "the deposit is waived", "a truing stand needs a deposit"])
    question = "What deposit does a truing stand need?"
    lacking = [Hit(Chunk("a", "d", "The deposit is $40.\nThe deposit is waived.", "Fees", "", "f.md"), 0.6)]
    holding = [Hit(Chunk("b", "d", "The deposit is $40.\nA truing stand needs a deposit.", "Fees", "", "f.md"), 0.6)]
    # the same cosine; the context that names the truing stand in one line matches the question more
    assert gate_score(question, holding, idf, 0.5) == pytest.approx(0.6 + 0.5 * 1.0)
    assert 0.6 < gate_score(question, lacking, idf, 0.5) < gate_score(question, holding, idf, 0.5)
    # the words of two lines do not add up: "truing" and "need" sit in neither line of `lacking`
    assert gate_score(question, lacking, idf, 0.5) == pytest.approx(0.6 + 0.5 * word_overlap(
        question_weights(question, idf), content_words("The deposit is $40.")))
    assert gate_score(question, holding, idf, 0.0) == 0.6 and gate_score(question, [], idf, 0.5) == 0.0


@pytest.mark.parametrize("question", ["How long may a member use a repair stand at busy sessions?",
                                      "What is the maximum late fee per tool?"])
def test_the_question_words_and_the_chunk_rank_steer_which_sentences_lead(built_cfg, question):
    from assistant.core.config import load_config

    def lead_lines(**retrieve):
        cfg = load_config(overrides={"corpus": str(built_cfg.corpus), "workspace": str(built_cfg.home),
                                     "retrieve": retrieve})
        retriever = open_retriever(cfg)
        return retriever, retriever.passages_many([question], top_k=4, sentences=6)[0]

    # Words alone (weight 10 drowns the cosine): the first line is one holding the most of the question's words.
    retriever, blocks = lead_lines(sentence_word_weight=10.0, sentence_rank_penalty=0.0)
    chunks = retriever.search(question, top_k=4)
    weights = question_weights(question, retriever.idf)
    candidates = [unit for hit in chunks for unit in retriever._units(hit.chunk)[0]]
    best = max(word_overlap(weights, content_words(unit)) for unit in candidates)
    assert word_overlap(weights, content_words(blocks[0].chunk.text.split("\n")[0])) == best
    # Rank alone (a penalty of 10 per rank): blocks follow the chunks' own ranking.
    _, blocks = lead_lines(sentence_word_weight=0.0, sentence_rank_penalty=10.0)
    order = [hit.chunk.id for hit in chunks]
    assert [order.index(b.chunk.id) for b in blocks] == sorted(order.index(b.chunk.id) for b in blocks)
