"""logmedic's web layer, CLI and integrations: thin adapters over `model/`."""

from __future__ import annotations

import logging

from service.settings import load_settings


def create_app(config: dict | None = None):
    """Build the app: settings, the engine (loaded once, here), then each part wires itself.

    A missing, corrupt, foreign or stale model bundle raises `ModelError` here,
    so a broken model stops start-up instead of failing the first request.
    """
    # Imported here, not at module level: the CLI (`logmedic ask` in a CI job) imports this
    # package and should not pay for Flask and scikit-learn it does not use.
    from flask import Flask

    from model import paths
    from model.diagnose import Diagnoser
    from model.errors import SampleError
    from model.samples import load_samples

    settings = load_settings(config)
    app = Flask(__name__)
    app.config["LOGMEDIC"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.config["DEBUG"] = settings.debug
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    app.extensions["logmedic"] = engine = Diagnoser.load(settings.data_dir, settings.model_dir, settings.check_stale)
    if settings.warm_up:
        try:
            samples = load_samples(paths.samples_dir(settings.data_dir))
        except SampleError:  # a data dir with the knowledge base only (check_stale off): nothing to warm up with
            samples = []
        engine.warm_up(sample.read() for sample in samples)
    logging.getLogger("logmedic").setLevel(settings.log_level.upper())

    from service import api, docs, errors, integrations, metrics, security

    errors.init_app(app)
    metrics.init_app(app)
    api.init_app(app)
    docs.init_app(app)
    integrations.init_app(app)
    security.init_app(app)  # last: it rate-limits the routes registered above
    return app
