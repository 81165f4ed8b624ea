"""Shared fixtures.  Real data comes from ../shared/data (or $VIEWER_TEST_DATA); tests that need
it skip with a clear reason where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("VIEWER_TEST_DATA", REPO.parent / "shared" / "data"))


def data_path(*parts: str) -> Path:
    """A path under the shared data folder; skips the calling test when it is absent."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data {path} is absent (set VIEWER_TEST_DATA to the shared data folder)")
    return path


@pytest.fixture(autouse=True, scope="session")
def _private_user_dirs(tmp_path_factory):
    """Keep the study index, logs and caches of the test run out of the user's own folders."""
    root = tmp_path_factory.mktemp("user")
    old = {k: os.environ.get(k) for k in ("HOUNSFIELD_DATA_DIR", "HOUNSFIELD_LOG_DIR", "HOUNSFIELD_CONFIG_DIR")}
    os.environ["HOUNSFIELD_DATA_DIR"] = str(root / "data")
    os.environ["HOUNSFIELD_LOG_DIR"] = str(root / "log")
    os.environ["HOUNSFIELD_CONFIG_DIR"] = str(root / "config")  # PACS nodes: none unless a test writes some
    yield
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(autouse=True, scope="module")
def _module_data_dir(request, tmp_path_factory):
    """Each test module gets its own data folder: saved measurements, journals and the study index of one
    module's studies must not come back in another module's window (they do come back: that is the feature)."""
    old = os.environ.get("HOUNSFIELD_DATA_DIR")
    name = request.module.__name__.rsplit(".", 1)[-1]
    os.environ["HOUNSFIELD_DATA_DIR"] = str(tmp_path_factory.mktemp(f"data-{name}"))
    yield
    if old is None:
        os.environ.pop("HOUNSFIELD_DATA_DIR", None)
    else:
        os.environ["HOUNSFIELD_DATA_DIR"] = old


@pytest.fixture
def chest_ct_dir() -> Path:
    return data_path("chest-ct")


@pytest.fixture
def brain_mr_dir() -> Path:
    return data_path("brain-mr-t1")
