"""Prometheus metrics: requests by route and status, latency, answers by category, share of unknown.

Under gunicorn every worker writes its samples to PROMETHEUS_MULTIPROC_DIR
(set by service/gunicorn.conf.py) and a scrape aggregates them, so /metrics
tells the truth whichever worker answers it.
"""

from __future__ import annotations

import os
import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily

REQUESTS = Counter("logmedic_http_requests_total", "HTTP requests answered.", ["route", "method", "status"])
LATENCY = Histogram("logmedic_http_request_duration_seconds", "Time to answer an HTTP request.", ["route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
ANSWERS = Counter("logmedic_answers_total", "Diagnoses given, by category and by what decided them.",
                  ["category", "decided_by"])
LOG_BYTES = Histogram("logmedic_log_bytes", "Size of the logs diagnosed.",
                      buckets=(1e3, 1e4, 1e5, 1e6, 1e7, 5e7, 1e8))


class UnknownShare:
    """A gauge computed at scrape time from the answers counter: the share of `unknown` answers."""

    def __init__(self, source: CollectorRegistry):
        self.source = source

    def collect(self):
        total = unknown = 0.0
        for family in self.source.collect():
            if family.name != "logmedic_answers":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    total += sample.value
                    unknown += sample.value if sample.labels.get("category") == "unknown" else 0.0
        gauge = GaugeMetricFamily("logmedic_unknown_answer_ratio", "Share of answers that were `unknown`.")
        gauge.add_metric([], unknown / total if total else 0.0)
        yield gauge


def record_answer(category: str, decided_by: str, size: int) -> None:
    ANSWERS.labels(category, decided_by).inc()
    LOG_BYTES.observe(size)


def _registry() -> CollectorRegistry:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


def scrape() -> Response:
    registry = _registry()
    merged = CollectorRegistry()
    merged.register(UnknownShare(registry))
    body = generate_latest(registry) + generate_latest(merged)
    return Response(body, content_type=CONTENT_TYPE_LATEST)  # mimetype= would add a second charset


def init_app(app: Flask) -> None:
    @app.before_request
    def _start_timer():
        g.started = time.perf_counter()

    @app.after_request
    def _count(response):
        route = request.url_rule.rule if request.url_rule else "<unmatched>"
        REQUESTS.labels(route, request.method, str(response.status_code)).inc()
        if "started" in g:
            LATENCY.labels(route).observe(time.perf_counter() - g.started)
        return response
