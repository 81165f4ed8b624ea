"""Segmentations: label maps on a volume's grid, split into named, coded segments (no Qt, no VTK).

A ``Segmentation`` has the shape and affine of the volume it segments and holds one or more
*layers*: label maps ``[k, j, i]`` of uint8 (uint16 once a segment number passes 255).  Each
``Segment`` lives in exactly one layer and is stored there as its own number (``value ==
number``), so a layer is a plain label map that any tool reads.  Segments of one layer never
overlap; when two segments must share voxels (an imported overlapping DICOM SEG, a structure
inside an organ) the second goes to another layer (``add_segment(..., layer="new")``), and the
views draw every layer.  Most segmentations have a single layer.

Every segment carries what DICOM SEG needs: a name, a display colour, its coded category and
type (SNOMED CT triplets; defaults from ``resources/presets/segment_terminology.json``), and its
provenance: the algorithm (name, version) and type (MANUAL, SEMIAUTOMATIC, AUTOMATIC), and
whether a person edited it.  Editing an AUTOMATIC segment makes it SEMIAUTOMATIC.

Voxels change only through ``write`` (used by ``viewer.core.edits``), which emits ``changed``
with the layer and the box that changed; metadata changes emit ``segments_changed``; new or
retyped layers emit ``layers_changed``.
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import asdict, dataclass, field

import numpy as np

from viewer.core.codes import AlgorithmType, Code
from viewer.core.signals import Signal
from viewer.core.volume import Volume
from viewer.paths import resources_dir

Box = tuple[slice, slice, slice]  # [k, j, i] slices

TISSUE = Code("85756007", "SCT", "Tissue")
# Distinct, readable colours over grey CT for segments without a table colour.
PALETTE = ((230, 80, 60), (60, 180, 230), (250, 200, 40), (120, 210, 90), (200, 90, 220), (250, 140, 40),
           (40, 210, 190), (240, 110, 170), (150, 130, 250), (190, 230, 60))


@functools.lru_cache(maxsize=1)
def terminology() -> dict[str, dict]:
    """Default terminology by lower-case name: {"category": Code, "type": Code, "color": (r, g, b)}."""
    try:
        path = resources_dir() / "presets" / "segment_terminology.json"
    except FileNotFoundError:
        path = None
    if path is not None and path.is_file():
        entries = json.loads(path.read_text())["entries"]
        return {e["name"].lower(): {"name": e["name"], "category": Code.of(e["category"]),
                                    "type": Code.of(e["type"]), "color": tuple(e["color"])} for e in entries}
    return {"tissue": {"name": "Tissue", "category": TISSUE, "type": TISSUE, "color": (128, 174, 128)}}


@dataclass(eq=False)
class Segment:
    number: int  # 1-based, unique in its segmentation; the DICOM segment number and the stored label value
    name: str
    color: tuple[int, int, int]
    category: Code = TISSUE
    type: Code = TISSUE
    layer: int = 0
    visible: bool = True
    locked: bool = False
    algorithm_type: AlgorithmType = AlgorithmType.MANUAL
    algorithm_name: str = ""
    algorithm_version: str = ""
    edited: bool = False  # changed by a person after it was made
    description: str = ""
    # how the algorithm was run (DICOM Algorithm Parameters): e.g. a promptable model's method and the
    # reader's clicks, {"method": "geodesic", "prompts": "+(x y z) -(x y z)"}; values without commas
    algorithm_parameters: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["color"], d["category"], d["type"] = list(self.color), list(self.category), list(self.type)
        d["algorithm_type"] = str(self.algorithm_type)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Segment:
        d = dict(d)
        d["color"] = tuple(int(c) for c in d["color"])
        d["category"], d["type"] = Code.of(d["category"]), Code.of(d["type"])
        if "algorithm_type" in d:
            d["algorithm_type"] = AlgorithmType(d["algorithm_type"])
        return cls(**d)

    @property
    def provenance(self) -> str:
        if self.algorithm_type == AlgorithmType.MANUAL:
            return "drawn by hand"
        algo = " ".join(x for x in (self.algorithm_name, self.algorithm_version) if x) or "an algorithm"
        return f"{algo}, edited by a person" if self.edited else algo


class Segmentation:
    """Segments of one volume, stored as label-map layers on the volume's grid."""

    def __init__(self, shape, affine, name: str = "Segmentation", *, series_uid: str = "",
                 frame_of_reference_uid: str = "", uid: str | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.affine = np.asarray(affine, dtype=np.float64)
        self.name = name
        self.series_uid = series_uid
        self.frame_of_reference_uid = frame_of_reference_uid
        self.uid = uid or uuid.uuid4().hex
        self.layers: list[np.ndarray] = [np.zeros(self.shape, np.uint8)]
        self.segments: list[Segment] = []
        self.active: int | None = None  # number of the segment the editing tools work on
        self.visible = True  # display of the whole segmentation (not journaled)
        self.opacity = 0.4  # fill opacity
        self.display_mode = "both"  # "both", "fill" or "outline"
        self.changed = Signal()  # (layer index, box): voxels changed
        self.segments_changed = Signal()  # segments added, removed, renamed, recoloured, shown, locked
        self.layers_changed = Signal()  # a layer was added or its dtype widened
        self.style_changed = Signal()  # visible, opacity or display mode

    def set_style(self, *, visible: bool | None = None, opacity: float | None = None,
                  display_mode: str | None = None) -> None:
        if display_mode is not None and display_mode not in ("both", "fill", "outline"):
            raise ValueError(f"unknown display mode {display_mode!r}")
        if visible is not None:
            self.visible = bool(visible)
        if opacity is not None:
            self.opacity = float(np.clip(opacity, 0.0, 1.0))
        if display_mode is not None:
            self.display_mode = display_mode
        self.style_changed.emit()

    @classmethod
    def for_volume(cls, volume: Volume, name: str = "Segmentation", **kw) -> Segmentation:
        src = volume.source
        return cls(volume.shape, volume.affine, name, series_uid=src.series_instance_uid,
                   frame_of_reference_uid=src.frame_of_reference_uid, **kw)

    # geometry
    @property
    def spacing(self) -> np.ndarray:
        return np.linalg.norm(self.affine[:3, :3], axis=0)

    def matches(self, volume: Volume) -> bool:
        return tuple(volume.shape) == self.shape and np.allclose(volume.affine, self.affine, atol=1e-4)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.layers)

    # segments
    def segment(self, number: int) -> Segment:
        for s in self.segments:
            if s.number == number:
                return s
        raise KeyError(f"no segment number {number}")

    def by_name(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    @property
    def active_segment(self) -> Segment | None:
        try:
            return self.segment(self.active) if self.active is not None else None
        except KeyError:
            return None

    def set_active(self, number: int | None) -> None:
        if number != self.active:
            self.active = number
            self.segments_changed.emit()

    def add_segment(self, name: str | None = None, color=None, *, category: Code | None = None,
                    type: Code | None = None, layer: int | str = 0,  # noqa: A002
                    algorithm_type: AlgorithmType | str = AlgorithmType.MANUAL,
                    algorithm_name: str = "", algorithm_version: str = "", description: str = "",
                    number: int | None = None, algorithm_parameters: dict | None = None) -> Segment:
        """A new, empty segment.  Terminology and colour default from the table entry named ``name``
        (e.g. "Liver"); ``layer="new"`` puts it in a fresh layer (to overlap others)."""
        try:
            algorithm_type = AlgorithmType(algorithm_type)
        except ValueError:
            raise ValueError(f"unknown algorithm type {algorithm_type!r}") from None
        number = number or (max((s.number for s in self.segments), default=0) + 1)
        if any(s.number == number for s in self.segments):
            raise ValueError(f"segment number {number} is taken")
        name = name or f"Segment {number}"
        entry = terminology().get(name.lower(), {})
        color = tuple(int(c) for c in (color or entry.get("color") or PALETTE[(number - 1) % len(PALETTE)]))
        if layer == "new":
            layer = self.add_layer()
        self._ensure_dtype(int(layer), number)
        seg = Segment(number, name, color, Code.of(category or entry.get("category") or TISSUE),
                      Code.of(type or entry.get("type") or TISSUE), int(layer), algorithm_type=algorithm_type,
                      algorithm_name=algorithm_name, algorithm_version=algorithm_version, description=description,
                      algorithm_parameters={str(k): str(v) for k, v in (algorithm_parameters or {}).items()})
        self.segments.append(seg)
        if self.active is None:
            self.active = number
        self.segments_changed.emit()
        return seg

    def update_segment(self, seg: Segment, **changes) -> None:
        """Set name, color, visible, locked, category, type, description, ... and tell observers."""
        for key, value in changes.items():
            if not hasattr(seg, key) or key in ("number", "layer"):
                raise AttributeError(f"a segment's {key!r} cannot be set this way")
            if key in ("category", "type"):
                value = Code.of(value)
            elif key == "color":
                value = tuple(value)
            elif key == "algorithm_type":
                value = AlgorithmType(value)
            setattr(seg, key, value)
        self.segments_changed.emit()

    def add_layer(self) -> int:
        self.layers.append(np.zeros(self.shape, np.uint8))
        self.layers_changed.emit()
        return len(self.layers) - 1

    def _ensure_dtype(self, layer: int, number: int) -> None:
        if number > 255 and self.layers[layer].dtype == np.uint8:
            self.layers[layer] = self.layers[layer].astype(np.uint16)
            self.layers_changed.emit()

    # voxels
    def mask(self, seg: Segment, box: Box | None = None) -> np.ndarray:
        data = self.layers[seg.layer] if box is None else self.layers[seg.layer][box]
        return data == seg.number

    def bbox(self, seg: Segment, margin: int = 0) -> Box | None:
        """The box (slices in k, j, i) holding the segment's voxels, grown by ``margin``; None if empty."""
        return bbox_of(self.layers[seg.layer] == seg.number, margin)

    def count(self, seg: Segment) -> int:
        return int(np.count_nonzero(self.layers[seg.layer] == seg.number))

    def volume_ml(self, seg: Segment) -> float:
        return self.count(seg) * float(abs(np.linalg.det(self.affine[:3, :3]))) / 1000.0

    def write(self, layer: int, box: Box, data: np.ndarray) -> None:
        """Store ``data`` in ``layers[layer][box]`` (the one place voxels change) and tell observers."""
        self.layers[layer][box] = data
        self.changed.emit(layer, box)

    def label_map(self) -> np.ndarray:
        """All segments in one label map of segment numbers (later layers win where layers overlap)."""
        if len(self.layers) == 1:
            return self.layers[0]
        dtype = np.uint16 if any(a.dtype == np.uint16 for a in self.layers) else np.uint8
        out = self.layers[0].astype(dtype)
        for layer in self.layers[1:]:
            np.copyto(out, layer, where=layer != 0)
        return out

    def overlapping(self) -> bool:
        if len(self.layers) < 2:
            return False
        count = sum((a != 0).astype(np.uint8) for a in self.layers)
        return bool((count > 1).any())

    # metadata snapshot (undo of segment changes, the journal)
    def meta(self) -> dict:
        return {"name": self.name, "active": self.active, "segments": [s.to_dict() for s in self.segments],
                "layers": [str(a.dtype) for a in self.layers]}

    def set_meta(self, meta: dict) -> None:
        self.name = meta.get("name", self.name)
        self.active = meta.get("active")
        self.segments = [Segment.from_dict(d) for d in meta["segments"]]
        dtypes = meta.get("layers", [str(a.dtype) for a in self.layers])
        relayered = False
        for n, dt in enumerate(dtypes):
            if n >= len(self.layers):
                self.layers.append(np.zeros(self.shape, dt))
                relayered = True
            elif str(self.layers[n].dtype) != dt:
                self.layers[n] = self.layers[n].astype(dt)
                relayered = True
        if relayered:
            self.layers_changed.emit()
        self.segments_changed.emit()


def bbox_of(mask: np.ndarray, margin: int = 0) -> Box | None:
    """The smallest box (slices) holding every True voxel of a 3D mask, grown by ``margin``."""
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        if hit.size == 0:
            return None
        out.append(slice(max(0, int(hit[0]) - margin), min(mask.shape[axis], int(hit[-1]) + 1 + margin)))
    return tuple(out)


def from_label_map(volume: Volume, array: np.ndarray, segments: list[dict] | None = None, *,
                   name: str = "Segmentation", algorithm_name: str = "", algorithm_version: str = "",
                   algorithm_type: AlgorithmType | str = AlgorithmType.AUTOMATIC) -> Segmentation:
    """A segmentation made from a label map on ``volume``'s grid (an AI plugin's output).

    ``segments``: [{"label": 1, "name": "Liver", "color": (r, g, b), "code": (value, scheme, meaning)
    or "category"/"type"}, ...]; labels without an entry get a default name.  Label values become
    segment numbers when they fit; otherwise they are renumbered 1..n.
    """
    array = np.asarray(array)
    if tuple(array.shape) != tuple(volume.shape):
        raise ValueError(f"the label map's shape {array.shape} is not the volume's {volume.shape}")
    seg = Segmentation.for_volume(volume, name)
    labels = [int(v) for v in np.unique(array) if v != 0]
    info = {int(d.get("label", n + 1)): d for n, d in enumerate(segments or [])}
    labels = sorted(set(labels) | set(info))
    numbers = {lab: (lab if 0 < lab < 65536 else n + 1) for n, lab in enumerate(labels)}
    for lab in labels:
        d = info.get(lab, {})
        code = d.get("type") or d.get("code")
        seg.add_segment(d.get("name") or f"Label {lab}", d.get("color"), category=d.get("category"),
                        type=Code.of(code) if code else None, algorithm_type=algorithm_type,
                        algorithm_name=algorithm_name, algorithm_version=algorithm_version,
                        description=d.get("description", ""), number=numbers[lab])
    dtype = np.uint16 if max(numbers.values(), default=0) > 255 else np.uint8
    if all(numbers[lab] == lab for lab in labels):
        seg.layers[0] = array.astype(dtype, copy=True)
    else:
        lut = np.zeros(int(array.max()) + 1, dtype)
        for lab, num in numbers.items():
            if lab < lut.size:
                lut[lab] = num
        seg.layers[0] = lut[array]
    seg.active = min(numbers.values(), default=None)
    return seg


def add_masks(seg: Segmentation, masks: list[tuple[Segment, np.ndarray]]) -> None:
    """Put full-grid boolean masks into their segments, giving a segment a new layer where it
    would overlap another one (import of overlapping DICOM SEG)."""
    for s, m in masks:
        layer = next((n for n, a in enumerate(seg.layers) if not (a[m] != 0).any()), None)
        if layer is None:
            layer = seg.add_layer()
        seg._ensure_dtype(layer, s.number)
        s.layer = layer
        seg.layers[layer][m] = s.number
    seg.layers_changed.emit()
    seg.segments_changed.emit()


def read_segmentation_file(path, volume) -> Segmentation:
    """A DICOM SEG or a label map file (NIfTI, NRRD, ...) drawn on ``volume``, as a Segmentation."""
    from viewer.core.io.seg_dicom import is_dicom_seg, read_dicom_seg

    if is_dicom_seg(path):
        return read_dicom_seg(path, volume)
    from viewer.core.io.labelmap_files import read_labelmap

    return read_labelmap(path, volume)


def write_segmentation_file(seg: Segmentation, volume, path) -> list[str]:
    """``seg`` as a DICOM SEG (a ``.dcm`` path) or a label map file (NIfTI, NRRD, ...); the files written."""
    if str(path).lower().endswith(".dcm"):
        from viewer.core.io.seg_dicom import write_dicom_seg

        return [str(write_dicom_seg(seg, volume, path, series_description=f"SEG {seg.name}"))]
    from viewer.core.io.labelmap_files import write_labelmap

    return [str(p) for p in write_labelmap(seg, path)]
