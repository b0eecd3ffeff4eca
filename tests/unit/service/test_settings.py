"""ServiceSettings: validation naming every bad field, environment parsing, round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from obliviate.errors import ConfigError
from obliviate.service.settings import ServiceSettings


def test_defaults_are_valid_and_round_trip() -> None:
    settings = ServiceSettings()
    assert settings.heartbeat_interval == settings.lease_seconds / 3
    assert settings.sla_seconds == 30 * 86_400
    assert ServiceSettings.from_dict(settings.to_dict()) == settings


def test_every_bad_field_is_named_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        ServiceSettings(lease_seconds=0, max_attempts=0, heartbeat_seconds=5.0)
    message = str(info.value)
    assert "lease_seconds=0" in message and "max_attempts=0" in message
    assert "heartbeat_seconds=5.0" in message


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ConfigError, match="lease_secs"):
        ServiceSettings.from_dict({"lease_secs": 3})


def test_environment_then_overrides() -> None:
    env = {
        "OBLIVIATE_WORKSPACE": "/data/ws",
        "OBLIVIATE_SERVICE_LEASE_SECONDS": "12.5",
        "OBLIVIATE_SERVICE_MAX_ATTEMPTS": "7",
        "OBLIVIATE_SERVICE_REQUIRE_IDEMPOTENCY_KEY": "false",
        "OBLIVIATE_SERVICE_DATABASE_URL": "postgresql+psycopg://u@h/db",
    }
    settings = ServiceSettings.from_env(env, max_attempts=2, batch_window_seconds=None)
    assert settings.workspace == Path("/data/ws")
    assert settings.lease_seconds == 12.5 and settings.max_attempts == 2
    assert settings.require_idempotency_key is False
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    with pytest.raises(ConfigError, match="OBLIVIATE_SERVICE_MAX_BATCH"):
        ServiceSettings.from_env({"OBLIVIATE_SERVICE_MAX_BATCH": "many"})
