"""Settings: one typed object from flags, REACH_MIGRATOR_* variables or a .env file, each field described."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from migrator.settings import MigratorSettings, Mode


def test_every_setting_has_a_description() -> None:
    missing = [name for name, f in MigratorSettings.model_fields.items() if not f.description]
    assert missing == []


def test_environment_and_env_file_are_read_and_flags_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("REACH_MIGRATOR_POLICY_URL=http://127.0.0.1:3000/\nREACH_MIGRATOR_MODE=episode\n")
    monkeypatch.setenv("REACH_MIGRATOR_DRY_RUN", "true")
    settings = MigratorSettings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.policy_url == "http://127.0.0.1:3000" and settings.mode is Mode.EPISODE and settings.dry_run
    flagged = MigratorSettings(_env_file=env_file, dry_run=False)  # type: ignore[call-arg]
    assert flagged.dry_run is False


def test_bad_values_name_the_field() -> None:
    with pytest.raises(ValidationError, match="policy_url"):
        MigratorSettings(policy_url="127.0.0.1:3000", _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="interval_s"):
        MigratorSettings(interval_s=0, _env_file=None)  # type: ignore[call-arg]
