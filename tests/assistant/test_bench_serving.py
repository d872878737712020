"""The serving bench's concurrent-sessions stage against the real app on loopback, over real HTTP (Gradio's
API and its server-sent events), with the tiny model: every session gets a complete streamed answer, so a
change that breaks the app under load fails here rather than in a user's bench. The timings are the
bench's business, not this test's."""
from __future__ import annotations


def test_concurrent_sessions_all_get_a_streamed_answer(assistant):
    from assistant.bench_serving import bench_questions, bench_sessions

    rows = {row["measure"]: row for row in bench_sessions(assistant, bench_questions(assistant.cfg, 4), 4, 4)}

    assert rows["concurrent sessions: errors"]["value"] == 0, rows["concurrent sessions: errors"]["detail"]
    assert "paths base/rag/offline/hybrid" in rows["concurrent sessions: errors"]["detail"]
    latency, first = rows["concurrent sessions: latency p95"]["value"], rows["concurrent sessions: time to first token p50"]
    assert first["value"] is not None and 0 < first["value"] <= latency


def test_the_retrieval_rows_measure_the_prompt_the_answer_paths_send(assistant):
    """The rows once timed whole chunks (a 591-token prompt on the shipped corpus) where hybrid sends its best
    sentences (280): they must describe the prompt the paths build."""
    from assistant.answer import prompt_messages
    from assistant.bench_serving import bench_retrieval
    from assistant.core.modes import Mode

    question = "How much does a household membership cost per year?"
    rows = {r["measure"]: r for r in bench_retrieval(assistant, [question])}
    hits = assistant._retrieve([question], Mode.HYBRID)[0]
    assert assistant.cfg.retrieve.sentences and hits
    sent = assistant.generator.tokenizer.apply_chat_template(prompt_messages(question, hits, ()),
                                                            add_generation_prompt=True, return_dict=True)["input_ids"]
    assert rows["prompt with context p50"]["value"] == len(sent)
    assert rows["retrieval + prompt build p50"]["target"] == "<= 50 ms"
    assert rows["retrieval + prompt build, sentences not embedded yet p50"]["value"] > 0
