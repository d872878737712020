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
