"""Ingest: find the documents under the given paths and read each into plain text with its metadata.

    python -m indexing.ingest corpora/finance/docs     # lists what would be indexed, and what is skipped

Markdown and plain text are read here (strict UTF-8, or UTF-16 with a byte-order mark; YAML front matter
stripped but its id/title kept);
PDF through pypdf (page by page), DOCX through llama-index's DocxReader (docx2txt); HTML through BeautifulSoup with its
headings turned into Markdown headings, so the chunker keeps the section path for every format.
A file that cannot be read raises `UnreadableFile` with a one-line reason that says what to do.

A document's id is its front-matter `id`, else its path relative to the corpus without the suffix
(`policies/travel`), so same-named files in different folders stay apart. Documents are data: the
model's control tokens (`<start_of_turn>` and the like) are removed from their text here, before
chunking, so neither retrieval nor the synthetic training pairs ever carry one.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from assistant.core.errors import UserError

SUPPORTED = {".md": "markdown", ".markdown": "markdown", ".txt": "text", ".pdf": "pdf",
             ".html": "html", ".htm": "html", ".docx": "docx"}
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
# Gemma's special tokens: written literally in a document or a message, the tokenizer would read them as
# real turn boundaries (a forged system or model turn). As data they must be inert.
_CONTROL_TOKEN = re.compile(r"<(?:start_of_turn|end_of_turn|bos|eos|pad|unk|mask|start_of_image|end_of_image"
                            r"|image_soft_token)>")


class UnreadableFile(UserError):
    """A document that cannot be indexed; str() is the one-line reason."""


class MissingPath(UserError, FileNotFoundError):
    """A file or folder given to index does not exist."""


@dataclass
class SourceDocument:
    """One file's text, split into pages (one page for everything but PDF)."""
    doc_id: str                 # front-matter id, else set by read_document
    title: str
    source: str
    format: str                 # "markdown" | "text" | "pdf" | "html" | "docx"
    pages: list[tuple[int | None, str]] = field(default_factory=list)   # (page number or None, text)


def strip_control_tokens(text: str) -> str:
    """`text` without control tokens, removed until none is left: one pass would turn
    `<start_of_<eos>turn>` into a real `<start_of_turn>`."""
    while True:
        stripped = _CONTROL_TOKEN.sub("", text)
        if stripped == text:
            return text
        text = stripped


def find_documents(paths: list[Path], skipped: list[dict[str, str]] | None = None) -> list[Path]:
    """Every supported file under `paths`, sorted, as absolute paths with symbolic links kept (a linked
    file is reported under its own name). Hidden files and other types inside folders are ignored; a
    file named explicitly is returned whatever its type, so an unsupported one is reported. Folders that
    cannot be listed and links that lead nowhere go to `skipped` ({"path", "reason"}), or to stderr."""
    problems: list[dict[str, str]] = [] if skipped is None else skipped
    found: dict[Path, Path] = {}       # real file -> the first path that reached it
    for path in map(Path, paths):
        if path.is_dir():
            files = _walk_folder(path.absolute(), problems)
        elif path.exists():
            files = [path.absolute()]
        else:
            raise MissingPath(f"{path}: no such file or folder; check the path given to `assistant index`")
        for file in sorted(files):
            # Two links to one file are one document.
            found.setdefault(file.resolve(), file)
    if skipped is None:
        for problem in problems:
            print(f"skipped {problem['path']}: {problem['reason']}", file=sys.stderr)
    return sorted(found.values())


def _walk_folder(root: Path, problems: list[dict[str, str]]) -> list[Path]:
    """Supported files under `root`; linked folders are followed once each, so a link loop ends."""
    files, visited, folders = [], set(), [root]
    while folders:
        folder = folders.pop()
        real = folder.resolve()
        if real in visited:
            continue
        visited.add(real)
        try:
            entries = list(os.scandir(folder))
        except OSError as err:
            problems.append({"path": str(folder), "reason": f"folder cannot be read ({err.strerror or err}); "
                                                          "fix its permissions or leave it out"})
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.startswith("."):
                continue
            if path.is_dir():   # pathlib's, which reads a link loop as 'no'
                folders.append(path)
            elif path.suffix.lower() not in SUPPORTED:
                continue
            elif path.is_file():
                files.append(path)
            elif path.is_symlink():
                problems.append({"path": str(path), "reason": "symbolic link to nothing (broken or a loop); "
                                                              "fix the link or remove it"})
    return files


def document_id(path: Path, roots: list[Path]) -> str:
    """The path relative to the first root that holds it, without the suffix (`policies/travel`); the
    stem for a file under none of them."""
    for root in roots:
        try:
            return Path(path).absolute().relative_to(Path(root).absolute()).with_suffix("").as_posix()
        except ValueError:
            continue
    return Path(path).stem


def read_document(path: Path, max_file_mb: float, doc_id: str | None = None) -> SourceDocument:
    """Read one file, or raise UnreadableFile saying why it was skipped. `doc_id` (default: the file's
    stem) is used unless the file's front matter gives one."""
    path = Path(path)
    kind = SUPPORTED.get(path.suffix.lower())
    if kind is None:
        raise UnreadableFile(f"unsupported file type {path.suffix or '(none)'!r}; "
                             f"convert it to one of {', '.join(sorted(SUPPORTED))}")
    size_mb = path.stat().st_size / 1e6
    if size_mb > max_file_mb:
        raise UnreadableFile(f"{size_mb:.1f} MB is over the {max_file_mb:g} MB limit; "
                             "split the file or raise --max-file-mb (index.max_file_mb)")
    if path.stat().st_size == 0:
        raise UnreadableFile("empty file (0 bytes); add content or remove it")
    reader = {"markdown": _read_markdown, "text": _read_markdown, "pdf": _read_pdf,
              "html": _read_html, "docx": _read_docx}[kind]
    document = reader(path)
    document.format = kind
    document.doc_id = document.doc_id or doc_id or path.stem
    document.title = strip_control_tokens(document.title)
    document.pages = [(page, strip_control_tokens(text)) for page, text in document.pages]
    if not any(text.strip() for _, text in document.pages):
        raise UnreadableFile("no text found (empty, or a scanned image without a text layer); "
                             "add text or export it with a text layer")
    return document


def _decode_text(path: Path) -> str:
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            text = data.decode("utf-16")
        except UnicodeDecodeError:
            raise UnreadableFile("broken UTF-16 (it starts with a UTF-16 byte-order mark but does not decode); "
                                 "re-save it as UTF-8") from None
        if "\x00" in text:
            raise UnreadableFile("binary data in a text file (NUL characters); is it really text? remove or rename it")
        return text
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary data in a text file (NUL bytes), or UTF-16 without a byte-order mark; "
                             "re-save it as UTF-8, or remove it if it is not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise UnreadableFile(f"not UTF-8 (byte 0x{data[err.start]:02x} at offset {err.start}); "
                             "re-save it as UTF-8") from None


def split_front_matter(text: str) -> tuple[dict, str]:
    """(YAML front matter, the text after it) of a Markdown file; ({}, text) when it has none."""
    match = _FRONT_MATTER.match(text)
    if not match:
        return {}, text
    try:
        loaded = yaml.safe_load(match.group(1))
    except yaml.YAMLError as err:
        raise UnreadableFile(f"broken YAML front matter ({str(err).splitlines()[0]}); fix the header") from None
    return (loaded if isinstance(loaded, dict) else {}), text[match.end():]


def _read_markdown(path: Path) -> SourceDocument:
    front, text = split_front_matter(_decode_text(path))
    title = str(front.get("title") or _first_heading(text) or path.stem)
    return SourceDocument(str(front.get("id") or ""), title, str(path), "markdown", [(None, linearise_wide_tables(strip_link_targets(text)))])


_LINK = re.compile(r"!?\[([^\]]*)\]\((?:[^()\s]|\([^()]*\))*(?:\s+\"[^\"]*\")?\)")


def strip_link_targets(text: str) -> str:
    """`[Paid Leave Oregon](https://...)` -> `Paid Leave Oregon`: a URL is dozens of tokens that the
    embedder reads as noise and a small model copies into answers; the words carry the meaning."""
    return _LINK.sub(lambda m: m.group(1), text)


WIDE_ROW_CHARS = 300


def linearise_wide_tables(text: str) -> str:
    """A Markdown table with a row longer than WIDE_ROW_CHARS becomes one section per column, each cell a
    line `- row label: cell` under a heading that names the column. A wide table is a matrix such as a
    career ladder (levels across, skills down); cut into chunks by rows, a chunk holds a few cells cut off
    from the header that says whose they are. A reader asks about one column ("what does a Lead Programmer
    do?"), so each column becomes a section of its own, cited by its header. Narrow tables stay tables:
    they fit in a chunk with their header."""
    lines, out, n, level = text.split("\n"), [], 0, 1
    while n < len(lines):
        block = []
        while n < len(lines) and lines[n].lstrip().startswith("|"):
            block.append(lines[n])
            n += 1
        if not block:
            heading = re.match(r"^\s{0,3}(#{1,6})\s", lines[n])
            level = len(heading.group(1)) if heading else level
            out.append(lines[n])
            n += 1
            continue
        is_table = len(block) >= 2 and re.fullmatch(r"\s*\|?[\s:|-]+\|?\s*", block[1]) is not None
        if not is_table or max(len(row) for row in block) <= WIDE_ROW_CHARS:
            out.extend(block)
            continue
        header, rows = _cells(block[0]), [_cells(row) for row in block[2:]]
        for column, name in enumerate(header[1:], 1):
            out += ["", f"{'#' * min(level + 1, 6)} {_unemphasise(name)}", ""]
            group = ""
            for cells in rows:
                label = _unemphasise(cells[0]) if cells else ""
                value = cells[column].strip() if column < len(cells) else ""
                if not any(c.strip() for c in cells[1:]):     # a row that only names a group, such as "**Skill**"
                    group = label
                elif value:
                    out.append(f"- {group + ', ' if group else ''}{label + ': ' if label else ''}{value}")
        out.append("")
    return "\n".join(out)


def _cells(row: str) -> list[str]:
    return [c.strip() for c in row.strip().strip("|").split("|")]


def _unemphasise(text: str) -> str:
    return text.strip().strip("*_").strip()


def _first_heading(text: str) -> str | None:
    match = re.search(r"^#\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return match.group(1) if match else None


def _read_pdf(path: Path) -> SourceDocument:
    # pypdf directly (it is what llama-index's PDFReader wraps, minus its three retries of a broken file).
    import logging

    import pypdf
    from pypdf.errors import PyPdfError

    logging.getLogger("pypdf").setLevel(logging.ERROR)   # its warnings repeat the reason we report

    try:
        reader = pypdf.PdfReader(path)
        pages = [(number, page.extract_text() or "") for number, page in enumerate(reader.pages, start=1)]
    except (PyPdfError, ValueError, OSError, KeyError) as err:
        raise UnreadableFile(f"corrupt or truncated PDF ({err}); re-export it") from None
    return SourceDocument("", _title_from_stem(path), str(path), "pdf", pages)


def _read_docx(path: Path) -> SourceDocument:
    import zipfile

    from llama_index.readers.file import DocxReader

    try:
        documents = DocxReader().load_data(path)
    except (zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UnreadableFile(f"not a valid DOCX file ({err}); re-save it from Word or LibreOffice") from None
    text = "\n\n".join(d.text for d in documents)
    return SourceDocument("", _title_from_stem(path), str(path), "docx", [(None, text)])


def _read_html(path: Path) -> SourceDocument:
    from bs4 import BeautifulSoup

    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise UnreadableFile("binary data in an HTML file (NUL bytes); remove or rename it")
    soup = BeautifulSoup(data, "html.parser")
    for tag in soup(["script", "style", "noscript", "nav", "footer"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else None
    # Headings become Markdown headings so the chunker keeps the section path.
    for level in range(1, 7):
        for heading in soup.find_all(f"h{level}"):
            heading.replace_with(f"\n\n{'#' * level} {heading.get_text(' ', strip=True)}\n\n")
    body = soup.body or soup
    for block in body.find_all(["p", "li", "tr", "div", "br"]):
        block.insert_after("\n")
    text = re.sub(r"\n\s*\n+", "\n\n", body.get_text()).strip()
    return SourceDocument("", title or _first_heading(text) or _title_from_stem(path), str(path), "html",
                          [(None, text)])


def _title_from_stem(path: Path) -> str:
    return path.stem.replace("-", " ").replace("_", " ").strip().capitalize()


if __name__ == "__main__":
    given = [Path(p) for p in sys.argv[1:]] or [Path("corpora/finance/docs")]
    for found in find_documents(given):
        try:
            doc = read_document(found, max_file_mb=20, doc_id=document_id(found, given))
            print(f"ok    {found}  id={doc.doc_id}  title={doc.title!r}  pages={len(doc.pages)}")
        except UnreadableFile as reason:
            print(f"skip  {found}: {reason}")
