"""Settings rules, and the documentation that must keep up with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from tests.support.dags import EXAMPLES
from trace_core.dag import load_dag_file
from trace_core.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(TRACE_[A-Z_]+)` \|", readme, re.MULTILINE))
    assert documented == {f"TRACE_{name.upper()}" for name in Settings.model_fields}


def test_every_example_dag_is_valid() -> None:
    examples = sorted(EXAMPLES.glob("*.yaml"))
    assert examples
    for path in examples:
        load_dag_file(path)


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_DISPATCHER_PORT", "9999")
    monkeypatch.setenv("TRACE_LOG_FORMAT", "json")
    settings = Settings()
    assert settings.dispatcher_port == 9999
    assert settings.log_format == "json"


def test_outside_local_the_service_credential_must_be_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACE_ENV", "prod")
    monkeypatch.delenv("TRACE_SERVICE_TOKEN", raising=False)
    with pytest.raises(ValidationError, match="TRACE_SERVICE_TOKEN must be set"):
        Settings()
    monkeypatch.setenv("TRACE_SERVICE_TOKEN", "a-real-secret")
    assert Settings().service_token.get_secret_value() == "a-real-secret"
