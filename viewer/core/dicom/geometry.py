"""Stack geometry: sort frames along the slice normal and derive the (i, j, k) -> LPS affine.

Sorting uses each frame's ImagePositionPatient projected on the normal of its
ImageOrientationPatient, never file names or InstanceNumber alone.  The k column of the affine
is the actual step between slice positions, so a gantry-tilted stack keeps exact geometry (a
sheared affine) and is reported.  Missing slices on an otherwise regular grid are kept as
blank slots so that every loaded slice sits at its true position; irregular spacing is loaded
at the mean step and reported.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from viewer.core.dicom.series import FrameRef


@dataclass
class StackGeometry:
    frames: list[FrameRef]  # sorted along the normal
    slots: list[int]  # array index k of each sorted frame (gaps leave slots empty)
    depth: int  # number of k slices in the volume
    affine: np.ndarray
    warnings: list[str] = field(default_factory=list)
    tilt_degrees: float = 0.0


def _fmt(x: float) -> str:
    return f"{x:.1f}"


def stack_geometry(frames: list[FrameRef]) -> StackGeometry:
    first = frames[0].frame
    warnings: list[str] = []
    if first.orientation is None or first.position is None:
        # Secondary captures and the like: no patient geometry.  Keep file order by instance number.
        frames = sorted(frames, key=lambda f: (f.instance.instance_number or 0, f.frame.index or 0))
        spacing = first.pixel_spacing or (1.0, 1.0)
        affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
        warnings.append("The images carry no patient position or orientation; geometry is approximate.")
        return StackGeometry(frames, list(range(len(frames))), len(frames), affine, warnings)

    o = np.asarray(first.orientation, dtype=np.float64)
    row_dir, col_dir = o[:3], o[3:]
    normal = np.cross(row_dir, col_dir)
    positions = np.asarray([f.frame.position for f in frames], dtype=np.float64)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    positions, dist = positions[order], dist[order]

    spacing = first.pixel_spacing or (1.0, 1.0)
    if first.pixel_spacing is None:
        warnings.append("The images carry no pixel spacing; 1 mm was assumed.")
    affine = np.eye(4)
    affine[:3, 0] = row_dir * spacing[1]  # i runs along a row: step = column spacing
    affine[:3, 1] = col_dir * spacing[0]  # j runs down a column: step = row spacing
    affine[:3, 3] = positions[0]

    n = len(frames)
    slots = list(range(n))
    depth = n
    tilt = 0.0
    if n == 1:
        thickness = frames[0].instance.slice_thickness or 1.0
        affine[:3, 2] = normal * thickness
        return StackGeometry(frames, slots, depth, affine, warnings)

    steps = np.diff(dist)
    if np.any(steps < 1e-3):
        warnings.append(f"{int(np.sum(steps < 1e-3))} slices share a position with another; "
                        "they are stacked in order but geometry is approximate.")
    step = float(np.median(steps))
    if step <= 1e-3:
        step = float(np.mean(steps)) if np.mean(steps) > 1e-3 else 1.0

    ratios = steps / step
    multiples = np.rint(ratios)
    regular = np.allclose(ratios, multiples, atol=0.05) and np.all(multiples >= 1)
    if regular and np.any(multiples > 1):
        slots = [0, *np.cumsum(multiples).astype(int).tolist()]
        depth = slots[-1] + 1
        for a, m in zip(np.flatnonzero(multiples > 1), multiples[multiples > 1]):
            warnings.append(f"{int(m) - 1} slice(s) missing between {_fmt(dist[a])} and "
                            f"{_fmt(dist[a + 1])} mm along the slice normal; left blank.")
        k_vec = (positions[-1] - positions[0]) / (depth - 1)
    else:
        if not np.allclose(steps, step, rtol=0.01, atol=0.01):
            warnings.append(f"Slice spacing is not uniform ({_fmt(steps.min())} to {_fmt(steps.max())} mm); "
                            f"loaded at the mean step of {_fmt((dist[-1] - dist[0]) / (n - 1))} mm.")
        k_vec = (positions[-1] - positions[0]) / (n - 1)
    affine[:3, 2] = k_vec

    cosang = abs(float(np.dot(k_vec, normal))) / max(np.linalg.norm(k_vec), 1e-9)
    tilt = float(np.degrees(np.arccos(min(1.0, cosang))))
    if tilt > 0.01:
        warnings.append(f"Gantry tilt of {tilt:.2f} degrees: slices are sheared relative to their normal "
                        "(geometry kept exact in the affine).")
    return StackGeometry(frames, slots, depth, affine, warnings, tilt)
