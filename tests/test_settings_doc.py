"""README's settings table and service.settings.Settings say the same thing: every name, every default."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from model import paths
from service.settings import PREFIX, Settings, load_settings

README = Path(__file__).resolve().parent.parent / "README.md"
ROW = re.compile(r"^\|\s*`(LOGMEDIC_[A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|\s*(.*?)\s*\|\s*$")


def readme_settings() -> dict[str, tuple[str, str]]:
    """{variable: (default as written, meaning)} from the table of README's `## Settings` section."""
    text = README.read_text(encoding="utf-8")
    section = re.search(r"^## Settings\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, "README has no `## Settings` section"
    rows = {}
    for line in section.group(1).splitlines():
        match = ROW.match(line)
        if match:
            name, default, meaning = match.groups()
            assert name not in rows, f"{name} is listed twice"
            rows[name] = (default.strip("`"), meaning)
    return rows


def documented_default(name: str) -> str:
    """How the README writes the default of field `name`."""
    default = Settings.model_fields[name].default
    if default is None:
        return "unset"
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, Path):
        return default.relative_to(paths.PROJECT_ROOT).as_posix() + "/"
    if default == "":
        return "empty"
    return str(default)


def test_readme_lists_every_setting_and_no_other():
    documented = set(readme_settings())
    declared = {PREFIX + name.upper() for name in Settings.model_fields}
    assert declared - documented == set(), "settings missing from README's table"
    assert documented - declared == set(), "README lists settings that do not exist"


@pytest.mark.parametrize("name", list(Settings.model_fields))
def test_readme_default_and_meaning_match_the_code(name):
    default, meaning = readme_settings()[PREFIX + name.upper()]
    assert default == documented_default(name), f"{PREFIX}{name.upper()}: README says {default!r}"
    assert meaning and meaning.endswith("."), f"{PREFIX}{name.upper()} needs a one-sentence meaning"


def test_each_variable_is_read_from_the_environment():
    # one value per type of field is enough to show the names in the table are the ones read
    environ = {f"{PREFIX}PORT": "9191", f"{PREFIX}CHECK_STALE": "false", f"{PREFIX}DEFAULT_LANG": "ko",
               f"{PREFIX}STORE_LOGS_DIR": "/tmp/kept-logs", f"{PREFIX}API_TOKENS": "a,b"}
    settings = load_settings(environ=environ)
    assert (settings.port, settings.check_stale, settings.default_lang) == (9191, False, "ko")
    assert settings.store_logs_dir == Path("/tmp/kept-logs") and settings.tokens() == ["a", "b"]


def test_an_empty_rate_limit_variable_disables_the_limit_as_documented():
    assert "empty disables" in readme_settings()[f"{PREFIX}RATE_LIMIT"][1]
    assert load_settings(environ={f"{PREFIX}RATE_LIMIT": ""}).rate_limit == ""
