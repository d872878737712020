"""Indexing: ingest -> chunk -> embed -> Chroma store -> retrieve."""
