"""compose.yaml and the Dockerfile are kept correct by reading them (no Docker engine here)."""
from __future__ import annotations

import re
from pathlib import Path

import yaml
from django.conf import settings

BASE = Path(settings.BASE_DIR)


def documented_variables() -> set[str]:
    text = (BASE / ".env.example").read_text()
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", text, re.MULTILINE))


def test_compose_runs_every_service_with_healthchecks() -> None:
    compose = yaml.safe_load((BASE / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"db", "redis", "migrate", "web", "worker", "beat"}
    assert services["db"]["image"].startswith("pgvector/pgvector")
    for name in ("db", "redis", "web", "worker", "beat"):
        assert "healthcheck" in services[name], name
    assert services["web"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "volatile-lru" in services["redis"]["command"]
    assert {"pgdata", "redisdata", "media"} <= set(compose["volumes"])


def test_every_variable_compose_uses_is_documented() -> None:
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (BASE / "compose.yaml").read_text()))
    assert used, "compose.yaml should take its secrets from the env file"
    assert used <= documented_variables(), used - documented_variables()


def test_every_variable_the_settings_read_is_documented() -> None:
    source = (BASE / "supportdesk" / "settings.py").read_text()
    read = set(re.findall(r'(?:env_\w+|raw|_duration_s|_rate)\(\s*"([A-Z][A-Z0-9_]*)"', source))
    read |= {f"TOOL_{name.upper()}" for name in settings.AGENT_TOOLS}
    assert len(read) > 30
    assert read <= documented_variables(), read - documented_variables()


def test_the_dockerfile_is_multi_stage_non_root_with_a_healthcheck() -> None:
    text = (BASE / "Dockerfile").read_text()
    assert len(re.findall(r"^FROM ", text, re.MULTILINE)) >= 2
    users = re.findall(r"^USER (\S+)", text, re.MULTILINE)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*", text, re.MULTILINE)
    assert "--require-hashes" in text


def test_requirements_are_pinned_with_hashes_and_skip_compromised_litellm() -> None:
    text = (BASE / "requirements.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s\\]+)", text, re.MULTILINE)
    assert len(pins) > 50
    assert text.count("--hash=sha256:") >= len(pins)
    litellm = dict((name.lower(), version) for name, version in pins)["litellm"]
    assert litellm not in ("1.82.7", "1.82.8")
