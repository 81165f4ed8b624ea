"""The plugin API as plain typed data (no Qt, no torch): what a plugin declares and returns.

A plugin declares a ``PluginInfo`` (normally as JSON in a manifest, read without importing the
plugin) and implements ``run(inputs, params, context) -> Results``:

    class MyPlugin:
        def run(self, inputs: dict[str, Volume], params: dict, context: RunContext) -> Results:
            image = inputs["image"]
            context.progress(0.5, "thinking")
            context.check_cancelled()
            return Results(images=[DerivedImage(...)])

The host builds the parameter form from ``PluginInfo.parameters``, checks the input against
``PluginInfo.inputs``, runs the plugin in the worker process and turns ``Results`` into overlays.

A promptable plugin declares ``"prompts": ["points", "box"]`` in its manifest and reads the
reader's clicks from ``context.prompts`` (a ``Prompts``: positive/negative ``Point``s and an
optional ``Box``, in LPS mm); the host checks them first (``check_prompts``: points off the volume
are dropped with a note, a box is clipped to it) and records them in the results' provenance.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import numpy as np

from viewer.core.codes import Code
from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume

API_VERSION = 1


class Task(enum.StrEnum):
    IMAGE_TO_IMAGE = "image-to-image"
    SEGMENTATION = "segmentation"
    DETECTION = "detection"


class Cancelled(Exception):
    """Raised inside a plugin (by ``RunContext.check_cancelled``) when the user pressed Cancel."""


# ---------------------------------------------------------------------------------------------
# prompts: what a reader clicked (points, a box), in LPS mm

PROMPT_KINDS = ("points", "box")


@dataclass(frozen=True)
class Point:
    """A click in LPS mm; ``positive=False`` marks "not this" (a negative click)."""

    lps: tuple[float, float, float]
    positive: bool = True

    def to_dict(self) -> dict:
        return {"lps_mm": [float(c) for c in self.lps], "positive": bool(self.positive)}


@dataclass(frozen=True)
class Box:
    """An axis-aligned 3D box in LPS mm between two opposite corners (either order)."""

    lo_lps: tuple[float, float, float]
    hi_lps: tuple[float, float, float]

    def normalised(self) -> Box:
        lo, hi = np.minimum(self.lo_lps, self.hi_lps), np.maximum(self.lo_lps, self.hi_lps)
        return Box(tuple(float(v) for v in lo), tuple(float(v) for v in hi))

    def to_dict(self) -> dict:
        return {"lo_lps_mm": [float(c) for c in self.lo_lps], "hi_lps_mm": [float(c) for c in self.hi_lps]}


@dataclass(frozen=True)
class Prompts:
    """The prompts of one run: points (positive and negative, in click order) and an optional box."""

    points: tuple[Point, ...] = ()
    box: Box | None = None

    def __bool__(self) -> bool:
        return bool(self.points) or self.box is not None

    @property
    def positive(self) -> list[Point]:
        return [p for p in self.points if p.positive]

    @property
    def negative(self) -> list[Point]:
        return [p for p in self.points if not p.positive]

    def kinds(self) -> set[str]:
        return ({"points"} if self.points else set()) | ({"box"} if self.box is not None else set())

    def to_dict(self) -> dict:
        return {"points": [p.to_dict() for p in self.points], "box": self.box.to_dict() if self.box else None}

    @classmethod
    def from_dict(cls, d: dict | None) -> Prompts:
        d = d or {}
        points = tuple(Point(tuple(float(c) for c in p["lps_mm"]), bool(p.get("positive", True)))
                       for p in d.get("points", ()))
        b = d.get("box")
        box = Box(tuple(float(c) for c in b["lo_lps_mm"]), tuple(float(c) for c in b["hi_lps_mm"])) if b else None
        return cls(points, box)


def check_prompts(prompts: Prompts | None, volume: Volume, accepted=PROMPT_KINDS,
                  name: str = "The plugin") -> tuple[Prompts, list[str]]:
    """``prompts`` made safe for ``volume``: (the prompts kept, one-sentence notes on what was dropped).

    A kind the plugin does not take is an error; non-finite coordinates are an error; points off
    the volume are dropped (with a note); a box is clipped to the volume, or dropped when it lies
    wholly outside it."""
    prompts = prompts or Prompts()
    unknown = prompts.kinds() - set(accepted)
    if unknown:
        takes = " and ".join(accepted) if accepted else "no prompts"
        raise HounsfieldError(f"{name} does not take {' or '.join(sorted(unknown))} prompts (it takes {takes}).")
    coords = [c for p in prompts.points for c in p.lps]
    if prompts.box is not None:
        coords += [*prompts.box.lo_lps, *prompts.box.hi_lps]
    if coords and not np.all(np.isfinite(np.asarray(coords, np.float64))):
        raise HounsfieldError("A prompt has a coordinate that is not a finite number; give positions in mm.")
    inv = np.linalg.inv(np.asarray(volume.affine, np.float64))
    shape_ijk = np.array(volume.shape[::-1], np.float64)

    def to_ijk(lps):
        return (inv @ np.array([*lps, 1.0]))[:3]

    kept, notes = [], []
    for p in prompts.points:
        ijk = to_ijk(p.lps)
        if np.all(ijk >= -0.5) and np.all(ijk <= shape_ijk - 0.5):
            kept.append(p)
        else:
            kind = "positive" if p.positive else "negative"
            where = ", ".join(f"{c:.1f}" for c in p.lps)
            notes.append(f"The {kind} point at ({where}) mm lies outside the image and was ignored.")
    box = None
    if prompts.box is not None:
        b = prompts.box.normalised()
        a = np.asarray(volume.affine, np.float64)
        ends = [(-0.5, n - 0.5) for n in shape_ijk]
        corners = np.array([(a @ np.array([i, j, k, 1.0]))[:3] for i in ends[0] for j in ends[1] for k in ends[2]])
        lo, hi = np.maximum(b.lo_lps, corners.min(0)), np.minimum(b.hi_lps, corners.max(0))
        if np.any(lo > hi):
            notes.append("The box lies outside the image and was ignored.")
        else:
            box = Box(tuple(float(v) for v in lo), tuple(float(v) for v in hi))
            if not np.allclose(lo, b.lo_lps) or not np.allclose(hi, b.hi_lps):
                notes.append("The box reached beyond the image and was clipped to it.")
    if prompts and not kept and box is None and prompts.points:
        notes.append("No prompt lies inside the image, so there was nothing to segment.")
    return Prompts(tuple(kept), box), notes


# ---------------------------------------------------------------------------------------------
# what a plugin declares


@dataclass(frozen=True)
class InputSpec:
    """What input a plugin accepts.  Empty ``modalities`` accepts any modality."""

    name: str = "image"
    modalities: tuple[str, ...] = ()
    dims: int = 3  # 3: a volume; 2: also single slices (a volume with one k slice)
    spacing_mm: tuple[float, float] | None = None  # accepted in-plane spacing range, mm
    min_slices: int = 1

    def problem(self, volume: Volume) -> str | None:
        """One sentence saying why ``volume`` is not acceptable, or None."""
        if self.modalities and volume.modality.upper() not in {m.upper() for m in self.modalities}:
            return f"it accepts {'/'.join(self.modalities)} images, not {volume.modality}"
        if self.dims == 3 and volume.shape[0] < max(self.min_slices, 1):
            return f"it needs a volume of at least {max(self.min_slices, 2)} slices"
        if self.spacing_mm is not None:
            lo, hi = self.spacing_mm
            px = float(min(volume.spacing[0], volume.spacing[1]))
            if not lo <= px <= hi:
                return f"it accepts pixel spacings of {lo:g} to {hi:g} mm, not {px:.3g} mm"
        return None


@dataclass(frozen=True)
class Parameter:
    """A typed, user-settable parameter; the UI form is generated from these."""

    name: str
    kind: str = "float"  # float | int | bool | choice | str
    default: Any = None
    label: str = ""
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    unit: str = ""

    def coerce(self, value: Any) -> Any:
        """``value`` (possibly a string from the command line) as this parameter's type, checked."""
        label = self.label or self.name
        try:
            if self.kind == "float":
                v: Any = float(value)
            elif self.kind == "int":
                v = int(value)
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(value)
                    v = value.lower() in ("1", "true", "yes", "on")
                else:
                    v = bool(value)
            elif self.kind == "choice":
                v = str(value)
                if v not in self.choices:
                    raise HounsfieldError(f"Parameter {label} must be one of {', '.join(self.choices)}, not {v!r}.")
            else:
                v = str(value)
        except (TypeError, ValueError):
            wanted = {"float": "a number", "int": "a whole number", "bool": "yes or no"}.get(self.kind, "a value")
            raise HounsfieldError(f"Parameter {label} needs {wanted}, not {value!r}.") from None
        if self.kind in ("float", "int"):
            if self.minimum is not None and v < self.minimum or self.maximum is not None and v > self.maximum:
                raise HounsfieldError(f"Parameter {label} must lie between {self.minimum:g} and {self.maximum:g}.")
        return v


@dataclass(frozen=True)
class Figure:
    """One evaluation figure of a model card, e.g. PSNR 38.2 dB on the held-out CT at quarter dose."""

    metric: str
    value: float
    unit: str = ""
    dataset: str = ""
    note: str = ""


@dataclass(frozen=True)
class ModelCard:
    intended_use: str = ""
    training_data: str = ""
    evaluation: tuple[Figure, ...] = ()
    limitations: str = ""
    license: str = ""
    references: tuple[str, ...] = ()
    hardware: str = ""


@dataclass(frozen=True)
class PluginInfo:
    """Everything the host and the UI need to know about a plugin without importing it."""

    id: str
    name: str
    version: str
    task: Task
    inputs: tuple[InputSpec, ...] = (InputSpec(),)
    parameters: tuple[Parameter, ...] = ()
    card: ModelCard = field(default_factory=ModelCard)
    description: str = ""
    # how the worker finds the code: "module:attribute" (a class or a factory), or for model
    # files found in the models folder, "model:<kind>" with ``model_path`` set
    entry: str = ""
    model_path: str = ""
    amp: bool = False  # may run in mixed precision on CUDA
    explainers: tuple[str, ...] = ()  # e.g. ("probability", "gradcam", "occlusion")
    prompts: tuple[str, ...] = ()  # the prompt kinds it takes (PROMPT_KINDS): ("points", "box")
    source: str = "built-in"  # built-in | entry point <dist> | models folder
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.parameters}

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with ``given`` (coerced and checked); unknown names are an error."""
        out = self.defaults()
        by_name = {p.name: p for p in self.parameters}
        for k, v in (given or {}).items():
            if k not in by_name:
                known = ", ".join(by_name) or "none"
                raise HounsfieldError(f"{self.name} has no parameter {k!r} (its parameters: {known}).")
            out[k] = by_name[k].coerce(v)
        return out

    def check_input(self, volume: Volume) -> None:
        spec = self.inputs[0] if self.inputs else InputSpec()
        why = spec.problem(volume)
        if why:
            raise HounsfieldError(f"{self.name} cannot run on this image: {why}.")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["task"] = self.task.value
        return d

    @classmethod
    def from_dict(cls, d: dict, **overrides) -> PluginInfo:
        """Build from a manifest's JSON object (unknown keys go to ``extra``)."""
        d = {**d, **overrides}
        known = {f.name for f in fields(cls)}
        extra = {k: v for k, v in d.items() if k not in known}
        card = d.get("card") or {}
        card = ModelCard(**{**{k: v for k, v in card.items() if k in {f.name for f in fields(ModelCard)}},
                            "evaluation": tuple(Figure(**f) for f in card.get("evaluation", ())),
                            "references": tuple(card.get("references", ()))})
        params = tuple(Parameter(**{**p, "choices": tuple(p.get("choices", ()))}) for p in d.get("parameters", ()))
        inputs = tuple(InputSpec(**{**i, "modalities": tuple(i.get("modalities", ())),
                                    "spacing_mm": tuple(i["spacing_mm"]) if i.get("spacing_mm") else None})
                       for i in d.get("inputs", ({},)))
        try:
            task = Task(d["task"])
        except ValueError:
            raise HounsfieldError(f"Plugin {d.get('id')} declares an unknown task {d['task']!r}.") from None
        return cls(id=str(d["id"]), name=str(d.get("name", d["id"])), version=str(d.get("version", "0")),
                   task=task, inputs=inputs, parameters=params, card=card,
                   description=d.get("description", ""), entry=d.get("entry", ""),
                   model_path=d.get("model_path", ""), amp=bool(d.get("amp", False)),
                   explainers=tuple(d.get("explainers", ())), prompts=_prompt_kinds(d),
                   source=d.get("source", "built-in"),
                   extra={**d.get("extra", {}), **extra})


def _prompt_kinds(d: dict) -> tuple[str, ...]:
    kinds = tuple(str(k) for k in d.get("prompts", ()))
    bad = [k for k in kinds if k not in PROMPT_KINDS]
    if bad:
        raise HounsfieldError(f"Plugin {d.get('id')} declares unknown prompt kinds {', '.join(bad)} "
                              f"(known: {', '.join(PROMPT_KINDS)}).")
    return kinds


# ---------------------------------------------------------------------------------------------
# what a plugin returns


@dataclass
class DerivedImage:
    """A new image on a grid of its own (usually the input's): e.g. the denoised CT."""

    array: np.ndarray
    affine: np.ndarray
    name: str
    modality: str = "OT"
    units: str = ""
    description: str = ""

    def to_volume(self, like: Volume | None = None) -> Volume:
        window = like.window if like is not None else None
        source = like.source if like is not None else None
        kw = {"source": source} if source is not None else {}
        return Volume(self.array, self.affine, modality=self.modality, units=self.units, window=window, **kw)


@dataclass(frozen=True)
class Segment:
    label: int
    name: str
    color: tuple[int, int, int] = (255, 0, 0)
    description: str = ""
    code: Code | None = None  # the segmented property type, e.g. Code("3138006", "SCT", "Bone")

    def __post_init__(self) -> None:
        # API 1 documented a plain (scheme, value, meaning) tuple: such a tuple still means that
        if self.code is not None and not isinstance(self.code, Code):
            c = self.code
            legacy = not isinstance(c, dict) and len(c) == 3 and not hasattr(c, "CodeValue")
            object.__setattr__(self, "code", Code(str(c[1]), str(c[0]), str(c[2])) if legacy else Code.of(c))


@dataclass
class LabelMap:
    """A label map (uint8, uint16 beyond 255 labels) on ``affine``'s grid, with its segments."""

    array: np.ndarray
    affine: np.ndarray
    segments: list[Segment]
    name: str = "segmentation"
    visible: bool = True  # False: context the viewer opens hidden (the lungs around nodules); a click shows it


@dataclass
class Detection:
    """One finding: centre and size in LPS mm, a score in [0, 1], a class name.

    ``attributes``: further JSON-able facts about it (e.g. a nodule's diameters, type, which score
    found it); they go into detections.json beside the fields above, never replacing them."""

    center_lps: tuple[float, float, float]
    size_mm: tuple[float, float, float]
    score: float
    label: str
    description: str = ""
    attributes: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = {"center_lps_mm": [float(c) for c in self.center_lps], "size_mm": [float(s) for s in self.size_mm],
             "score": float(self.score), "label": self.label, "description": self.description}
        return {**self.attributes, **d}


@dataclass
class Heatmap:
    """An explanation map: float32 in [0, 1] on ``affine``'s grid; ``kind`` says what it shows.

    ``unit`` and ``full_scale`` say what its values mean on the colour bar: 1.0 in the map stands
    for ``full_scale`` ``unit`` (a removed-noise map: ``unit="HU", full_scale=100``).  Without a
    unit, a probability map reads "probability" and any other map "relative, 0-1"."""

    array: np.ndarray
    affine: np.ndarray
    name: str
    kind: str = "saliency"  # removed-noise | probability | gradcam | occlusion | saliency
    description: str = ""
    unit: str = ""
    full_scale: float = 1.0

    @property
    def display_unit(self) -> str:
        return heatmap_unit(self.kind, self.unit)


def heatmap_unit(kind: str, unit: str = "") -> str:
    """What a heatmap's values are, for its colour bar: its own unit, else one from its kind."""
    return unit or ("probability" if kind == "probability" else "relative, 0-1")


@dataclass
class Results:
    """What ``run`` returns.  The host adds ``provenance`` (plugin, version, device, parameters).

    A plugin may set ``provenance["effective_parameters"]``: the values it used where a parameter's
    default means "decide for me" (the denoiser's dose 0 = measured); the run line shows those.
    """

    images: list[DerivedImage] = field(default_factory=list)
    label_maps: list[LabelMap] = field(default_factory=list)
    detections: list[Detection] = field(default_factory=list)
    heatmaps: list[Heatmap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    provenance: dict = field(default_factory=dict)

    def arrays(self) -> list[np.ndarray]:
        return ([r.array for r in self.images] + [r.array for r in self.label_maps]
                + [r.array for r in self.heatmaps])

    def is_empty(self) -> bool:
        return not (self.images or self.label_maps or self.detections or self.heatmaps)


# ---------------------------------------------------------------------------------------------
# what the host gives a plugin while it runs


@runtime_checkable
class RunContext(Protocol):
    """Passed to ``run``: progress, cancellation, the device, and helpers that live in the worker."""

    device: str  # "cpu" or "cuda" / "cuda:0"
    amp: bool  # mixed precision allowed for this run (CUDA and the plugin allows it)
    prompts: Prompts  # the reader's points and box, checked by the host (empty when none)

    @property
    def cancelled(self) -> bool: ...

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; cheap, call it often."""

    def check_cancelled(self) -> None:
        """Raise ``Cancelled`` if the user asked to stop; call it between chunks of work."""

    def note(self, message: str) -> None:
        """A one-sentence remark shown to the user with the results."""

    def autocast(self):
        """A context manager: float16 autocast on CUDA when ``amp`` is allowed, else a no-op."""

    def sliding_window(self, predictor, image, roi_size, **kw):
        """MONAI sliding-window inference over a (B, C, *spatial) tensor, with progress and Cancel."""
