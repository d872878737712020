"""Manifests and atomic artifact folders.

Every artifact folder (index, dataset, adapter, eval report) holds `manifest.json`:
what produced it, from which inputs (hashes), with which libraries and seed, and its
headline figures. A stage is up to date when the input hashes it would record now equal
the ones already recorded.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
_LIBRARIES = (
    "domain-assistant", "torch", "transformers", "peft", "trl", "accelerate", "datasets",
    "sentence-transformers", "llama-index-core", "chromadb", "ragas", "gradio",
)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_json(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, default=str).encode())


def sha256_files(paths: Iterable[Path], root: Path | None = None) -> str:
    """One hash over several files, their (relative) names included."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        name = path.relative_to(root) if root else path.name
        digest.update(str(name).encode() + b"\0" + sha256_file(path).encode())
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {"machine": platform.machine(), "cpus": os.cpu_count()}
    try:
        import torch

        from assistant.core.models import cpu_name, native_bf16

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["cpu"] = cpu_name()
        info["native_bf16"] = native_bf16()
    except ImportError:
        pass
    return info


def build_manifest(kind: str, *, inputs: dict[str, str], config: dict[str, Any], seed: int,
                   metrics: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "kind": kind,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "inputs": inputs,
        "config": config,
        "seed": seed,
        "versions": library_versions(),
        "hardware": hardware(),
        "metrics": metrics or {},
        **(extra or {}),
    }


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON through a temporary file and a rename, so a kill never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = Path(folder) / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(folder: Path) -> dict[str, Any] | None:
    path = Path(folder) / MANIFEST
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def is_up_to_date(folder: Path, inputs: dict[str, str]) -> bool:
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("inputs") == inputs


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a scratch folder that replaces `final` only when the block succeeds.

    A folder that exists is complete: a killed run leaves only `.<name>.partial`, which
    the next run clears.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    scratch = final.with_name(f".{final.name}.partial")
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    try:
        yield scratch
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    old = final.with_name(f".{final.name}.old")
    if final.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(scratch, final)
    shutil.rmtree(old, ignore_errors=True)


def latest_artifact(folder: Path) -> Path | None:
    """The newest complete artifact (a subfolder with a manifest) under `folder`, if any."""
    complete = [p for p in Path(folder).glob("*/" + MANIFEST) if not p.parent.name.startswith(".")]
    return max(complete, key=lambda p: p.stat().st_mtime).parent if complete else None
