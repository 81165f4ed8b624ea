"""Hanging protocols: how a study is laid out when it opens and when a prior is added.  No Qt.

A protocol is data (``resources/hanging_protocols/*.json``, and the reader's own rules in
``<config dir>/hanging_protocols/``, which win over the defaults)::

    {"name": "CT chest with prior",
     "match": {"modality": "CT", "body_part": ["CHEST", "THORAX", "LUNG"], "priors": 1},
     "layout": "1x3",                      # 1x1, 1x3, 2x2, or null: keep the reader's layout
     "slots": [{"series": "current", "plane": "axial", "window": "Lung"},
               {"series": "prior", "plane": "axial", "window": "Lung"},
               {"series": "current", "plane": "coronal", "window": "Lung"}]}

``match``: ``modality`` (empty: any); ``body_part``: words of which one must appear in the study's
BodyPartExamined or its study/series description (empty: any); ``priors``: how many prior studies
are shown (0: the study alone, 1: with a prior); ``series``: words each of which must name one of
the current study's series (brain MR: T1 and FLAIR).  A slot's ``series`` is ``current`` or
``prior``, optionally with ``description`` (a word its series description must hold); ``plane`` is
axial, coronal, sagittal (slots 0-2) or 3d (slot 3); ``window`` is a preset name of the modality
(``window_level.json``), ``default`` (the study's own), ``auto`` or ``[centre, width]``; the window
belongs to the series (each series has one window in every view).

    protocols = load_protocols()
    rule = best_match(protocols, StudyContext("CT", "CHEST", priors=1))
    apply(model, rule, {"current": key, "prior": prior_key})
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from viewer.core.errors import HounsfieldError
from viewer.paths import config_dir, resources_dir

ROLES = ("current", "prior")
SLOT_PLANES = ("axial", "coronal", "sagittal", "3d")
LAYOUTS = ("1x1", "1x3", "2x2")


@dataclass(frozen=True)
class SlotRule:
    series: str = "current"  # current or prior
    plane: str = "axial"
    window: str | tuple[float, float] | None = None  # preset name, "default", "auto", (c, w) or None: keep
    description: str = ""  # a word the series description must hold (T1, FLAIR); "" any

    @property
    def role(self) -> str:
        return f"{self.series}:{self.description.lower()}" if self.description else self.series

    def to_json(self) -> dict:
        out = {"series": self.series, "plane": self.plane}
        if self.description:
            out["description"] = self.description
        if self.window is not None:
            out["window"] = list(self.window) if isinstance(self.window, tuple) else self.window
        return out


@dataclass(frozen=True)
class Protocol:
    name: str
    modality: str = ""
    body_part: tuple[str, ...] = ()
    priors: int = 0
    series: tuple[str, ...] = ()  # words naming series the current study must hold
    layout: str | None = None
    slots: tuple[SlotRule, ...] = ()
    path: str = ""
    user: bool = False  # the reader's own rule (wins over the defaults)

    def to_json(self) -> dict:
        match: dict = {"modality": self.modality}
        if self.body_part:
            match["body_part"] = list(self.body_part)
        match["priors"] = self.priors
        if self.series:
            match["series"] = list(self.series)
        return {"name": self.name, "match": match, "layout": self.layout,
                "slots": [s.to_json() for s in self.slots]}


@dataclass
class StudyContext:
    """What a protocol is matched against."""

    modality: str
    body_part: str = ""  # BodyPartExamined and the study/series descriptions, upper case
    priors: int = 0  # prior studies shown
    series_descriptions: tuple[str, ...] = field(default_factory=tuple)  # the current study's series


def _words(text: str) -> set[str]:
    return set(re.findall(r"[A-Z0-9]+", text.upper()))


def _has_word(text: str, word: str) -> bool:
    """``word`` (T1, FLAIR, CHEST) in ``text`` as a word or a word's start (T1 in T1_MPR, T1W)."""
    word = word.upper()
    return any(w == word or w.startswith(word) for w in _words(text))


def _parse(data: dict, path: str = "", user: bool = False) -> Protocol:
    where = Path(path).name or "a hanging protocol"
    try:
        match = data.get("match", {})
        slots = []
        for s in data.get("slots", []):
            window = s.get("window")
            if isinstance(window, list):
                window = (float(window[0]), float(window[1]))
            slot = SlotRule(str(s.get("series", "current")), str(s.get("plane", "axial")), window,
                            str(s.get("description", "")))
            if slot.series not in ROLES or slot.plane not in SLOT_PLANES:
                raise ValueError(f"slot {slot}")
            slots.append(slot)
        layout = data.get("layout")
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout {layout}")
        if len(slots) > 4:
            raise ValueError("more than 4 slots")
        for n, slot in enumerate(slots):
            if (slot.plane == "3d") != (n == 3):
                raise ValueError("only slot 4 is 3D")
        return Protocol(str(data["name"]), str(match.get("modality", "")).upper(),
                        tuple(str(b).upper() for b in match.get("body_part", [])), int(match.get("priors", 0)),
                        tuple(str(w) for w in match.get("series", [])), layout, tuple(slots), path, user)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise HounsfieldError(f"The hanging protocol {where} is not valid ({exc}); fix or delete the file.") from exc


def default_dir() -> Path:
    return resources_dir() / "hanging_protocols"


def user_dir() -> Path:
    return config_dir() / "hanging_protocols"


def load_protocols(errors: list[str] | None = None) -> list[Protocol]:
    """The reader's rules, then the defaults.  A broken file is skipped; its sentence goes to
    ``errors`` when given (raised otherwise)."""
    out = []
    for folder, user in ((user_dir(), True), (default_dir(), False)):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                with open(path, encoding="utf-8") as f:
                    out.append(_parse(json.load(f), str(path), user))
            except (OSError, json.JSONDecodeError) as exc:
                err = HounsfieldError(f"The hanging protocol {path.name} cannot be read ({exc}); fix or delete it.")
                if errors is None:
                    raise err from exc
                errors.append(str(err))
            except HounsfieldError as exc:
                if errors is None:
                    raise
                errors.append(str(exc))
    return out


def score(rule: Protocol, ctx: StudyContext) -> int | None:
    """How well ``rule`` fits (higher is better); None when it does not apply."""
    if rule.priors != ctx.priors:
        return None
    if rule.modality and rule.modality != ctx.modality.upper():
        return None
    total = 4 if rule.modality else 0
    if rule.body_part:
        if not any(_has_word(ctx.body_part, b) for b in rule.body_part):
            return None
        total += 2
    for word in rule.series:
        if not any(_has_word(d, word) for d in ctx.series_descriptions):
            return None
        total += 1
    return total + (100 if rule.user else 0)


def best_match(protocols: list[Protocol], ctx: StudyContext) -> Protocol | None:
    """The best-fitting rule (the reader's own first, then the most specific); None when none fits."""
    best, best_score = None, -1
    for rule in protocols:  # on a tie the first listed wins (user rules are listed first)
        s = score(rule, ctx)
        if s is not None and s > best_score:
            best, best_score = rule, s
    return best


def context_of(volume, priors: int = 0, body_part: str = "", series_descriptions=()) -> StudyContext:
    """The context of an opened volume: its modality, body part (BodyPartExamined when known, and the
    descriptions), how many priors are shown and the descriptions of its study's series."""
    src = volume.source
    text = " ".join(x for x in (body_part, src.study_description, src.series_description) if x)
    return StudyContext(volume.modality or "", text.upper(), priors, tuple(series_descriptions))


# applying
def window_for(spec, volume, loaded=None) -> tuple[tuple[float, float], str] | None:
    """((centre, width), preset name) for a slot's ``window``; None: leave the window as it is."""
    if spec is None:
        return None
    if isinstance(spec, tuple):
        return (float(spec[0]), float(spec[1])), ""
    if spec == "default":
        return None  # the caller uses the series' own (home) window
    from viewer.core.windowing import auto_window

    if spec == "auto":
        return auto_window(volume, loaded), ""
    table = _preset_table()
    for preset in table.get(volume.modality, table.get("default", [])):
        if preset["name"].lower() == str(spec).lower():
            if preset.get("auto"):
                return auto_window(volume, loaded), preset["name"]
            return (float(preset["center"]), float(preset["width"])), preset["name"]
    return None


def _preset_table() -> dict:
    with open(resources_dir() / "presets" / "window_level.json", encoding="utf-8") as f:
        return json.load(f)


def series_for(slot: SlotRule, keys: dict[str, str]) -> str | None:
    """The series key a slot shows: by its role with description (``current:flair``), else its role."""
    return keys.get(slot.role) or keys.get(slot.series)


def apply(model, rule: Protocol, keys: dict[str, str]) -> list[int]:
    """Lay out ``model`` (a ViewerModel) by ``rule``: ``keys`` maps ``current``, ``prior`` (and
    ``current:flair``-style roles) to opened series keys.  Slots whose series is not open keep what
    they show.  Returns the slots it changed."""
    changed = []
    windows: dict[str, object] = {}
    for n, slot in enumerate(rule.slots):
        key = series_for(slot, keys)
        if key is None or key not in model.series:
            continue
        if n < 3:
            model.set_plane(n, slot.plane)
        model.show_series(n, key)
        changed.append(n)
        if slot.window is not None:
            windows[key] = slot.window
    for key, spec in windows.items():
        state = model.series[key]
        if spec == "default":
            state.set_window(*state.home_window)
            continue
        found = window_for(spec, state.volume, state.loaded)
        if found is not None:
            state.set_window(*found[0], preset=found[1])
    if rule.layout is not None:
        model.set_layout(rule.layout)
    return changed


def rule_from_model(model, name: str, keys: dict[str, str], modality: str, body_part: str = "") -> Protocol:
    """A rule that reproduces what ``model`` shows now: its layout, each slot's plane, series role
    (``keys``: role -> series key) and the window (a preset's name, else centre and width)."""
    # a series with several roles (current and current:t1) is saved by its plain one (current, prior)
    roles = {v: k for k, v in sorted(keys.items(), key=lambda kv: ":" not in kv[0])}
    slots = []
    for vp in model.viewports:
        role = roles.get(vp.series)
        if role is None:
            break
        series, _, desc = role.partition(":")
        state = model.series[vp.series]
        window = state.preset or (round(state.window[0], 1), round(state.window[1], 1))
        slots.append(SlotRule(series, vp.plane, window, desc.upper() if desc else ""))
    priors = int(any(s.series == "prior" for s in slots))
    return Protocol(name, modality.upper(), (body_part.upper(),) if body_part else (), priors, (),
                    model.layout, tuple(slots), user=True)


def save_user_rule(rule: Protocol) -> Path:
    """Write ``rule`` into the reader's hanging-protocol folder (a rule of the same name is replaced)."""
    folder = user_dir()
    folder.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^a-z0-9]+", "-", rule.name.lower()).strip("-") or "protocol"
    path = folder / f"{slug}.json"
    try:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(rule.to_json(), f, indent=2)
    except OSError as exc:
        raise HounsfieldError(f"The hanging protocol cannot be saved in {folder} ({exc.strerror}); "
                              "check that the folder is writable.") from exc
    return path
