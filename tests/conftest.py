"""Shared fixtures: the trained engine, the Flask app → client chain, paths to shared corpora."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from model import paths
from model.diagnose import Diagnoser
from model.errors import BundleError

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
LOGHUB = SHARED / "corpora" / "loghub"
DEV_SET = SHARED / "dev-set"
SEED_NOTES = SHARED / "seed" / "000_c8a4b1c00a53f50a.txt"


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory) -> Path:
    """The project's trained bundle; trained into a temporary directory when it is missing or stale."""
    try:
        Diagnoser.load(paths.DATA_DIR, paths.MODEL_DIR)
        return paths.MODEL_DIR
    except BundleError:
        from model.training import train

        directory = tmp_path_factory.mktemp("model")
        train(paths.DATA_DIR, directory)
        return directory


@pytest.fixture(scope="session")
def diagnoser(model_dir) -> Diagnoser:
    return Diagnoser.load(paths.DATA_DIR, model_dir)


@pytest.fixture(scope="session")
def test_config(model_dir) -> dict:
    # Flask test-client apps skip the warm-up (seconds per app); live gunicorn servers keep the default.
    return {"model_dir": model_dir, "rate_limit": "", "warm_up": False}


@pytest.fixture
def app(test_config):
    from service import create_app

    return create_app(test_config)


@pytest.fixture
def client(app):
    return app.test_client()


def needs(path: Path):
    """Skip a test when a shared corpus is not on this machine."""
    return pytest.mark.skipif(not path.exists(), reason=f"{path} is not available")


@pytest.fixture(scope="session")
def live_server(model_dir):
    """One real gunicorn (2 workers, no rate limit) shared by the HTTP integration tests."""
    from tests.live import running_server

    with running_server({"LOGMEDIC_MODEL_DIR": str(model_dir), "LOGMEDIC_RATE_LIMIT": ""}) as server:
        yield server
