"""`assistant serve` under malformed, hostile and concurrent requests, over real HTTP on loopback:
every error is OpenAI's error object (a 400 for a bad request, never a 500), a key locks every /v1
route, and no response names a file by the server's own path."""
from __future__ import annotations

import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import REPO, TINY_CORPUS, index_config
from tests.conftest import free_port

KEY = "test-key-0123456789"
QUESTION = "How much does a household membership cost per year?"


def _start(api) -> tuple[str, object]:
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=free_port(), log_level="critical"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 30
    while not server.started:
        assert time.time() < deadline, "the API server did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{server.config.port}", server


@pytest.fixture(scope="module")
def assistant(tmp_path_factory, tiny_model_dir):
    from assistant.answer import Assistant
    from indexing.store import build_index

    root = tmp_path_factory.mktemp("api")
    shutil.copytree(TINY_CORPUS, root / "corpus")
    (root / "corpus" / "nested").mkdir()
    (root / "corpus" / "nested" / "fees-extra.md").write_text(
        "# Fees extra\n\nA household membership also includes two guest passes per year.\n", encoding="utf-8")
    cfg = index_config(root / "corpus", root / "ws", base_model=str(tiny_model_dir),
                       answer={"max_new_tokens": 6})
    build_index(cfg, progress=False)
    return Assistant(cfg)


@pytest.fixture(scope="module")
def servers(assistant):
    """(open server URL, keyed server URL) over one loaded model."""
    from assistant.serve import build_api

    open_url, open_server = _start(build_api(assistant))
    keyed_url, keyed_server = _start(build_api(assistant, api_key=KEY))
    yield open_url, keyed_url
    open_server.should_exit = keyed_server.should_exit = True


@pytest.fixture(scope="module")
def http(servers):
    with httpx.Client(base_url=servers[0], timeout=60) as client:
        yield client


def _is_openai_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert "Traceback" not in response.text
    return error


BAD_BODIES = {
    "numeric content": ({"model": "base", "messages": [{"role": "user", "content": 5}]}, "messages.0.content"),
    "list of numbers": ({"model": "base", "messages": [{"role": "user", "content": [1, 2]}]}, "messages.0.content"),
    "no messages": ({"model": "base", "messages": []}, "messages"),
    "messages missing": ({"model": "base"}, "messages"),
    "model missing": ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
    "numeric model": ({"model": 3, "messages": [{"role": "user", "content": "hi"}]}, "model"),
    "unknown role": ({"model": "base", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
    "message not an object": ({"model": "base", "messages": ["hi"]}, "messages.0"),
    "part without type": ({"model": "base", "messages": [{"role": "user", "content": [{"text": "hi"}]}]},
                          "messages.0.content"),
    "max_tokens zero": ({"model": "base", "max_tokens": 0, "messages": [{"role": "user", "content": "hi"}]},
                        "max_tokens"),
    "body a list": ([{"model": "base"}], None),
}


@pytest.mark.guards("clear_error")
@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_a_malformed_request_is_a_400_openai_error_naming_the_field(http, case):
    body, param = BAD_BODIES[case]
    error = _is_openai_error(http.post("/v1/chat/completions", json=body), 400)
    assert error["type"] == "invalid_request_error"
    if param:
        assert error["param"].startswith(param) and param in error["message"]


@pytest.mark.guards("clear_error")
@pytest.mark.parametrize("raw", [b"{not json", b"", b"\xff\xfe\x00", b"null",
                                 b'{"model": "base", "max_tokens": NaN, "messages": [], "stream": Infinity}'])
def test_a_body_that_is_not_json_is_a_400(http, raw):
    response = http.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"})
    _is_openai_error(response, 400)


@pytest.mark.guards("clear_error")
def test_unknown_routes_and_methods_are_openai_errors(http):
    assert _is_openai_error(http.get("/v1/nothing"), 404)["code"] == "not_found"
    _is_openai_error(http.get("/v1/chat/completions"), 405)
    assert "base, rag, offline, hybrid" in _is_openai_error(http.post("/v1/chat/completions", json={
        "model": "gpt-4", "messages": [{"role": "user", "content": "hi"}]}), 404)["message"]


@pytest.mark.guards("works")
def test_sources_are_relative_to_the_corpus(http, assistant):
    reply = http.post("/v1/chat/completions", json={"model": "rag", "messages": [{"role": "user", "content": QUESTION}]})
    assert reply.status_code == 200
    sources = [s["source"] for s in reply.json()["sources"]]
    assert sources and all(not s.startswith("/") and str(REPO) not in s for s in sources)
    assert set(sources) <= {"membership-fees.md", "tool-loans.md", "volunteer-shifts.md", "workshop-hours.md",
                            "nested/fees-extra.md"}
    streamed = http.post("/v1/chat/completions", json={"model": "rag", "stream": True,
                                                        "messages": [{"role": "user", "content": QUESTION}]})
    assert str(assistant.cfg.corpus) not in streamed.text and "nested/fees-extra.md" in streamed.text
    assert "/" not in (http.get("/health").json()["adapter"] or "")


@pytest.mark.guards("clear_error")
def test_a_key_locks_every_v1_route(servers):
    with httpx.Client(base_url=servers[1], timeout=60) as keyed:
        body = {"model": "base", "messages": [{"role": "user", "content": "hi"}]}
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": KEY}):
            assert _is_openai_error(keyed.post("/v1/chat/completions", json=body, headers=headers), 401)["code"] \
                == "invalid_api_key"
            _is_openai_error(keyed.get("/v1/models", headers=headers), 401)
        good = {"authorization": f"Bearer {KEY}"}
        assert keyed.post("/v1/chat/completions", json=body, headers=good).status_code == 200
        assert keyed.get("/v1/models", headers=good).status_code == 200


@pytest.mark.guards("works")
def test_concurrent_requests_all_answer_as_one_at_a_time(http, assistant):
    asks = [(mode, q) for mode in ("base", "rag") for q in (QUESTION, "Who collects the fees?", "When is it open?")]
    expected = [assistant.answer(q, mode).text for mode, q in asks]

    def ask(pair):
        mode, question = pair
        return http.post("/v1/chat/completions", json={"model": mode, "messages": [{"role": "user", "content": question}]})

    with ThreadPoolExecutor(6) as pool:
        replies = list(pool.map(ask, asks))
    assert [r.status_code for r in replies] == [200] * len(asks)
    assert [r.json()["choices"][0]["message"]["content"] for r in replies] == expected


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                    max_leaves=8)
MESSAGE = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "bogus", 7]),
                                 "content": JSON | st.text(max_size=30)})
BODY = st.fixed_dictionaries({"model": st.sampled_from(["base", "rag", "gpt-4", 1, None]),
                              "messages": st.lists(MESSAGE, max_size=3) | JSON},
                             optional={"stream": JSON, "max_tokens": JSON, "temperature": JSON})


@pytest.mark.guards("clear_error")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODY | JSON)
def test_any_json_body_is_answered_or_refused_never_a_500(http, body):
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code in (200, 400, 404), response.text
    if response.status_code != 200:
        _is_openai_error(response, response.status_code)
    elif not response.headers["content-type"].startswith("text/event-stream"):
        assert response.json()["choices"][0]["message"]["role"] == "assistant"


@pytest.mark.guards("clear_error")
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_serve_refuses_a_network_host_without_a_key(host, capsys, monkeypatch):
    from assistant.cli import main

    monkeypatch.delenv("ASSISTANT_API_KEY", raising=False)
    assert main(["serve", "--host", host]) == 2
    err = capsys.readouterr().err
    assert f"--host {host}" in err and "ASSISTANT_API_KEY" in err and "Traceback" not in err


@pytest.mark.guards("clear_error")
def test_a_too_short_key_is_refused_by_name(capsys):
    from assistant.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--api-key", "abc"]) == 2
    assert "api_key" in capsys.readouterr().err


@pytest.mark.guards("works")
def test_the_key_never_reaches_a_dump_of_the_config(monkeypatch):
    from assistant.core.config import load_config

    monkeypatch.setenv("ASSISTANT_API_KEY", KEY)
    cfg = load_config()
    assert cfg.api_key.get_secret_value() == KEY and KEY not in cfg.model_dump_json() and KEY not in repr(cfg)


@pytest.mark.guards("clear_error")
def test_serve_on_a_network_host_answers_openai_clients_only_with_the_key(tmp_path, tiny_model_dir):
    """The real `assistant serve` process, bound beyond loopback with the key from ASSISTANT_API_KEY,
    asked through the `openai` client: the wrong key or none is a 401 AuthenticationError, the key answers."""
    import os
    import subprocess
    import sys

    from openai import AuthenticationError, OpenAI

    port = free_port()
    env = {**os.environ, "ASSISTANT_API_KEY": KEY, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1",
           "ASSISTANT_MODEL_CACHE": str(REPO / "workspace" / "models")}
    server = subprocess.Popen(
        [sys.executable, "-m", "assistant", "serve", "--host", "0.0.0.0", "--port", str(port),
         "--base-model", str(tiny_model_dir), "--corpus", str(TINY_CORPUS), "--workspace", str(tmp_path / "ws"),
         "--max-new-tokens", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            assert server.poll() is None, f"assistant serve exited: {server.stdout.read()}"
            assert time.time() < deadline, "assistant serve did not start within 120 s"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        body = {"model": "base", "messages": [{"role": "user", "content": QUESTION}]}
        for wrong in ("wrong-key-0123456789", "-"):
            client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=wrong, max_retries=0)
            with pytest.raises(AuthenticationError) as refused:
                client.chat.completions.create(**body)
            assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
            assert "Authorization: Bearer" in refused.value.message
        keyed = OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, max_retries=0)
        assert keyed.chat.completions.create(**body).choices[0].message.role == "assistant"
        assert sorted(m.id for m in keyed.models.list()) == ["base", "hybrid", "offline", "rag"]
    finally:
        server.terminate()
        server.wait(timeout=30)
