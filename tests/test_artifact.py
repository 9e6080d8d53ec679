"""Artifact directories: manifest contents, atomic writes, refusal to clobber, version checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

import snnc
from snnc.backends import base
from snnc.compiler import ir

from .conftest import REPO

EXAMPLE = REPO / "examples" / "digits_if.nir"


def test_manifest_records_backend_version_target_and_hashes(tmp_path):
    artifact = snnc.compile(EXAMPLE, target="cpu", out_dir=tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["backend"] == "cpu"
    assert manifest["snnc_version"] == snnc.__version__
    assert manifest["target"] == "cpu"
    assert manifest["graph_hash"] == ir.graph_hash(artifact.graph)
    assert set(manifest["files"]) == {"graph.npz"}
    assert len(manifest["files"]["graph.npz"]) == 64


def test_write_artifact_refuses_a_foreign_non_empty_directory(tmp_path):
    target = tmp_path / "mine"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    graph = snnc.compile(EXAMPLE, out_dir=tmp_path / "a").graph
    with pytest.raises(base.ArtifactError, match="exists and is not an snnc artifact"):
        base.write_artifact(target, "cpu", graph, "cpu", {})
    assert (target / "thesis.tex").read_text() == "precious"


def test_recompiling_replaces_the_artifact_and_leaves_no_temporaries(tmp_path):
    out = tmp_path / "art"
    snnc.compile(EXAMPLE, out_dir=out)
    (out / "stale.txt").write_text("old")
    snnc.compile(EXAMPLE, out_dir=out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    graph = snnc.compile(EXAMPLE, out_dir=tmp_path / "a").graph

    def disk_full(path):
        raise OSError("No space left on device")

    monkeypatch.setattr(base, "_sha256", disk_full)
    with pytest.raises(OSError, match="No space left"):
        base.write_artifact(tmp_path / "b", "cpu", graph, "cpu", {"extra.bin": b"123"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]


def test_unknown_artifact_format_and_missing_files_are_refused(tmp_path):
    out = tmp_path / "art"
    snnc.compile(EXAMPLE, out_dir=out)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "graph.npz").unlink()
    with pytest.raises(base.ArtifactError, match="file 'graph.npz' listed in the manifest is missing"):
        snnc.load(out)
    manifest["format_version"] = 7
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(base.ArtifactError, match="artifact format 7 is not supported"):
        snnc.load(out)
    with pytest.raises(base.ArtifactError, match="not an snnc artifact"):
        snnc.load(tmp_path)


def test_loaded_artifact_runs_like_the_compiled_one(tmp_path):
    artifact = snnc.compile(EXAMPLE, out_dir=tmp_path / "art")
    with np.load(REPO / "examples" / "digits_test.npz") as data:
        stimulus = {"input": data["input"][:5]}
    first = artifact.run(stimulus)
    again = snnc.load(tmp_path / "art").run(stimulus)
    for name in first:
        assert first[name] == again[name]
