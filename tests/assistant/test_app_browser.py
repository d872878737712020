"""The real app in a real headless Chromium (Debian's `chromium`, driven by Playwright): every tab,
every path, streamed answers with sources, an upload that is indexed and then retrieved.

Screenshots land in test-artifacts/screenshots/ (chat-<mode>.png, chat-bad-input.png,
side-by-side.png, knowledge.png, dataset.png, evaluation.png).

    pytest -m browser tests/assistant/test_app_browser.py
"""
from __future__ import annotations

import json
import re

import pytest

from assistant.core.manifest import build_manifest, write_manifest
from tests.assistant.conftest import SHOTS, browser_tab
from tests.conftest import free_port

pytestmark = pytest.mark.browser

LASER_DOC = "---\nid: laser-cutter\ntitle: Laser Cutter Rules\n---\n\n# Laser Cutter Rules\n\n## Materials\n\n" \
            "Never cut PVC in the laser cutter; the chlorine gas ruins the optics. Acrylic up to 6 mm is fine.\n"


def write_dataset_and_report(cfg) -> None:
    """What `assistant synth` and `assistant eval` leave behind, in miniature (fixture data), so the
    Dataset and Evaluation tabs have something to show."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = cfg.datasets_dir / "tiny-set"
    data.mkdir(parents=True)
    pairs = [("qa", "How much is the household membership?", "$90 a year, for up to 4 people.", "membership-fees"),
             ("raft", "Context:\n[1] Membership Fees > Fee tiers\n...\n\nQuestion: What does a senior pay?", "$24 a year [1].", "membership-fees"),
             ("refusal", "What is the parking fee?", "The knowledge base does not cover this.", "")]
    (data / "train.jsonl").write_text("".join(json.dumps({"messages": [
        {"role": "user", "content": q}, {"role": "assistant", "content": a}], "meta": {"type": t, "doc_id": d, "question": q.rpartition("Question: ")[2]}}) + "\n"
        for t, q, a, d in pairs))
    (data / "validation.jsonl").write_text("")
    write_manifest(data, build_manifest("dataset", inputs={}, config={}, seed=0))

    report = cfg.evals_dir / "tiny-eval"
    report.mkdir(parents=True)
    figure, axes = plt.subplots(figsize=(4, 2.5))
    axes.bar(["base", "rag", "offline", "hybrid"], [0.2, 0.55, 0.4, 0.7])
    axes.set_title("Domain score per path")
    figure.savefig(report / "metrics.png")
    plt.close(figure)
    (report / "report.md").write_text("# Side-by-side evaluation\n\n| path | domain score |\n|---|---|\n"
                                      "| base | 0.20 |\n| rag | 0.55 |\n| offline | 0.40 |\n| hybrid | 0.70 |\n")
    (report / "summary.json").write_text(json.dumps({"modes": ["base", "rag", "offline", "hybrid"]}))
    write_manifest(report, build_manifest("eval", inputs={}, config={}, seed=0))


@pytest.fixture(scope="module")
def app_url(new_workspace):
    """The app on a free loopback port, over its own workspace (the upload test changes the index)."""
    from assistant.app import launch

    cfg = new_workspace()
    write_dataset_and_report(cfg)
    app, url = launch(cfg, host="127.0.0.1", port=free_port(), block=False)
    yield url
    app.close()


@pytest.fixture(scope="module")
def page(app_url):
    with browser_tab(app_url, "Chat") as tab:
        yield tab


# Records every distinct text the newest answer bubble shows, to prove the answer arrived in pieces.
WATCH_ANSWER = """() => {
  window.__answerStates = new Set();
  const chat = document.querySelector('#chatbot');
  new MutationObserver(() => {
    const rows = chat.querySelectorAll('.bot-row');
    if (rows.length) window.__answerStates.add(rows[rows.length - 1].innerText.trim());
  }).observe(chat, {subtree: true, childList: true, characterData: true});
}"""


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


def ask(page, question: str, mode: str) -> None:
    from playwright.sync_api import expect

    page.locator("#mode").get_by_text(mode, exact=True).click()
    page.evaluate(WATCH_ANSWER)
    page.locator("#message textarea").fill(question)
    page.locator("#send").click()
    expect(page.locator("#sources")).to_contain_text(re.compile(rf"{mode} · [\d.]+ s · \d+ tokens"))


def test_chat_streams_an_answer_with_sources_on_every_path(page):
    from playwright.sync_api import expect

    open_tab(page, "Chat")
    for mode in ("base", "rag", "offline", "hybrid"):
        ask(page, "How much does a household membership cost per year?", mode)
        states = page.evaluate("() => [...window.__answerStates].filter(s => s.length)")
        assert len(states) >= 2, f"{mode}: the answer did not stream ({states})"
        sources = page.locator("#sources")
        if mode in ("rag", "hybrid"):
            expect(sources).to_contain_text("[1] Membership Fees")
        else:
            expect(sources).to_contain_text("No retrieved sources on this path")
        assert page.locator("#chatbot .bot-row").last.inner_text().strip()
        page.screenshot(path=str(SHOTS / f"chat-{mode}.png"), full_page=True)


def test_bad_input_gets_a_clear_reply(page):
    from playwright.sync_api import expect

    open_tab(page, "Chat")
    ask(page, "   ", "hybrid")
    expect(page.locator("#chatbot .bot-row").last).to_contain_text("Please type a question")
    ask(page, "What does a senior pay? " + "z" * 100_000, "rag")
    expect(page.locator("#chatbot")).to_contain_text("only the first 600 were read")
    page.screenshot(path=str(SHOTS / "chat-bad-input.png"), full_page=True)


def test_side_by_side_answers_on_all_four_paths(page):
    from playwright.sync_api import expect

    open_tab(page, "Side by side")
    page.locator("#compare-question textarea").fill("Which day is the shop open just for youth builders?")
    page.locator("#compare-send").click()
    for mode in ("base", "rag", "offline", "hybrid"):
        expect(page.locator(f"#compare-{mode}-sources")).to_contain_text(re.compile(r"tokens/s|tokens"))
        assert page.locator(f"#compare-{mode}-answer").inner_text().strip()
    expect(page.locator("#compare-rag-sources")).to_contain_text("[1]")
    expect(page.locator("#compare-base-sources")).to_contain_text("No retrieved sources")
    page.screenshot(path=str(SHOTS / "side-by-side.png"), full_page=True)


def test_an_uploaded_document_is_indexed_and_retrieved(page, tmp_path):
    from playwright.sync_api import expect

    open_tab(page, "Knowledge")
    expect(page.locator("#knowledge-status")).to_contain_text("Knowledge base")
    upload = tmp_path / "laser cutter.md"
    upload.write_text(LASER_DOC, encoding="utf-8")
    page.locator("#upload input[type=file]").set_input_files(str(upload))
    page.locator("#reindex").click()
    expect(page.locator("#reindex-result")).to_contain_text("Stored 1 of 1 file(s)", timeout=120_000)
    expect(page.locator("#knowledge-status")).to_contain_text("laser_cutter.md")
    page.screenshot(path=str(SHOTS / "knowledge.png"), full_page=True)
    open_tab(page, "Chat")
    ask(page, "Can I cut PVC in the laser cutter?", "rag")
    expect(page.locator("#sources")).to_contain_text("Laser Cutter Rules")


def test_dataset_tab_browses_and_searches_pairs(page):
    from playwright.sync_api import expect

    open_tab(page, "Dataset")
    expect(page.locator("#dataset-summary")).to_contain_text("3 of 3 pairs")
    search = page.get_by_label("Search")
    search.fill("senior")
    search.press("Enter")
    expect(page.locator("#dataset-summary")).to_contain_text("1 of 3 pairs")
    expect(page.locator("#dataset-table")).to_contain_text("What does a senior pay?")
    page.screenshot(path=str(SHOTS / "dataset.png"), full_page=True)


def test_evaluation_tab_shows_the_newest_report(page):
    from playwright.sync_api import expect

    open_tab(page, "Evaluation")
    expect(page.locator("#eval-report")).to_contain_text("Side-by-side evaluation")
    expect(page.locator("#eval-report")).to_contain_text("hybrid")
    expect(page.locator("#eval-plots img").first).to_be_visible()
    page.screenshot(path=str(SHOTS / "evaluation.png"), full_page=True)
