"""Settings that persist between runs (window layout, viewing options, recent studies).

An INI file in the user data folder (``HOUNSFIELD_DATA_DIR`` overrides it, as the tests do).
"""

from __future__ import annotations

import os

from PySide6.QtCore import QSettings

from viewer.paths import data_dir

RECENT_MAX = 10


def open_settings() -> QSettings:
    folder = data_dir()
    os.makedirs(folder, exist_ok=True)
    return QSettings(os.path.join(folder, "settings.ini"), QSettings.Format.IniFormat)


def recent_paths(settings: QSettings) -> list[str]:
    value = settings.value("recent", [])
    if isinstance(value, str):
        value = [value]
    return [str(v) for v in (value or []) if v]


def add_recent(settings: QSettings, path: str) -> list[str]:
    paths = [path] + [p for p in recent_paths(settings) if p != path]
    settings.setValue("recent", paths[:RECENT_MAX])
    return paths[:RECENT_MAX]


def read_bool(settings: QSettings, key: str, default: bool) -> bool:
    value = settings.value(key, default)
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes")
    return bool(value)
