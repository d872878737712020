"""Store: build and update the knowledge base, a Chroma collection written through llama-index.

    python -m indexing.store corpora/finance/docs      # same as `assistant index corpora/finance/docs`

The store is reconciled, not rebuilt: every run reads and chunks the files, compares the chunk ids
(content hashes) with those already stored, embeds only the new ones (in batches, each saved as it
is done), then removes the old chunks of the files it read. So an unchanged corpus embeds nothing,
a changed file replaces exactly its old chunks, and a run killed at any point is finished by the
next one. A file that cannot be read keeps whatever it had in the store. `prune` removes the chunks
of files that no longer exist, unless the same chunk was read from another file in this run (a moved
or renamed file keeps its chunks, re-pointed at the new path). A chunk found in several files (copies)
is stored once, under the first of them in path order, so the stored source never flips between runs.

Layout: `<kb_dir>/chroma/` (a chromadb PersistentClient; or a `chroma run` server at
`--chroma-url`) and `<kb_dir>/manifest.json` (file hashes, embedder, chunking, counts).
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import numpy as np

from assistant.core.config import Config, ConfigError
from assistant.core.errors import UserError
from assistant.core.manifest import build_manifest, read_manifest, sha256_file, write_manifest
from assistant.core.records import Chunk

if TYPE_CHECKING:
    from chromadb.api.models.Collection import Collection

# What the embedder sees besides the text: the title and heading path help it place a short chunk;
# ids, paths and positions would only add noise to the vector.
EMBED_METADATA = ("title", "section")
_OTHER_METADATA = ("doc_id", "source", "page", "position")
_PAGE = 5000   # rows per Chroma read or write call


class IndexNotFound(UserError, FileNotFoundError):
    """No knowledge base where the config points; the message says how to build one."""


@dataclass
class IndexReport:
    files: int = 0
    chunks_added: int = 0
    chunks_unchanged: int = 0
    chunks_removed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)   # [{"path", "reason"}]
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def collection_name(cfg: Config) -> str:
    return cfg.index.collection


def open_collection(cfg: Config, *, create: bool = False) -> Collection:
    """The Chroma collection (embedded or on a server); IndexNotFound when absent and not creating."""
    import chromadb
    from chromadb.config import Settings
    from chromadb.errors import NotFoundError

    settings = Settings(anonymized_telemetry=False)
    if cfg.chroma_url:
        url = urlparse(cfg.chroma_url)
        client = chromadb.HttpClient(host=url.hostname or "localhost", port=url.port or 8000,
                                     ssl=url.scheme == "https", settings=settings)
        where = cfg.chroma_url
    else:
        if not create and not (cfg.kb_dir / "chroma").exists():
            raise IndexNotFound(f"no index at {cfg.kb_dir}; run `assistant index` first")
        client = chromadb.PersistentClient(path=str(cfg.kb_dir / "chroma"), settings=settings)
        where = str(cfg.kb_dir)
    try:
        collection = client.get_collection(collection_name(cfg))
    except NotFoundError:
        if create:
            # The embedder is recorded with the collection: vectors from two models cannot be mixed.
            return client.create_collection(collection_name(cfg), metadata={"embed_model": cfg.embed_model},
                                            configuration={"hnsw": {"space": "cosine",
                                                                    "ef_search": cfg.retrieve.search_ef}})
        raise IndexNotFound(f"no index at {where} (collection {collection_name(cfg)!r}); "
                            "run `assistant index` first") from None
    if (collection.configuration.get("hnsw") or {}).get("ef_search") != cfg.retrieve.search_ef:
        # A search setting, not part of the index: an index built before it (or with another value) takes it here.
        collection.modify(configuration={"hnsw": {"ef_search": cfg.retrieve.search_ef}})
    return collection


def chunk_to_node(chunk: Chunk, position: int, vector: np.ndarray | None = None):
    """A llama-index TextNode whose id is the chunk id; its source relation carries doc_id, which
    the Chroma store copies into the flat `doc_id` metadata field that filters use."""
    from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

    metadata = {"title": chunk.title, "section": chunk.section, "doc_id": chunk.doc_id,
                "source": chunk.source, "page": chunk.page, "position": position}
    return TextNode(id_=chunk.id, text=chunk.text, metadata=metadata,
                    embedding=None if vector is None else vector.tolist(),
                    excluded_embed_metadata_keys=list(_OTHER_METADATA),
                    excluded_llm_metadata_keys=list(_OTHER_METADATA),
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=chunk.doc_id)})


def embedding_text(chunk: Chunk) -> str:
    from llama_index.core.schema import MetadataMode

    return chunk_to_node(chunk, 0).get_content(metadata_mode=MetadataMode.EMBED)


def chunk_from_row(chunk_id: str, text: str, metadata: dict[str, Any]) -> Chunk:
    page = metadata.get("page")
    return Chunk(id=chunk_id, doc_id=str(metadata.get("doc_id", "")), text=text or "",
                 title=str(metadata.get("title", "")), section=str(metadata.get("section", "")),
                 source=str(metadata.get("source", "")), page=int(page) if page not in (None, "") else None)


def _stored_rows(collection: Collection) -> dict[str, dict[str, Any]]:
    """id -> flat metadata of every stored chunk, read page by page."""
    rows: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        got = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        rows.update(zip(got["ids"], got["metadatas"]))
        if len(got["ids"]) < _PAGE:
            return rows
        offset += _PAGE


def load_chunks(cfg: Config) -> list[Chunk]:
    """Every chunk in the store, ordered by document then reading position."""
    collection = open_collection(cfg)
    found: list[tuple[tuple, Chunk]] = []
    offset = 0
    while True:
        got = collection.get(include=["metadatas", "documents"], limit=_PAGE, offset=offset)
        for chunk_id, text, metadata in zip(got["ids"], got["documents"], got["metadatas"]):
            chunk = chunk_from_row(chunk_id, text, metadata)
            found.append(((chunk.doc_id, chunk.source, int(metadata.get("position") or 0), chunk_id), chunk))
        if len(got["ids"]) < _PAGE:
            break
        offset += _PAGE
    return [chunk for _, chunk in sorted(found, key=lambda pair: pair[0])]


def index_fingerprint(cfg: Config) -> str:
    """A hash of the stored chunk ids: it changes exactly when the indexed content changes."""
    ids = sorted(_stored_rows(open_collection(cfg)))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def build_index(cfg: Config, paths: list[Path] | None = None, prune: bool = False,
                progress: bool = True) -> IndexReport:
    """Bring the store in line with the files under `paths` (default: the configured corpus)."""
    from indexing.ingest import find_documents

    started = time.perf_counter()
    report = IndexReport()
    roots = [cfg.corpus, *(paths or [])]
    files = find_documents(list(paths) if paths else [cfg.corpus], report.skipped)
    collection = open_collection(cfg, create=True)
    _check_embedder(cfg, collection)

    # Step 1: read and chunk every file; a bad one is reported and keeps what it had in the store.
    report.files = len(files) + len(report.skipped)
    wanted, hashes = _read_and_chunk(cfg, files, roots, report, progress)

    # Step 2: compare with what the store holds. Each chunk id is placed once, at its first file.
    stored = _stored_rows(collection)
    placed: dict[str, tuple[Chunk, int]] = {}
    for chunks in wanted.values():
        for position, chunk in enumerate(chunks):
            placed.setdefault(chunk.id, (chunk, position))
    to_add = [placed[cid] for cid in placed if cid not in stored]
    stale = {cid for cid, meta in stored.items() if meta.get("source") in wanted and cid not in placed}
    if prune:
        stale |= {cid for cid, meta in stored.items()
                  if cid not in placed and not Path(str(meta.get("source", ""))).exists()}
    report.chunks_unchanged = len(placed) - len(to_add)

    # Step 3: add first, remove after, so a kill in between loses nothing the next run cannot finish.
    from llama_index.vector_stores.chroma import ChromaVectorStore

    vector_store = ChromaVectorStore.from_collection(collection)
    report.chunks_added = _embed_and_add(cfg, vector_store, to_add, progress)
    _refresh_moved(collection, placed, stored)
    for start in range(0, len(stale), _PAGE):
        vector_store.delete_nodes(sorted(stale)[start:start + _PAGE])
    report.chunks_removed = len(stale)

    report.seconds = round(time.perf_counter() - started, 2)
    _write_index_manifest(cfg, collection, hashes, report, prune)
    return report


def _read_and_chunk(cfg: Config, files: list[Path], roots: list[Path], report: IndexReport,
                    progress: bool) -> tuple[dict[str, list[Chunk]], dict[str, str]]:
    """source -> its chunks in reading order, and source -> file hash; bad files go to report.skipped.
    A document's id is its path relative to the first of `roots` that holds it (see ingest.document_id)."""
    from tqdm import tqdm

    from indexing.chunk import chunk_document
    from indexing.embed import load_tokenize
    from indexing.ingest import UnreadableFile, document_id, read_document

    tokenize = load_tokenize(cfg)
    wanted: dict[str, list[Chunk]] = {}
    hashes: dict[str, str] = {}
    for path in tqdm(files, desc="reading", unit="file", disable=not progress, file=sys.stderr):
        try:
            document = read_document(path, cfg.index.max_file_mb, document_id(path, roots))
        except (UnreadableFile, OSError) as reason:
            report.skipped.append({"path": str(path), "reason": str(reason)})
            continue
        wanted[str(path)] = chunk_document(document, chunk_size=cfg.index.chunk_size,
                                           chunk_overlap=cfg.index.chunk_overlap, tokenize=tokenize)
        hashes[str(path)] = sha256_file(path)
    return wanted, hashes


def _check_embedder(cfg: Config, collection: Collection) -> None:
    recorded = (collection.metadata or {}).get("embed_model")
    if recorded != cfg.embed_model:
        raise ConfigError(f"the index at {cfg.chroma_url or cfg.kb_dir} was embedded with {recorded!r}, "
                         f"not {cfg.embed_model!r}; pass --embed-model {recorded} or use another --workspace")


def _embed_and_add(cfg: Config, vector_store, to_add: list[tuple[Chunk, int]], progress: bool) -> int:
    """Embed the new chunks (each id once) batch by batch; each batch is in the store before the next is embedded."""
    if not to_add:
        return 0
    from tqdm import tqdm

    from indexing.embed import embed_texts, load_cached_embedder

    model = load_cached_embedder(cfg)
    step = cfg.index.embed_batch_size * 4   # a kill loses at most this many embeddings
    with tqdm(total=len(to_add), desc="embedding", unit="chunk", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(to_add), step):
            batch = to_add[start:start + step]
            vectors = embed_texts(model, [embedding_text(c) for c, _ in batch],
                                  batch_size=cfg.index.embed_batch_size, bf16=cfg.index.embed_bf16,
                                  progress=bar.update)
            vector_store.add([chunk_to_node(c, i, v) for (c, i), v in zip(batch, vectors)])
    return len(to_add)


def _refresh_moved(collection: Collection, placed: dict[str, tuple[Chunk, int]], stored: dict[str, dict]) -> None:
    """Unchanged chunks whose title, position or path changed get their metadata rewritten (no embedding)."""
    from llama_index.core.vector_stores.utils import node_to_metadata_dict

    ids, metadatas = [], []
    for chunk_id, (chunk, position) in placed.items():
        old = stored.get(chunk_id)
        if old is None:
            continue
        new = node_to_metadata_dict(chunk_to_node(chunk, position), remove_text=True, flat_metadata=True)
        new = {k: ("" if v is None else v) for k, v in new.items()}
        if any(old.get(k) != new[k] for k in ("title", "section", "source", "page", "position")):
            ids.append(chunk_id)
            metadatas.append(new)
    for start in range(0, len(ids), _PAGE):
        collection.update(ids=ids[start:start + _PAGE], metadatas=metadatas[start:start + _PAGE])


def _write_index_manifest(cfg: Config, collection: Collection, hashes: dict[str, str],
                          report: IndexReport, prune: bool) -> None:
    """File hashes of everything the store holds: earlier runs' files stay unless pruned or re-read."""
    previous = (read_manifest(cfg.kb_dir) or {}).get("inputs", {}).get("files", {})
    files = {**previous, **hashes}
    if prune:
        files = {path: digest for path, digest in files.items() if Path(path).exists()}
    ids = sorted(_stored_rows(collection))
    manifest = build_manifest(
        "index",
        inputs={"files": dict(sorted(files.items())), "embed_model": cfg.embed_model},
        config={"index": cfg.index.model_dump(), "embed_model": cfg.embed_model, "chroma_url": cfg.chroma_url,
                "collection": collection_name(cfg), "embed_metadata": list(EMBED_METADATA)},
        seed=cfg.seed,
        metrics={"chunks": len(ids), **{k: v for k, v in report.to_dict().items() if k != "skipped"},
                 "skipped": len(report.skipped)},
        extra={"fingerprint": hashlib.sha256("\n".join(ids).encode()).hexdigest()},
    )
    write_manifest(cfg.kb_dir, manifest)


if __name__ == "__main__":
    from assistant.core.config import load_config

    print(build_index(load_config(), [Path(p) for p in sys.argv[1:]] or None).to_dict())
