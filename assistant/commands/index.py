"""Index documents into the knowledge base (a persistent Chroma store in the workspace).

    assistant index                              # the configured corpus (default: the shipped finance docs)
    assistant index docs/ notes/extra.pdf --prune
    assistant index --json                       # {"files", "chunks_added", ..., "skipped": [...], "seconds"}

Re-running is cheap: only new or changed chunks are embedded. Exit status 3 means some files were
skipped (each is listed with the reason and the fix); everything else was indexed.
"""
from __future__ import annotations

from pathlib import Path

HELP = "Index documents (Markdown, text, PDF, HTML, DOCX) into the knowledge base."
EXIT_SKIPPED = 3


def add_arguments(parser):
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                        help="Files or folders to index (default: --corpus).")
    parser.add_argument("--prune", action="store_true", help="Also remove the chunks of files that no longer exist.")
    parser.add_argument("--chunk-size", dest="index.chunk_size", type=int, help="Chunk size in embedding tokens.")
    parser.add_argument("--chunk-overlap", dest="index.chunk_overlap", type=int, help="Tokens shared by neighbouring chunks.")
    parser.add_argument("--max-file-mb", dest="index.max_file_mb", type=float, help="Skip files larger than this.")


def run(args, cfg):
    from assistant.cli import emit
    from indexing.store import build_index

    report = build_index(cfg, args.paths or None, prune=args.prune, progress=not args.json)
    lines = [f"Indexed {report.files - len(report.skipped)} of {report.files} files into "
             f"{cfg.chroma_url or cfg.kb_dir} in {report.seconds:.1f} s: "
             f"{report.chunks_added} chunks added, {report.chunks_unchanged} unchanged, "
             f"{report.chunks_removed} removed."]
    lines += [f"skipped {item['path']}: {item['reason']}" for item in report.skipped]
    emit(args, report.to_dict(), "\n".join(lines))
    return EXIT_SKIPPED if report.skipped else 0
