"""What a 2D view writes over its image: corner text, orientation letters and the read-out.

Plain functions of the viewing state, so tests can check the words without rendering.
"""

from __future__ import annotations

import numpy as np

from viewer.core.planes import aligned_axis, direction_letters, plane_axes
from viewer.core.viewstate import SeriesState, Viewport

PLANE_TITLES = {"axial": "Axial", "coronal": "Coronal", "sagittal": "Sagittal"}
_POSITION_AXIS = {"axial": 2, "coronal": 1, "sagittal": 0}  # LPS component named by "Pos"


def person_name(dicom_name: str) -> str:
    """'DOE^JOHN^^^' -> 'DOE, JOHN'; empty -> 'Anonymous'."""
    parts = [p for p in dicom_name.split("^") if p]
    if not parts:
        return "Anonymous"
    return ", ".join(parts[:2]) + (" " + " ".join(parts[2:]) if len(parts) > 2 else "")


def dicom_date(text: str) -> str:
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text


def orientation_letters(u, v) -> dict[str, str]:
    return {"right": direction_letters(u), "left": direction_letters(-np.asarray(u)),
            "top": direction_letters(v), "bottom": direction_letters(-np.asarray(v))}


def fmt_number(x: float) -> str:
    return f"{x:.0f}" if abs(x) >= 10 or float(x).is_integer() else f"{x:.3g}"


_SLAB_TITLES = {"mip": "MIP", "minip": "MinIP", "mean": "Mean"}


def image_number(state: SeriesState, plane: str) -> tuple[str, int] | None:
    """("number", count) of the image shown in ``plane``: in the acquired plane the DICOM
    InstanceNumber (what PACS shows and a report dictates) of that slice; in reformats, and in
    volumes without instance numbers (NIfTI, the demo), the 1-based slice index; None when oblique."""
    pos = state.slice_position(plane)
    if pos is None:
        return None
    numbers = state.volume.source.instance_numbers
    acquired = aligned_axis(state.volume, state.axes(plane)[2]) == 2
    if not acquired or len(numbers) != state.volume.shape[0] or all(n is None for n in numbers):
        return str(pos[0]), pos[1]
    number = numbers[min(max(pos[0] - 1, 0), len(numbers) - 1)]
    return ("-" if number is None else str(number)), sum(n is not None for n in numbers)


def corner_texts(state: SeriesState, vp: Viewport, zoom_percent: float, loading: str = "") -> dict[str, str]:
    src, vol = state.volume.source, state.volume
    nk, nj, ni = vol.shape
    top_left = [person_name(src.patient_name)]
    if src.patient_id:
        top_left.append(f"ID: {src.patient_id}")
    study = " ".join(x for x in (dicom_date(src.study_date), src.study_description) if x)
    if study:
        top_left.append(study)
    number = f"Se: {src.series_number}  " if src.series_number is not None else ""
    top_right = [src.series_description] if src.series_description else []
    top_right.append(f"{number}{vol.modality}  {ni} x {nj} x {nk}")
    if loading:
        top_right.append(loading)
    u, v, n = state.axes(vp.plane)
    # only a plane the rotation turned is oblique: the one the axes were turned in keeps its image
    tilted = state.oblique and not np.allclose(n, plane_axes(vp.plane, state.home_rotation)[2], atol=1e-6)
    bottom_left = [PLANE_TITLES[vp.plane] + (" (oblique)" if tilted else "")]
    if vp.slab_mm > 0:
        bottom_left.append(f"{_SLAB_TITLES.get(vp.slab_mode, vp.slab_mode)} slab {vp.slab_mm:g} mm")
    image = image_number(state, vp.plane)
    if image is not None:
        bottom_left.append(f"Im: {image[0]} / {image[1]}")
    if tilted:  # along the normal, signed as the LPS axis it leans on (the axial normal points to the feet)
        axis = _POSITION_AXIS[vp.plane]
        bottom_left.append(f"Pos: {float(state.point @ n) * (1.0 if n[axis] >= 0 else -1.0):.1f} mm")
    else:
        bottom_left.append(f"Pos: {state.point[_POSITION_AXIS[vp.plane]]:.1f} mm")
    center, width = state.window
    wl = f"W: {fmt_number(width)}  L: {fmt_number(center)}"
    bottom_right = [f"{state.preset}" if state.preset else "", wl, f"Zoom: {zoom_percent:.0f}%"]
    if state.invert:
        bottom_right.insert(0, "Inverted")
    return {"top_left": "\n".join(top_left), "top_right": "\n".join(top_right),
            "bottom_left": "\n".join(bottom_left), "bottom_right": "\n".join(x for x in bottom_right if x)}


def readout_text(state: SeriesState, lps) -> str:
    """Status bar read-out under the cursor: value (HU for CT), LPS mm and voxel index."""
    lps = np.asarray(lps, dtype=np.float64)
    where = f"LPS ({lps[0]:.1f}, {lps[1]:.1f}, {lps[2]:.1f}) mm"
    hit = state.value_at(lps)
    if hit is None:
        return where
    value, (i, j, k) = hit
    unit = "HU" if state.volume.units == "HU" else "Value"
    shown = f"{value:.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:.4g}"
    return f"{unit}: {shown}    {where}    voxel ({i}, {j}, {k})"
