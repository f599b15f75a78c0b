"""The team's notes are the heart of the product: each problem log, pasted as it stands, gets its
category and the remediation the notes give."""

from __future__ import annotations

import re

import pytest

from tests.conftest import SEED_NOTES, needs

# Section heading of the notes → (category, commands or fragments the notes' fix uses)
SECTIONS = {
    "이미지를 깃헙 패키지에서 가져오지 못하는 이슈": ("registry-pull-hang", ["docker load --input"]),
    "At least one invalid signature was encountered": (
        "apt-invalid-signature",
        ["docker system df", "docker image prune", "docker container prune", "docker system prune --force"]),
    "No space left on device": ("no-space-left", ["docker system prune --all --force"]),
    "postgres": ("postgres-superuser-password", ["POSTGRES_PASSWORD=", "POSTGRES_HOST_AUTH_METHOD=trust"]),
    "Err:5 `http://ports.ubuntu.com/ubuntu-ports` kinetic Release": ("apt-release-eol", ["FROM ubuntu:24.04"]),
    "Failed to create /init.scope control group: Read-only file system": (
        "systemd-cgroup-readonly", ["--tmpfs /sys/fs/cgroup:rw", "--cap-add SYS_ADMIN", "--tmpfs /run"]),
}


def problem_logs() -> list[tuple[str, int, str]]:
    """(section, block number, log) for every code block under a section's `### 문제` heading."""
    if not SEED_NOTES.exists():
        return []
    text = SEED_NOTES.read_text(encoding="utf-8")
    found = []
    for section in re.split(r"^## ", text, flags=re.M)[1:]:
        title, _, body = section.partition("\n")
        problem = body.split("### 문제", 1)[-1].split("\n### ", 1)[0]
        blocks = re.findall(r"```(\w*)\n(.*?)```", problem, flags=re.S)
        logs = [code for lang, code in blocks if lang.lower() != "dockerfile"]
        found.extend((title.strip(), number, log) for number, log in enumerate(logs, 1))
    return found


LOGS = problem_logs()


@needs(SEED_NOTES)
def test_every_section_of_the_notes_has_problem_logs():
    assert {title for title, _, _ in LOGS} == set(SECTIONS)
    assert len(LOGS) == 7  # no-space-left has two problem logs


@needs(SEED_NOTES)
@pytest.mark.parametrize("title, number, log", LOGS, ids=[f"{SECTIONS[t][0]}-{n}" for t, n, _ in LOGS])
def test_when_seed_problem_log_then_its_category_and_the_notes_fix(diagnoser, title, number, log):
    category, fixes = SECTIONS[title]
    diagnosis = diagnoser.diagnose(log)
    assert diagnosis.category == category
    assert diagnosis.decided_by == "rule"
    commands = "\n".join(step.command for step in diagnosis.remediation)
    for fix in fixes:
        assert fix in commands, f"{category}: remediation lacks {fix!r}"
    assert diagnosis.evidence, "an answer must show the lines that prove it"


@needs(SEED_NOTES)
@pytest.mark.parametrize("lang", ["en", "ko"])
def test_seed_explanations_carry_what_the_notes_found(diagnoser, lang):
    kb = diagnoser.kb
    signature = kb["apt-invalid-signature"]
    assert "seccomp" in " ".join(c.get(lang) for c in signature.causes).lower()
    assert any(word in signature.explanation.get(lang).lower() for word in ("disk", "디스크"))
    assert "--privileged" in kb["systemd-cgroup-readonly"].explanation.get(lang)
    assert "old-releases.ubuntu.com" in "\n".join(s.command for s in kb["apt-release-eol"].remediation)
    assert kb["registry-pull-hang"].transient and not kb["postgres-superuser-password"].transient


def test_destructive_seed_commands_say_what_they_delete(diagnoser):
    for category in ("apt-invalid-signature", "no-space-left"):
        prunes = [s for s in diagnoser.kb[category].remediation if "prune" in s.command]
        assert prunes and all(s.destructive and s.deletes for s in prunes)
