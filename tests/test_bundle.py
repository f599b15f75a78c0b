"""The model bundle is refused, with a message saying what to run, when it cannot be trusted."""

from __future__ import annotations

import json
import shutil

import pytest

from model import paths
from model.bundle import MANIFEST, PIPELINE, load_bundle
from model.diagnose import Diagnoser
from model.errors import BundleError
from model.samples import tree_hash


@pytest.fixture
def bundle_copy(model_dir, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy)
    return copy


def edit_manifest(directory, **changes):
    path = directory / MANIFEST
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        target, _, leaf = key.rpartition(".")
        (manifest[target] if target else manifest)[leaf] = value
    path.write_text(json.dumps(manifest))


def refused(directory, data_dir=paths.DATA_DIR) -> str:
    with pytest.raises(BundleError) as error:
        Diagnoser.load(data_dir, directory)
    message = str(error.value)
    assert "logmedic train" in message, message
    return message


def test_when_missing_then_refused(tmp_path):
    assert "no trained model" in refused(tmp_path / "nothing-here")


def test_when_manifest_corrupt_then_refused(bundle_copy):
    (bundle_copy / MANIFEST).write_text("{ not json")
    assert "corrupt" in refused(bundle_copy)


def test_when_pipeline_truncated_then_refused(bundle_copy):
    data = (bundle_copy / PIPELINE).read_bytes()
    (bundle_copy / PIPELINE).write_bytes(data[: len(data) // 2])
    assert "corrupt" in refused(bundle_copy)


def test_when_pipeline_missing_then_refused(bundle_copy):
    (bundle_copy / PIPELINE).unlink()
    assert "cannot read" in refused(bundle_copy)


def test_when_trained_with_another_scikit_learn_then_refused(bundle_copy):
    edit_manifest(bundle_copy, **{"libraries.scikit-learn": "0.24.2"})
    assert "scikit-learn 0.24.2" in refused(bundle_copy)


def test_when_other_format_then_refused(bundle_copy):
    edit_manifest(bundle_copy, format=99)
    assert "format 99" in refused(bundle_copy)


def test_when_training_data_changed_then_stale(bundle_copy, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(paths.DATA_DIR, data)
    (data / "samples" / "unknown" / "extra.log").write_text("Successfully built 1a2b3c\n")
    assert "stale" in refused(bundle_copy, data)


def test_when_labels_lack_an_entry_then_refused(bundle_copy):
    edit_manifest(bundle_copy, labels=["no-space-left", "made-up-category", "unknown"])
    assert "made-up-category" in refused(bundle_copy)


def test_manifest_says_what_produced_the_bundle(model_dir):
    manifest = json.loads((model_dir / MANIFEST).read_text())
    assert manifest["training_data_hash"] == tree_hash(paths.DATA_DIR)
    assert {"python", "scikit-learn", "numpy", "scipy", "joblib"} <= set(manifest["libraries"])
    assert 0.3 <= manifest["threshold"] <= 0.95
    assert "unknown" in manifest["labels"] and len(manifest["labels"]) == 22
    cv = manifest["cross_validation"]
    assert cv["unknown_given_category"] < 0.02
    assert set(cv["metrics"]) == set(manifest["labels"])


def test_a_good_bundle_loads(bundle_copy):
    bundle = load_bundle(bundle_copy, tree_hash(paths.DATA_DIR))
    assert bundle.version.startswith("lm1-")
