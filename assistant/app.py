"""The Gradio app: chat on any path, all four side by side, the knowledge base, the dataset, the evaluation.

    assistant chat                                   # http://127.0.0.1:7860, this machine only
    assistant chat --host 0.0.0.0 --share-auth ana:s3cret    # reachable by others, behind a login

Tabs: Chat (streaming answers with their sources, each markable right or wrong with a correction),
Side by side (one question on base, rag, offline and hybrid), Pipeline (build the knowledge base,
dataset, adapter and evaluation from the browser), Knowledge (upload documents, reindex), Dataset
(browse the synthetic pairs), Evaluation (the newest side-by-side report, then the newest tune's
trials and plots). Handlers are
plain functions of the `Assistant`; Gradio only lays them out.
"""
from __future__ import annotations

import base64
import functools
import itertools
import json
import re
import shutil
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from assistant.answer import Answer, Assistant, message_text
from assistant.core.config import Config
from assistant.core.corrections import trains_on
from assistant.core.jsonl import read_jsonl
from assistant.core.manifest import latest_artifact, read_manifest, sha256_file
from assistant.core.modes import Mode
from assistant.feedback import append_feedback, feedback_record
from assistant.pipeline_tab import build_pipeline_tab
from assistant.tune_report import latest_tune

UPLOAD_TYPES = (".md", ".markdown", ".txt", ".pdf", ".html", ".htm", ".docx")
_MAX_NAME_BYTES = 200
SNIPPET_CHARS = 700
PAIR_COLUMNS = ["type", "question", "answer", "doc_id"]
SHOWN_PAIRS = 200


# --- formatting -------------------------------------------------------------------------------

def format_stats(answer: Answer) -> str:
    parts = [f"**{answer.mode}**", f"{answer.latency_s:.2f} s", f"{answer.tokens} tokens"]
    if answer.tokens_per_s:
        parts.append(f"{answer.tokens_per_s:.1f} tokens/s")
    if answer.first_token_s is not None:
        parts.append(f"first token {answer.first_token_s:.2f} s")
    return " · ".join(parts)


def format_sources(answer: Answer) -> str:
    """Stats, then every numbered context block, cited ones marked."""
    lines = [format_stats(answer)]
    if answer.note:
        lines.append(f"> **Note:** {answer.note}")
    if not answer.hits:
        lines.append("_No retrieved sources on this path._" if not Mode(answer.mode).retrieves
                     else "_No sources._")
    cited = set(answer.cited)
    for n, hit in enumerate(answer.hits, 1):
        # Headings inside a chunk would outshout the panel's own; bold is enough.
        text = re.sub(r"^#{1,6}\s*(.+)$", r"**\1**", hit.chunk.text.strip(), flags=re.MULTILINE)
        if len(text) > SNIPPET_CHARS:
            text = text[:SNIPPET_CHARS].rstrip() + " …"
        quoted = "\n".join(f"> {line}" for line in text.splitlines())
        mark = " · **cited**" if n in cited else ""
        lines.append(f"**[{n}] {hit.citation}**{mark}  \n`{hit.chunk.source}` · score {hit.score:.3f}\n\n{quoted}")
    return "\n\n".join(lines)


def model_history(chat: list[dict]) -> list[dict]:
    """The conversation as the model should see it: notes (messages with a title) left out."""
    return [{"role": m["role"], "content": message_text(m.get("content"))} for m in chat or []
            if not (m.get("metadata") or {}).get("title")]


# --- chat and side by side ---------------------------------------------------------------------

def respond(assistant: Assistant, message: str, chat: list[dict], mode: str) -> Iterator[tuple]:
    """Stream one answer into the conversation; yields (conversation, sources, cleared textbox, the
    finished answer for the feedback buttons: {"question", "answer", "adapter"}, None until it is done)."""
    history = model_history(chat)
    # Show what the model reads: a 100 KB paste would otherwise travel back and forth on every turn.
    limit = assistant.cfg.answer.max_question_chars
    typed = message if len(message or "") <= limit else message[:limit] + " …"
    shown = [*(chat or []), {"role": "user", "content": typed or " "}, {"role": "assistant", "content": ""}]
    text = ""
    for item in assistant.stream(message, mode, history):
        if isinstance(item, str):
            text += item
            shown[-1] = {"role": "assistant", "content": text}
            yield shown, f"_Answering on **{mode}**…_", "", None
            continue
        shown[-1] = {"role": "assistant", "content": item.text}
        if item.note:
            shown.insert(-1, {"role": "assistant", "content": item.note, "metadata": {"title": "Note"}})
        adapter = assistant.adapter.name if assistant.adapter and Mode(mode).tuned else None
        yield shown, format_sources(item), "", {"question": message, "answer": item, "adapter": adapter}


def mark_answer(cfg: Config, right: bool, last: dict | None, correction: str) -> tuple[str, str]:
    """Append the verdict on the newest answer to the feedback file; returns (note, cleared correction)."""
    if not last:
        return "Ask a question first, then mark its answer right or wrong.", correction
    record = feedback_record(last["question"], last["answer"], last["adapter"], right, correction)
    path = append_feedback(cfg, record)
    note = f"Marked **{record['verdict']}** ({record['mode']}) in `{path}`."
    if record["correction"] and trains_on(record["question"], cfg.synth.feedback_fraction):
        note += " Your correction becomes a training pair at the next `assistant synth`."
    elif record["correction"]:
        note += " Your correction becomes an evaluation question: `assistant eval --questions feedback`."
    return note, ""


def compare(assistant: Assistant, question: str) -> Iterator[list[str]]:
    """The same question on every path in turn; yields an answer and a sources cell per path."""
    cells = ["" for _ in Mode for _ in (0, 1)]
    for i, mode in enumerate(Mode):
        text = ""
        cells[2 * i + 1] = "_answering…_"
        for item in assistant.stream(question, mode):
            if isinstance(item, str):
                text += item
                cells[2 * i] = text
            else:
                cells[2 * i], cells[2 * i + 1] = item.text, format_sources(item)
            yield list(cells)


# --- knowledge --------------------------------------------------------------------------------

def upload_folder(cfg: Config) -> Path:
    return cfg.home / "uploads"


def safe_upload_name(name: str) -> str | None:
    """A plain file name for an upload, or None. Folders in the name are dropped, so
    '../../x.md' becomes 'x.md': an upload can only land in the upload folder. Letters of every
    script are kept ('отчёт.md'); other characters become '_'."""
    base = Path(unicodedata.normalize("NFC", name).replace("\\", "/")).name
    base = re.sub(r"[^\w.-]+", "_", base).lstrip("._")
    stem, suffix = Path(base).stem, Path(base).suffix
    while len((stem + suffix).encode()) > _MAX_NAME_BYTES:   # file systems stop at 255 bytes
        stem = stem[:-1]
    base = stem + suffix
    return base if stem and suffix.lower() in UPLOAD_TYPES else None


def upload_limit_bytes(cfg: Config) -> int:
    """index.max_file_mb in bytes, counted as the indexer counts (1 MB = 10^6 bytes), so a file accepted
    here is never refused there as too big."""
    return int(cfg.index.max_file_mb * 1_000_000)


def store_uploads(cfg: Config, uploaded: list[str]) -> tuple[list[Path], list[str]]:
    """Copy accepted uploads under the workspace; returns (stored paths, one-line notes and problems).
    No upload overwrites another: a name already taken by different content gets a number
    ('report-2.md'); the same content uploaded again is stored once."""
    folder = upload_folder(cfg).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    limit = upload_limit_bytes(cfg)
    stored, problems = [], []
    for temp in uploaded or []:
        temp = Path(temp)
        name = safe_upload_name(temp.name)
        size = temp.stat().st_size
        if name is None:
            problems.append(f"{temp.name}: not a supported type ({', '.join(UPLOAD_TYPES)}) - skipped")
        elif size > limit:
            problems.append(f"{temp.name}: {size:,} bytes is over the {cfg.index.max_file_mb:g} MB limit "
                            f"({limit:,} bytes; index.max_file_mb) - skipped")
        else:
            target = _store_one(temp, folder, name)
            if target.name != name:
                problems.append(f"{temp.name}: another upload is already named {name}; stored as {target.name}")
            if target not in stored:
                stored.append(target)
    return stored, problems


def _store_one(temp: Path, folder: Path, name: str) -> Path:
    """`temp` copied to the first free name in `folder` (name, name-2, ...), or the file there with its content."""
    digest = sha256_file(temp)
    stem, suffix = Path(name).stem, Path(name).suffix
    for n in itertools.count(1):
        target = folder / (name if n == 1 else f"{stem}-{n}{suffix}")
        if target.exists():
            if sha256_file(target) == digest:
                return target
            continue
        scratch = folder / f".{target.name}.partial"
        shutil.copyfile(temp, scratch)
        scratch.replace(target)
        return target
    raise AssertionError("itertools.count never ends")


def knowledge_status(cfg: Config) -> str:
    manifest = read_manifest(cfg.kb_dir)
    if manifest is None:
        return f"No knowledge base yet at `{cfg.kb_dir}`: upload documents below, or run `assistant index`."
    metrics = manifest.get("metrics", {})
    uploads = sorted(p.name for p in upload_folder(cfg).glob("*") if not p.name.startswith("."))
    facts = ", ".join(f"{k}: {v}" for k, v in metrics.items() if isinstance(v, (int, float)))
    return (f"Knowledge base `{cfg.kb_dir}` built {manifest.get('created', '?')}; {facts or 'no figures'}.\n\n"
            f"Uploaded documents ({len(uploads)}): {', '.join(uploads) or 'none'}.")


def add_documents(assistant: Assistant, uploaded: list[str], progress=None) -> str:
    """Store the uploads, then bring the index in line with the corpus plus every upload. Every upload
    that ends up out of the index is listed with the reason; one the indexer cannot read is not kept."""
    from indexing.store import build_index

    cfg = assistant.cfg
    stored, problems = store_uploads(cfg, uploaded)
    lines = [f"- {p}" for p in problems]
    if stored:
        if progress is not None:
            progress(0, desc="Indexing")
        report = build_index(cfg, paths=[cfg.corpus, upload_folder(cfg)])
        assistant.reload_knowledge()
        skipped = {Path(item["path"]).resolve(): item["reason"] for item in report.skipped}
        refused = [path for path in stored if path in skipped]
        for path in refused:
            path.unlink(missing_ok=True)
            lines.append(f"- {path.name}: {skipped.pop(path)} - not added")
        lines += [f"- {path} (corpus): {reason} - skipped" for path, reason in skipped.items()]
        lines.insert(0, f"Stored {len(stored) - len(refused)} of {len(uploaded)} file(s) under `{upload_folder(cfg)}` "
                        f"and reindexed: {report.chunks_added} chunks added, {report.chunks_removed} removed, "
                        f"{report.seconds} s.")
    elif not problems:
        lines.append("Choose one or more documents first.")
    return "\n".join(lines)


# --- dataset and evaluation ---------------------------------------------------------------------

def pair_row(record: dict) -> dict:
    """A pair as the dataset browser shows it: the question from its metadata, not from the rendered prompt."""
    messages = record.get("messages", [])
    answer = next((message_text(m["content"]) for m in reversed(messages) if m.get("role") == "assistant"), "")
    meta = record.get("meta", {})
    return {"type": meta.get("type", ""), "question": meta.get("question", "").strip(), "answer": answer,
            "doc_id": meta.get("doc_id", "")}


def load_pairs(cfg: Config, split: str) -> tuple[Path | None, list[dict]]:
    folder = latest_artifact(cfg.datasets_dir) if cfg.datasets_dir.exists() else None
    path = folder / f"{split}.jsonl" if folder else None
    if path is None or not path.exists():
        return folder, []
    return folder, [pair_row(record) for _, record in read_jsonl(path)]


def search_pairs(cfg: Config, split: str, query: str) -> tuple[str, list[list[str]]]:
    folder, rows = load_pairs(cfg, split)
    if folder is None:
        return "No dataset yet: run `assistant synth` (after `assistant index`).", []
    needle = (query or "").strip().lower()
    found = [r for r in rows if not needle or needle in " ".join(r.values()).lower()]
    summary = (f"Dataset `{folder.name}` · {split}: {len(found)} of {len(rows)} pairs"
               f"{' match ' + repr(query) if needle else ''}; showing up to {SHOWN_PAIRS}.")
    return summary, [[r[c] for c in PAIR_COLUMNS] for r in found[:SHOWN_PAIRS]]


def latest_report(cfg: Config) -> tuple[str, list[str], dict | None]:
    """(report Markdown, plot paths, summary) of the newest evaluation, or a plain 'none yet'."""
    folder = latest_artifact(cfg.evals_dir) if cfg.evals_dir.exists() else None
    if folder is None:
        return ("No evaluation report yet: run `assistant eval` (after `assistant train`) to score "
                "base, rag, offline and hybrid side by side.", [], None)
    report = folder / "report.md"
    text = report.read_text(encoding="utf-8") if report.exists() else f"`{folder}` has no report.md."
    # Images are shown in the gallery; Markdown links to local files would not load in the browser.
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", text)
    summary_path = folder / "summary.json"
    summary = json.loads(summary_path.read_text(encoding="utf-8")) if summary_path.exists() else None
    return f"_Report `{folder}`_\n\n{text}", [str(p) for p in sorted(folder.glob("*.png"))], summary


def plots_html(paths: list[str]) -> str:
    """The plots inlined as base64, so the browser needs no file access to the workspace."""
    images = [f'<figure style="margin:0;flex:1 1 420px;max-width:640px"><img alt="{Path(p).stem}" style="width:100%" '
              f'src="data:image/png;base64,{base64.b64encode(Path(p).read_bytes()).decode()}"></figure>' for p in paths]
    return f'<div style="display:flex;flex-wrap:wrap;gap:16px">{"".join(images)}</div>' if images else ""


# --- layout ---------------------------------------------------------------------------------------

def app_header(assistant: Assistant) -> str:
    cfg = assistant.cfg
    adapter_line = (f"adapter `{assistant.adapter}`" if assistant.has_adapter
                    else "no adapter yet (offline and hybrid say how to make one)")
    return f"## Domain assistant\nModel `{cfg.base_model}` · {adapter_line} · knowledge base `{cfg.kb_dir}`"


def build_app(assistant: Assistant) -> gr.Blocks:
    cfg = assistant.cfg
    with gr.Blocks(title="Domain assistant") as app:
        header = gr.Markdown(app_header(assistant), elem_id="header")
        with gr.Tab("Chat", id="chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    mode = gr.Radio([m.value for m in Mode], value="hybrid", label="Path",
                                    info=" · ".join(f"{m}: {m.help}" for m in Mode), elem_id="mode")
                    chatbot = gr.Chatbot(label="Conversation", height=460, elem_id="chatbot")
                    with gr.Row():
                        message = gr.Textbox(placeholder="Ask about the documents…", show_label=False,
                                             scale=5, elem_id="message", max_lines=6)
                        send = gr.Button("Send", variant="primary", scale=1, elem_id="send")
                    gr.ClearButton([chatbot, message], value="New conversation")
                    with gr.Row():
                        right = gr.Button("Right", size="sm", scale=1, elem_id="feedback-right")
                        wrong = gr.Button("Wrong", size="sm", scale=1, elem_id="feedback-wrong")
                        correction = gr.Textbox(placeholder="The right answer (optional): it becomes an evaluation "
                                                            "question", show_label=False, scale=5,
                                                elem_id="feedback-correction")
                    feedback_note = gr.Markdown(elem_id="feedback-result")
                with gr.Column(scale=2):
                    sources = gr.Markdown("Sources for each answer appear here.", elem_id="sources")
            last_answer = gr.State(None)
            # Answers stream concurrently: the generation loop batches them (assistant/batching.py).
            chat_io = dict(fn=functools.partial(respond, assistant), inputs=[message, chatbot, mode],
                           outputs=[chatbot, sources, message, last_answer],
                           concurrency_limit=cfg.answer.max_batch_rows)
            send.click(**chat_io, api_name="respond")
            message.submit(**chat_io, api_name=False)
            for button, verdict in ((right, True), (wrong, False)):
                button.click(functools.partial(mark_answer, cfg, verdict), [last_answer, correction],
                             [feedback_note, correction], api_name=False)

        with gr.Tab("Side by side", id="compare"):
            with gr.Row():
                question = gr.Textbox(placeholder="One question, answered on all four paths", show_label=False,
                                      scale=5, elem_id="compare-question")
                ask_all = gr.Button("Ask all four", variant="primary", scale=1, elem_id="compare-send")
            cells = []
            with gr.Row():
                for m in Mode:
                    with gr.Column(min_width=220):
                        gr.Markdown(f"### {m}\n_{m.help}_")
                        cells.append(gr.Markdown(elem_id=f"compare-{m}-answer"))
                        cells.append(gr.Markdown(elem_id=f"compare-{m}-sources"))
            ask_all.click(functools.partial(compare, assistant), [question], cells, api_name="compare",
                          concurrency_limit=cfg.answer.max_batch_rows)

        with gr.Tab("Pipeline", id="pipeline"):
            build_pipeline_tab(assistant, header, functools.partial(app_header, assistant))

        with gr.Tab("Knowledge", id="knowledge"):
            status = gr.Markdown(elem_id="knowledge-status")
            files = gr.File(label=f"Documents ({', '.join(UPLOAD_TYPES)}; up to {cfg.index.max_file_mb:g} MB each)",
                            file_count="multiple", file_types=list(UPLOAD_TYPES), elem_id="upload")
            reindex = gr.Button("Add and reindex", variant="primary", elem_id="reindex")
            outcome = gr.Markdown(elem_id="reindex-result")

            def on_reindex(uploaded, progress=gr.Progress(track_tqdm=True)):
                return add_documents(assistant, uploaded, progress), knowledge_status(cfg)

            reindex.click(on_reindex, [files], [outcome, status], api_name=False)

        with gr.Tab("Dataset", id="dataset"):
            with gr.Row():
                split = gr.Radio(["train", "validation"], value="train", label="Split", scale=1)
                query = gr.Textbox(label="Search", placeholder="words in the question, answer or document id", scale=3)
            pairs_summary = gr.Markdown(elem_id="dataset-summary")
            table = gr.Dataframe(headers=PAIR_COLUMNS, wrap=True, interactive=False, elem_id="dataset-table")
            show_pairs = dict(fn=lambda s, q: search_pairs(cfg, s, q), inputs=[split, query],
                              outputs=[pairs_summary, table], api_name=False)
            split.change(**show_pairs)
            query.submit(**show_pairs)

        with gr.Tab("Evaluation", id="evaluation"):
            refresh = gr.Button("Reload the newest report", size="sm")
            report = gr.Markdown(elem_id="eval-report")
            plots = gr.HTML(elem_id="eval-plots")
            summary = gr.JSON(label="summary.json", open=False)
            tune_report = gr.Markdown(elem_id="tune-report")      # the newest `assistant tune`, when there is one
            tune_plots = gr.HTML(elem_id="tune-plots")

            def show_report():
                text, paths, figures = latest_report(cfg)
                tune_text, tune_paths = latest_tune(cfg)
                return text, plots_html(paths), figures, tune_text, plots_html(tune_paths)

            shown = [report, plots, summary, tune_report, tune_plots]
            refresh.click(show_report, None, shown, api_name=False)

        app.load(lambda: (knowledge_status(cfg), *search_pairs(cfg, "train", ""), *show_report()),
                 None, [status, pairs_summary, table, *shown], api_name=False)
    return app


def launch(cfg: Config, host: str = "127.0.0.1", port: int = 7860, auth: tuple[str, str] | None = None,
           block: bool = True, assistant: Assistant | None = None):
    """Start the app; with `block=False` returns (app, local URL) and keeps serving in the background."""
    app = build_app(assistant or Assistant(cfg))
    app.queue(default_concurrency_limit=1)
    _, url, _ = app.launch(
        server_name=host, server_port=port, auth=auth, share=False, prevent_thread_lock=not block,
        max_file_size=upload_limit_bytes(cfg),
        theme=gr.themes.Soft(), show_error=True, quiet=not block)
    return app, url
