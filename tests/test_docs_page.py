"""The API docs page, served by a real gunicorn and opened in headless Chromium.

What a person sees: every endpoint of /openapi.json listed and documented, the page's
stylesheet loaded under its own Content-Security-Policy (no console error), and the
page refusing to be framed by another origin; plus the security headers on the answer.
"""

from __future__ import annotations

import pytest

from tests.test_report import chromium, needs_chromium

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def operations(live_server) -> list[tuple[str, str]]:
    """(METHOD, path) of every operation the server's OpenAPI document declares."""
    spec = live_server.get("/openapi.json").json()
    return sorted((method.upper(), path) for path, methods in spec["paths"].items() for method in methods)


def test_docs_page_lists_and_documents_every_endpoint(live_server, operations, tmp_path):
    dom, console = chromium(live_server.url + "/docs", tmp_path / "profile")

    listed = sorted((a.one("span", class_="method").text().strip(), a.text().split(None, 1)[1].strip())
                    for a in dom.one("nav").all("a"))
    assert listed == operations
    documented = sorted((s.one("h2").one("span", class_="method").text().strip(), s.one("h2").one("code").text())
                        for s in dom.all("section", class_="operation"))
    assert documented == operations
    for link in dom.one("nav").all("a"):  # every link in the list leads to its section
        assert dom.all("section", id=link.attrs["href"].lstrip("#"))
    assert ("POST", "/v1/classify") in operations and ("GET", "/healthz") in operations
    assert dom.one("title").text().startswith("logmedic")
    # The stylesheet is served from our origin and allowed by the page's CSP: a refusal or a
    # failed load would show here.
    assert not [line for line in console if "Refused" in line or "Failed to load" in line], console


def test_docs_page_answer_carries_the_security_headers(live_server):
    response = live_server.get("/docs")

    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    csp = {directive.split()[0]: directive.split()[1:]
           for directive in response.headers["Content-Security-Policy"].split(";") if directive.strip()}
    assert csp["default-src"] == ["'none'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in csp.get("style-src", []) and "script-src" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "no-referrer"
    stylesheet = live_server.get("/static/docs.css")
    assert stylesheet.status_code == 200 and stylesheet.headers["X-Content-Type-Options"] == "nosniff"


def test_docs_page_cannot_be_framed_by_another_page(live_server, tmp_path):
    framer = tmp_path / "framer.html"
    framer.write_text(f'<!doctype html><title>framer</title><iframe src="{live_server.url}/docs"></iframe>')

    _, console = chromium(framer.as_uri(), tmp_path / "profile")

    # Chromium says so on the console: with a CSP `frame-ancestors` it names that directive
    # ("Framing ... violates ... frame-ancestors 'none'. The request has been blocked."),
    # with X-Frame-Options alone it says "Refused to display ... in a frame".
    refusals = [line for line in console if (f"{live_server.url}/" in line or "docs" in line)
                and (("frame-ancestors" in line and "blocked" in line) or "Refused to display" in line)]
    assert refusals, f"Chromium showed the docs page inside a frame; console: {console}"
