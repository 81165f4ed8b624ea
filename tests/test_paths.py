"""Every user folder in one place (viewer/paths.py): environment overrides, platform defaults."""

from __future__ import annotations

from pathlib import Path

import platformdirs
import pytest

from viewer import paths


@pytest.fixture
def bare_env(monkeypatch):
    for name in (paths.DATA_DIR_ENV, paths.MODELS_DIR_ENV, paths.CONFIG_DIR_ENV, paths.LOG_DIR_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_each_folder_is_the_platform_user_folder_without_overrides(bare_env):
    assert paths.data_dir() == Path(platformdirs.user_data_dir("hounsfield"))
    assert paths.models_dir() == Path(platformdirs.user_data_dir("hounsfield")) / "models"
    assert paths.config_dir() == Path(platformdirs.user_config_dir("hounsfield"))
    assert paths.log_dir() == Path(platformdirs.user_log_dir("hounsfield"))
    assert paths.cache_dir() == Path(platformdirs.user_cache_dir("hounsfield"))
    assert paths.thumbnails_dir() == Path(platformdirs.user_cache_dir("hounsfield")) / "thumbnails"


def test_environment_variables_override_each_folder(bare_env, tmp_path):
    bare_env.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path / "d"))
    bare_env.setenv("HOUNSFIELD_CONFIG_DIR", str(tmp_path / "c"))
    bare_env.setenv("HOUNSFIELD_LOG_DIR", str(tmp_path / "l"))
    assert paths.data_dir() == tmp_path / "d"
    assert paths.models_dir() == tmp_path / "d" / "models"  # follows the data folder
    assert paths.thumbnails_dir() == tmp_path / "d" / "thumbnails"
    assert paths.config_dir() == tmp_path / "c"
    assert paths.log_dir() == tmp_path / "l"
    bare_env.setenv("HOUNSFIELD_MODELS_DIR", str(tmp_path / "m"))
    assert paths.models_dir() == tmp_path / "m"


def test_a_temporary_data_folder_never_replaces_one_already_chosen(bare_env, tmp_path):
    bare_env.setenv("HOUNSFIELD_DATA_DIR", str(tmp_path))
    assert paths.use_temporary_data_dir("shot-") == tmp_path
    bare_env.delenv("HOUNSFIELD_DATA_DIR")
    chosen = paths.use_temporary_data_dir("shot-")
    assert chosen.is_dir() and chosen.name.startswith("shot-") and paths.data_dir() == chosen
    chosen.rmdir()


def test_resources_are_found_next_to_the_package():
    assert paths.resources_dir() == Path(paths.__file__).resolve().parent.parent / "resources"
    assert (paths.resources_dir() / "presets" / "segment_terminology.json").is_file()


def test_no_other_module_looks_up_a_user_folder():
    import re

    import viewer

    root = Path(viewer.__file__).parent
    lookup = re.compile(r"^\s*(import|from) platformdirs"
                        r"|environ[^\n]*HOUNSFIELD_((DATA|MODELS|CONFIG|LOG)_DIR|RESOURCES)", re.M)
    found = [str(p.relative_to(root)) for p in sorted(root.rglob("*.py"))
             if p.name != "paths.py" or p.parent != root
             if lookup.search(p.read_text(encoding="utf-8"))]
    assert found == []
