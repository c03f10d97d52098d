"""The app's settings are read in one place, with one copy of their defaults."""

import re

import pytest

from backups_app import conf

from .conftest import ROOT


def test_only_conf_reads_the_apps_settings():
    readers = [
        path.relative_to(ROOT) for path in (ROOT / "backups_app").rglob("*.py")
        if path.name != "conf.py" and re.search(r"settings\.BACKUP_|getattr\(settings, ['\"]BACKUP_", path.read_text())
    ]
    assert readers == []


def test_a_setting_falls_back_to_its_default_and_follows_overrides(settings):
    del settings.BACKUP_LOCK_TIMEOUT
    assert conf.setting("BACKUP_LOCK_TIMEOUT") == conf.DEFAULTS["BACKUP_LOCK_TIMEOUT"] == 30
    settings.BACKUP_LOCK_TIMEOUT = 5
    assert conf.setting("BACKUP_LOCK_TIMEOUT") == 5
    with pytest.raises(KeyError, match="BACKUP_NOPE is not a setting of the backups app"):
        conf.setting("BACKUP_NOPE")


def test_the_project_settings_take_their_defaults_from_conf():
    text = (ROOT / "config" / "settings.py").read_text()
    for name in conf.DEFAULTS:
        line = re.search(rf"^{name} = .*$", text, re.M)
        assert line and f'_defaults["{name}"]' in line.group(0), name
