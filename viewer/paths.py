"""Every folder Hounsfield reads or writes outside a study, found in one place (no Qt).

Each has an environment variable that overrides it (tests and the screenshot scripts point them at
temporary folders); otherwise it is the platform's per-user folder (``platformdirs``):

- ``data_dir()``: ``$HOUNSFIELD_DATA_DIR``, else the user data folder: the study index, settings,
  segmentation journals, saved measurements, retrieved studies;
- ``models_dir()``: ``$HOUNSFIELD_MODELS_DIR``, else ``<data dir>/models``: the user's AI models;
- ``config_dir()``: ``$HOUNSFIELD_CONFIG_DIR``, else the user config folder: PACS nodes;
- ``log_dir()``: ``$HOUNSFIELD_LOG_DIR``, else the user log folder: the log file;
- ``cache_dir()``: the user cache folder: the demo volume; ``thumbnails_dir()`` is
  ``<data dir>/thumbnails`` when ``$HOUNSFIELD_DATA_DIR`` is set, else ``<cache dir>/thumbnails``;
- ``resources_dir()``: the read-only ``resources/`` folder (presets, colour maps, icons), found in
  order at ``$HOUNSFIELD_RESOURCES``, next to the ``viewer`` package (a source checkout or an
  editable install), or under ``<prefix>/share/hounsfield/resources`` (a wheel install:
  pyproject's data-files put it there).

The functions read the environment on every call, so a test may set a variable after import.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from pathlib import Path

import platformdirs

APP = "hounsfield"
DATA_DIR_ENV = "HOUNSFIELD_DATA_DIR"
MODELS_DIR_ENV = "HOUNSFIELD_MODELS_DIR"
CONFIG_DIR_ENV = "HOUNSFIELD_CONFIG_DIR"
LOG_DIR_ENV = "HOUNSFIELD_LOG_DIR"
RESOURCES_ENV = "HOUNSFIELD_RESOURCES"


def data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or platformdirs.user_data_dir(APP))


def models_dir() -> Path:
    env = os.environ.get(MODELS_DIR_ENV)
    return Path(env) if env else data_dir() / "models"


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_DIR_ENV) or platformdirs.user_config_dir(APP))


def log_dir() -> Path:
    return Path(os.environ.get(LOG_DIR_ENV) or platformdirs.user_log_dir(APP))


def cache_dir() -> Path:
    return Path(platformdirs.user_cache_dir(APP))


def thumbnails_dir() -> Path:
    return data_dir() / "thumbnails" if os.environ.get(DATA_DIR_ENV) else cache_dir() / "thumbnails"


def use_temporary_data_dir(prefix: str = "hounsfield-") -> Path:
    """Point ``data_dir()`` at a new temporary folder unless ``$HOUNSFIELD_DATA_DIR`` is already set
    (the screenshot scripts: they must not touch the user's index, settings or journals)."""
    os.environ.setdefault(DATA_DIR_ENV, tempfile.mkdtemp(prefix=prefix))
    return data_dir()


@functools.lru_cache(maxsize=1)
def resources_dir() -> Path:
    candidates = [os.environ.get(RESOURCES_ENV),
                  Path(__file__).resolve().parent.parent / "resources",
                  Path(sys.prefix) / "share" / "hounsfield" / "resources"]
    for c in candidates:
        if c and (Path(c) / "presets" / "window_level.json").is_file():
            return Path(c)
    raise FileNotFoundError("the Hounsfield resources folder (presets, colour maps, icons) was not found")
