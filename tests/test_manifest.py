"""Artifact folders appear whole or not at all, and carry what made them."""
from __future__ import annotations

import pytest

from assistant.core.manifest import atomic_folder, build_manifest, is_up_to_date, latest_artifact, read_manifest, write_manifest


def test_atomic_folder_keeps_the_old_artifact_when_the_new_one_fails(tmp_path):
    target = tmp_path / "adapter"
    with atomic_folder(target) as scratch:
        (scratch / "weights").write_text("v1")
    with pytest.raises(RuntimeError):
        with atomic_folder(target) as scratch:
            (scratch / "weights").write_text("half")
            raise RuntimeError("killed")
    assert (target / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["adapter"]


def test_manifest_round_trip_and_freshness(tmp_path):
    folder = tmp_path / "runs" / "a"
    manifest = build_manifest("dataset", inputs={"index": "abc"}, config={"x": 1}, seed=3, metrics={"n": 2})
    write_manifest(folder, manifest)
    loaded = read_manifest(folder)
    assert loaded["seed"] == 3 and loaded["metrics"] == {"n": 2}
    assert "torch" in loaded["versions"] and loaded["versions"]["python"]
    assert is_up_to_date(folder, {"index": "abc"})
    assert not is_up_to_date(folder, {"index": "abd"})
    assert latest_artifact(tmp_path / "runs") == folder
