"""The Pipeline tab in a real headless Chromium: from an empty workspace, build the knowledge base and
the dataset, train the tiny model's adapter (cancelled mid-way, then resumed), chat with the new
adapter without a restart, and mark the answer wrong with a correction.

Screenshots land in test-artifacts/screenshots/ (pipeline-training.png, pipeline-done.png,
feedback.png).

    pytest -m browser tests/assistant/test_pipeline_browser.py
"""
from __future__ import annotations

import json
import re

import pytest

from tests.assistant.conftest import SHOTS, browser_tab, make_config
from tests.conftest import free_port

pytestmark = pytest.mark.browser

# Small and quick: a few paraphrases, short rows, many epochs so that the one-minute budget (the
# smallest training plans for) decides the length and the run is long enough to cancel.
PIPELINE = {"synth": {"paraphrases": 2}, "train": {"max_seq_len": 192, "eval_steps": 3, "epochs": 40,
                                                   "batch_size": 2, "max_steps": 0}}


@pytest.fixture(scope="module")
def pipeline_app(tmp_path_factory, tiny_model_dir):
    from assistant.app import launch

    cfg = make_config(tmp_path_factory.mktemp("pipeline"), tiny_model_dir, **PIPELINE)
    app, url = launch(cfg, host="127.0.0.1", port=free_port(), block=False)
    yield cfg, url
    app.close()


@pytest.fixture(scope="module")
def page(pipeline_app):
    with browser_tab(pipeline_app[1], "Pipeline", height=1100) as tab:
        yield tab


def run_stage(page, verb: str, timeout_ms: int = 300_000) -> None:
    from playwright.sync_api import expect

    page.locator(f"#pipeline-{verb}").click()
    expect(page.locator("#pipeline-status")).to_contain_text(f"{verb} done", timeout=timeout_ms)


def test_pipeline_builds_trains_and_the_chat_uses_the_new_adapter(page, pipeline_app):
    from playwright.sync_api import expect

    cfg, _ = pipeline_app
    expect(page.locator("#header")).to_contain_text("no adapter yet")
    page.get_by_role("tab", name="Pipeline").click()
    expect(page.locator("#pipeline-folder textarea, #pipeline-folder input").first).to_have_value(str(cfg.corpus))
    page.locator("#pipeline-budget input").fill("1")
    run_stage(page, "index")
    run_stage(page, "synth")
    assert (cfg.datasets_dir.exists() and any(cfg.datasets_dir.iterdir()))

    # Training: progress with an ETA while it runs, then cancel; the same button resumes it.
    page.locator("#pipeline-train").click()
    status = page.locator("#pipeline-status")
    expect(status).to_contain_text(re.compile(r"train \(sft\) ([4-9]|\d\d+)/\d+ · ETA"), timeout=300_000)  # past checkpoint 3
    page.screenshot(path=str(SHOTS / "pipeline-training.png"), full_page=True)
    page.locator("#pipeline-cancel").click()
    expect(status).to_contain_text("cancelled", timeout=60_000)
    run_dir = next(cfg.adapters_dir.glob(".*.run"))
    assert list((run_dir / "sft").glob("checkpoint-*")), "the cancelled run left no checkpoint to resume from"
    assert not [p for p in cfg.adapters_dir.iterdir() if not p.name.startswith(".")], "a cancelled run saved an adapter"
    run_stage(page, "train")
    adapter = next(p for p in cfg.adapters_dir.iterdir() if not p.name.startswith("."))
    assert (adapter / "manifest.json").exists() and (adapter / "adapter_config.json").exists()
    expect(page.locator("#pipeline-loss")).to_be_visible()
    expect(page.locator("#header")).to_contain_text(adapter.name)      # the Chat tab has it, no restart
    page.screenshot(path=str(SHOTS / "pipeline-done.png"), full_page=True)

    # Chat on hybrid with the adapter just trained, then mark the answer wrong with a correction.
    page.get_by_role("tab", name="Chat").click()
    page.locator("#mode").get_by_text("hybrid", exact=True).click()
    page.locator("#message textarea").fill("How much does a household membership cost per year?")
    page.locator("#send").click()
    # The first retrieval loads the embedder and opens the index: more than expect's 5 s on a busy CPU.
    expect(page.locator("#sources")).to_contain_text(re.compile(r"hybrid · [\d.]+ s · \d+ tokens"), timeout=120_000)
    page.locator("#feedback-correction textarea").fill("$90 a year, for up to 4 people.")
    page.locator("#feedback-wrong").click()
    expect(page.locator("#feedback-result")).to_contain_text("Marked wrong", timeout=30_000)
    page.screenshot(path=str(SHOTS / "feedback.png"), full_page=True)
    record = json.loads((cfg.home / "feedback.jsonl").read_text().splitlines()[-1])
    assert record["adapter"] == adapter.name and record["mode"] == "hybrid" and record["verdict"] == "wrong"
    assert record["correction"] == "$90 a year, for up to 4 people." and record["sources"]
    # The answer is the new adapter's (a tiny random model's may well be empty): the same as the library
    # gives with that adapter loaded afresh.
    from assistant.answer import Assistant

    assert record["answer"] == Assistant(cfg, adapter).answer(record["question"], "hybrid").text
