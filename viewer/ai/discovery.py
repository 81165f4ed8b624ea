"""Finding plugins without importing them (napari npe2's idea: plugins declared as data).

Three sources, all read as JSON only; no plugin code runs until a plugin is run, and then in
the worker process:

* built-ins: ``plugins/<name>/plugin.json`` in this distribution;
* third-party distributions: entry points in the group ``hounsfield.plugins`` whose value names a
  JSON manifest inside a package, ``"my_package:hounsfield.json"`` (as npe2's
  ``napari.manifest``), so ``pip install some-plugin`` adds one;
* the user's models folder (``viewer.paths.models_dir()``): MONAI bundles (``configs/metadata.json`` and
  ``models/model.ts`` or ``models/model.pt``) and single TorchScript (``.ts``/``.pt``), ONNX
  (``.onnx``) or state-dict (``.pt``/``.pth``) files, each with a JSON descriptor of the same stem.

A manifest is a ``PluginInfo`` as JSON (see docs/plugins.md); ``entry`` names the code,
``"module:Class"``.  A broken manifest never breaks discovery: it is left out and described,
in one sentence, in ``Registry.problems``.
"""

from __future__ import annotations

import importlib.util
import json
import re
from importlib import metadata
from pathlib import Path

from viewer.ai.api import InputSpec, PluginInfo, Task
from viewer.core.errors import HounsfieldError
from viewer.logs import log
from viewer.paths import models_dir

ENTRY_POINT_GROUP = "hounsfield.plugins"
MANIFEST = "plugin.json"
MODEL_SUFFIXES = (".ts", ".pt", ".pth", ".onnx")


def builtin_dir() -> Path | None:
    spec = importlib.util.find_spec("plugins")  # a top-level package: found without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _read_json(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise HounsfieldError(f"{path.name} could not be read as JSON ({exc}).") from None
    if not isinstance(data, dict):
        raise HounsfieldError(f"{path.name} does not hold a JSON object.")
    return data


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "model"


def _manifest_info(path: Path, source: str) -> PluginInfo:
    d = _read_json(path)
    for key in ("id", "task", "entry"):
        if key not in d:
            raise HounsfieldError(f"The plugin manifest {path} lacks the required key {key!r}.")
    return PluginInfo.from_dict(d, source=source)


# ------------------------------------------------------------------------------- models folder


# MONAI detection bundles (model-zoo lung_nodule_ct_detection layout: a RetinaNetDetector in
# configs/inference.json) run with their own pre- and post-processing by the lung nodule plugin's
# runner; the name is data here (discovery imports no plugin code)
DETECTION_BUNDLE_ENTRY = "plugins.lung_nodules.bundle:DetectionBundle"


def _is_detection_bundle(folder: Path) -> bool:
    path = folder / "configs" / "inference.json"
    if not path.is_file():
        return False
    try:
        return '"RetinaNetDetector"' in path.read_text(encoding="utf-8").replace(" ", "").replace(
            "monai.apps.detection.networks.retinanet_detector.", "")
    except OSError:
        return False


def _detection_bundle_info(folder: Path, meta: dict, model: Path) -> PluginInfo:
    ndf = meta.get("network_data_format", {})
    inp = next(iter(ndf.get("inputs", {}).values()), {})
    modality = inp.get("modality", "")
    d = {"id": "bundle/" + _slug(meta.get("name", folder.name)), "name": meta.get("name", folder.name),
         "version": str(meta.get("version", "0")), "task": Task.DETECTION.value,
         "description": meta.get("description", ""),
         "inputs": [{"modalities": [modality] if modality and modality.upper() != "ANY" else []}],
         "entry": DETECTION_BUNDLE_ENTRY, "model_path": str(model), "bundle": str(folder),
         "card": {"intended_use": meta.get("intended_use", meta.get("description", "")),
                  "training_data": meta.get("data_source", ""), "limitations": meta.get("limitations", ""),
                  "license": meta.get("copyright", ""), "references": list(meta.get("references", []))},
         "parameters": [{"name": "score_threshold", "kind": "float", "default": 0.0, "minimum": 0.0, "maximum": 1.0,
                         "step": 0.01, "label": "Score threshold",
                         "help": "Detections scoring below this are dropped; 0 uses the bundle's own threshold."}]}
    return PluginInfo.from_dict(d, source="models folder")


def _bundle_info(folder: Path) -> PluginInfo:
    """A MONAI bundle folder as a plugin: metadata.json says what it is; the model runs as given."""
    meta = _read_json(folder / "configs" / "metadata.json")
    ts, pt = folder / "models" / "model.ts", folder / "models" / "model.pt"
    if ts.is_file():
        fmt, model = "torchscript", ts
    elif pt.is_file():
        fmt, model = "state_dict", pt
    else:
        raise HounsfieldError(f"The MONAI bundle {folder.name} has neither models/model.ts nor models/model.pt.")
    if _is_detection_bundle(folder):
        return _detection_bundle_info(folder, meta, model)
    ndf = meta.get("network_data_format", {})
    inp = next(iter(ndf.get("inputs", {}).values()), {})
    out = next(iter(ndf.get("outputs", {}).values()), {})
    channel_def = out.get("channel_def", {}) or {}
    is_seg = out.get("format") in ("segmentation", "labels") or len(channel_def) > 1
    modality = inp.get("modality", "")
    labels = {str(k): v for k, v in channel_def.items() if str(k) != "0" and "background" not in str(v).lower()}
    spatial = inp.get("spatial_shape") or []
    card = {
        "intended_use": meta.get("intended_use", meta.get("description", "")),
        "training_data": meta.get("data_source", ""),
        "limitations": meta.get("limitations", ""),
        "license": meta.get("copyright", ""),
        "references": list(meta.get("references", [])),
        "evaluation": [{"metric": str(k), "value": float(v)} for k, v in (meta.get("performance") or {}).items()
                       if isinstance(v, int | float)],
    }
    d = {
        "id": "bundle/" + _slug(meta.get("name", folder.name)),
        "name": meta.get("name", folder.name),
        "version": str(meta.get("version", "0")),
        "task": Task.SEGMENTATION.value if is_seg else Task.IMAGE_TO_IMAGE.value,
        "description": meta.get("description", ""),
        "inputs": [{"modalities": [modality] if modality and modality.upper() != "ANY" else []}],
        "entry": f"model:{fmt}",
        "model_path": str(model),
        "card": card,
        "explainers": ["probability", "occlusion"] + (["gradcam"] if fmt == "state_dict" else []) if is_seg else [],
        "bundle": str(folder),
        "labels": labels or ({"1": "foreground"} if is_seg else {}),
        "dims": 3 if len([s for s in spatial if s not in (-1, None)]) != 2 else 2,
    }
    return PluginInfo.from_dict(_with_explain_param(d), source="models folder")


def _descriptor_info(model: Path, desc_path: Path) -> PluginInfo:
    d = _read_json(desc_path)
    suffix = model.suffix.lower()
    fmt = d.get("format") or {".ts": "torchscript", ".onnx": "onnx"}.get(suffix)
    if fmt is None:  # .pt / .pth: TorchScript archives and state dicts share suffixes
        fmt = "torchscript" if _is_torchscript(model) else "state_dict"
    if fmt not in ("torchscript", "onnx", "state_dict"):
        raise HounsfieldError(f"{desc_path.name} names an unknown model format {fmt!r}.")
    if "task" not in d:
        raise HounsfieldError(f"{desc_path.name} must say the model's task (segmentation or image-to-image).")
    d = {**d, "id": d.get("id") or "model/" + _slug(model.stem), "name": d.get("name", model.stem),
         "entry": f"model:{fmt}", "model_path": str(model)}
    if Task(d["task"]) == Task.SEGMENTATION:
        d.setdefault("explainers", ["probability", "occlusion"] + (["gradcam"] if fmt == "state_dict" else []))
    return PluginInfo.from_dict(_with_explain_param(d), source="models folder")


def _with_explain_param(d: dict) -> dict:
    """Segmentation models get an 'explain' parameter listing the explainers they support."""
    if d.get("task") != Task.SEGMENTATION.value or not d.get("explainers"):
        return d
    params = [p for p in d.get("parameters", []) if p.get("name") != "explain"]
    params.append({"name": "explain", "kind": "choice", "default": d["explainers"][0], "label": "Explanation",
                   "choices": [*d["explainers"], "none"],
                   "help": "How to show why the model decided: its probability map, GradCAM or occlusion."})
    return {**d, "parameters": params}


def _is_torchscript(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return any(n.endswith("/code/") or "/code/" in n for n in z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def scan_models(folder: Path) -> tuple[list[PluginInfo], list[str]]:
    found: list[PluginInfo] = []
    problems: list[str] = []
    if not folder.is_dir():
        return found, problems
    for item in sorted(folder.iterdir()):
        try:
            if item.is_dir() and (item / "configs" / "metadata.json").is_file():
                found.append(_bundle_info(item))
            elif item.is_file() and item.suffix.lower() in MODEL_SUFFIXES:
                desc = item.with_suffix(".json")
                if not desc.is_file():
                    problems.append(f"{item.name} in the models folder has no descriptor {desc.name}; "
                                    "add one to say what the model does.")
                    continue
                found.append(_descriptor_info(item, desc))
        except (HounsfieldError, KeyError, TypeError, ValueError) as exc:
            problems.append(f"{item.name} in the models folder was skipped: {exc}")
    return found, problems


# ------------------------------------------------------------------------------- registry


class Registry:
    """All plugins known to this installation, discovered lazily (JSON only) and cached."""

    def __init__(self, models: Path | str | None = None, *, entry_points: bool = True, builtins: bool = True):
        self.models = Path(models) if models is not None else None
        self.use_entry_points = entry_points
        self.use_builtins = builtins
        self._plugins: dict[str, PluginInfo] | None = None
        self._extra: dict[str, PluginInfo] = {}
        self.problems: list[str] = []

    def refresh(self) -> None:
        self._plugins = None

    def add(self, info: PluginInfo) -> None:
        """Register a plugin programmatically (tests, scripts)."""
        self._extra[info.id] = info
        if self._plugins is not None:
            self._plugins[info.id] = info

    def _discover(self) -> dict[str, PluginInfo]:
        found: list[PluginInfo] = []
        problems: list[str] = []
        root = builtin_dir() if self.use_builtins else None
        if root is not None:
            for manifest in sorted(root.glob(f"*/{MANIFEST}")):
                try:
                    found.append(_manifest_info(manifest, "built-in"))
                except (HounsfieldError, KeyError, TypeError, ValueError) as exc:
                    problems.append(f"The built-in plugin {manifest.parent.name} was skipped: {exc}")
        if self.use_entry_points:
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    found.append(self._entry_point_info(ep))
                except (HounsfieldError, KeyError, TypeError, ValueError, OSError) as exc:
                    problems.append(f"The plugin entry point {ep.name} was skipped: {exc}")
        folder = self.models if self.models is not None else models_dir()
        models, mproblems = scan_models(folder)
        found += models
        problems += mproblems
        plugins: dict[str, PluginInfo] = {}
        for info in found:
            if info.id in plugins:
                problems.append(f"Two plugins share the id {info.id}; the one from {info.source} was left out.")
                continue
            plugins[info.id] = info
        plugins.update(self._extra)
        for p in problems:
            log.warning("plugin discovery: %s", p)
        self.problems = problems
        return plugins

    @staticmethod
    def _entry_point_info(ep) -> PluginInfo:
        if not ep.attr or not ep.attr.endswith(".json"):
            raise HounsfieldError(f"its value {ep.value!r} must name a JSON manifest, as 'package:hounsfield.json'")
        spec = importlib.util.find_spec(ep.module)
        if spec is None or not spec.submodule_search_locations:
            raise HounsfieldError(f"the package {ep.module} was not found")
        path = Path(list(spec.submodule_search_locations)[0]) / ep.attr
        dist = getattr(ep, "dist", None)
        return _manifest_info(path, f"entry point {dist.name if dist else ep.module}")

    def plugins(self) -> list[PluginInfo]:
        if self._plugins is None:
            self._plugins = self._discover()
        return list(self._plugins.values())

    def get(self, plugin_id: str) -> PluginInfo:
        self.plugins()
        assert self._plugins is not None
        if plugin_id in self._plugins:
            return self._plugins[plugin_id]
        matches = [p for p in self._plugins.values() if p.id.split("/")[-1] == plugin_id or p.name == plugin_id]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(sorted(self._plugins)) or "none"
        raise HounsfieldError(f"There is no AI plugin {plugin_id!r} (installed: {known}).")

    def compatible(self, volume) -> list[PluginInfo]:
        """The plugins whose declared input accepts ``volume``."""
        return [p for p in self.plugins() if (p.inputs[0] if p.inputs else InputSpec()).problem(volume) is None]
