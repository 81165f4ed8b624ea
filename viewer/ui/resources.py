"""The ``resources/`` folder: window/level presets, colour maps and icons (JSON and SVG).

It lives at the repository's top level; ``viewer.paths.resources_dir()`` finds it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from viewer.paths import resources_dir


@dataclass(frozen=True)
class Preset:
    key: str  # the number key that applies it
    name: str
    center: float | None = None
    width: float | None = None
    auto: bool = False


@functools.lru_cache(maxsize=1)
def _preset_table() -> dict:
    with open(resources_dir() / "presets" / "window_level.json", encoding="utf-8") as f:
        return json.load(f)


def presets_for(modality: str) -> list[Preset]:
    """The window/level presets of a modality (its own list, else the 'default' list)."""
    table = _preset_table()
    entries = table.get(modality.upper()) or table.get("default", [])
    return [Preset(str(e["key"]), e["name"], e.get("center"), e.get("width"), bool(e.get("auto")))
            for e in entries]


@functools.lru_cache(maxsize=1)
def colormaps() -> dict[str, tuple]:
    """Colour maps by name: points ((x, r, g, b), ...) with every number in [0, 1]; 'Grey' first."""
    out = {}
    for path in sorted((resources_dir() / "colormaps").glob("*.json")):
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
        out[data["name"]] = tuple(tuple(float(x) for x in p) for p in data["points"])
    if "Grey" in out:
        out = {"Grey": out.pop("Grey"), **out}
    return out


def icon_path(name: str) -> str:
    return str(resources_dir() / "icons" / f"{name}.svg")


@functools.lru_cache(maxsize=1)
def volume_presets() -> tuple:
    """3D transfer-function presets (``VolumePreset``), in file order."""
    from viewer.render.transfer import VolumePreset

    with open(resources_dir() / "presets" / "volume_presets.json", encoding="utf-8") as f:
        data = json.load(f)
    return tuple(VolumePreset.from_dict(d) for d in data["presets"])
