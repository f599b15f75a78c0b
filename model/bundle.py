"""The trained model bundle: a pipeline plus a manifest that says what produced it.

`manifest.json` is read and checked before the pickle is touched: a bundle
from another format or scikit-learn version, a corrupt file or a bundle
trained on other data is refused with a message that says what to run.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy
import scipy
import sklearn

from model.errors import BundleError

FORMAT = 1
MANIFEST = "manifest.json"
PIPELINE = "pipeline.joblib"
RETRAIN = "run `logmedic train` (or `make model`)"


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "scikit-learn": sklearn.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
        "joblib": joblib.__version__,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Bundle:
    pipeline: object
    manifest: dict

    @property
    def version(self) -> str:
        return f"lm{self.manifest['format']}-{self.manifest['training_data_hash'][:12]}"

    @property
    def threshold(self) -> float:
        return float(self.manifest["threshold"])

    @property
    def labels(self) -> list[str]:
        return list(self.manifest["labels"])


def save_bundle(directory: Path, pipeline, manifest: dict) -> Path:
    """Write the bundle next to its destination, then swap it in, so readers never see half of it."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".model-", dir=directory.parent))
    try:
        joblib.dump(pipeline, staging / PIPELINE, compress=3)
        manifest = {"format": FORMAT, **manifest, "libraries": library_versions(),
                    "pipeline_sha256": _sha256(staging / PIPELINE)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        if directory.exists():
            retired = directory.with_name(directory.name + ".old")
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(directory, retired)
            shutil.rmtree(retired, ignore_errors=True)
        os.replace(staging, directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def read_manifest(directory: Path) -> dict:
    """The manifest alone, checked for format and library versions."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise BundleError(f"no trained model in {directory}: {RETRAIN}")
    try:
        manifest = json.loads(path.read_text())
        found_format = manifest["format"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"the model manifest {path} is corrupt ({exc}): {RETRAIN}") from None
    if found_format != FORMAT:
        raise BundleError(f"the model in {directory} has format {found_format}, this logmedic reads {FORMAT}: {RETRAIN}")
    trained_with = manifest.get("libraries", {}).get("scikit-learn")
    if trained_with != sklearn.__version__:
        raise BundleError(
            f"the model in {directory} was trained with scikit-learn {trained_with}, "
            f"this environment has {sklearn.__version__}: {RETRAIN}")
    return manifest


def load_bundle(directory: Path, data_hash: str | None = None) -> Bundle:
    """Load and verify a bundle; with `data_hash`, also refuse one trained on other data."""
    directory = Path(directory)
    manifest = read_manifest(directory)
    if data_hash is not None and manifest.get("training_data_hash") != data_hash:
        raise BundleError(f"the model in {directory} is stale: training_data/ changed since it was trained: {RETRAIN}")
    path = directory / PIPELINE
    try:
        checksum = _sha256(path)
    except OSError as exc:
        raise BundleError(f"cannot read {path} ({exc.strerror}): {RETRAIN}") from None
    if checksum != manifest.get("pipeline_sha256"):
        raise BundleError(f"{path} is corrupt (checksum mismatch): {RETRAIN}")
    try:
        pipeline = joblib.load(path)
    except Exception as exc:  # a verified file that still fails to unpickle: report, do not crash start-up
        raise BundleError(f"{path} could not be loaded ({type(exc).__name__}): {RETRAIN}") from None
    return Bundle(pipeline, manifest)
