"""Stack geometry: sort frames along the slice normal and derive the (i, j, k) -> LPS affine.

Sorting uses each frame's ImagePositionPatient projected on the normal of its
ImageOrientationPatient, never file names or InstanceNumber alone.  The k column of the affine
is the actual step between slice positions, so a gantry-tilted stack keeps exact geometry (a
sheared affine) and is reported.  Missing slices on an otherwise regular grid are kept as
blank slots so that every loaded slice sits at its true position; irregular spacing is loaded
at the mean step and reported.

Damaged geometry never reaches the affine (a NaN or singular affine silently breaks every
distance): a frame whose position is missing or not a finite number is left out (a blank slot);
a pixel spacing that is not a positive finite number becomes 1 mm; an orientation that is not two
perpendicular directions is rebuilt from the slice positions (the true slice step, and the usual
display convention for the in-plane signs).  Each repair is a warning in ``volume.warnings``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from viewer.core.errors import HounsfieldError

if TYPE_CHECKING:
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


_MAX_MM = 1e5  # 100 m: a coordinate or spacing beyond this is a damaged value, not a patient
_ORIENTATION_REBUILT = ("The image orientation (ImageOrientationPatient) is damaged; it was rebuilt from the slice "
                        "positions, so distances are right but the orientation labels may be wrong.")


def finite(values, n: int) -> np.ndarray | None:
    """``values`` as n finite floats of sane size, or None (missing, unparsable, NaN, infinite)."""
    if values is None:
        return None
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return a if a.shape == (n,) and np.all(np.isfinite(a)) and np.all(np.abs(a) < _MAX_MM) else None


def frame_position(frame) -> np.ndarray | None:
    return finite(frame.position, 3)


def frame_spacing(frame) -> np.ndarray | None:
    """(between rows, between columns) in mm when both are positive finite numbers."""
    a = finite(frame.pixel_spacing, 2)
    return a if a is not None and np.all(a > 1e-6) else None


def _unit(v: np.ndarray | None) -> np.ndarray | None:
    if v is None:
        return None
    n = float(np.linalg.norm(v))
    return v / n if n > 1e-3 else None


def _display_sign(v: np.ndarray) -> np.ndarray:
    """``v`` pointing as DICOM images are usually displayed: rows and columns run towards the
    patient's left or posterior, or towards the feet (decided on the largest component)."""
    d = int(np.argmax(np.abs(v)))
    return -v if (v[d] < 0) != (d == 2) else v


def _line(positions: np.ndarray) -> np.ndarray | None:
    """The unit direction along which slice positions spread (None when they do not)."""
    if len(positions) < 2:
        return None
    _, s, vt = np.linalg.svd(positions - positions.mean(axis=0), full_matrices=False)
    return vt[0] if s[0] > 1e-3 else None


def _triplets(orientation) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The row and column directions of an orientation as unit vectors; None for each one damaged."""
    try:
        a = np.asarray(orientation, dtype=np.float64).reshape(6)
    except (TypeError, ValueError):
        return None, None
    return _unit(finite(a[:3], 3)), _unit(finite(a[3:], 3))


def resolve_axes(orientation, positions: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, bool]:
    """Unit row and column directions (None, None when unknown) and whether they were rebuilt.

    A sound orientation is kept as it is.  A damaged one (a direction missing, zero, not finite,
    or the two not perpendicular) is rebuilt from ``positions`` (valid ones, at least two apart):
    what survives of it is kept, the rest is made perpendicular to the line the slices lie on.
    """
    row, col = _triplets(orientation)
    if row is not None and col is not None and abs(float(row @ col)) < 0.01:
        return row, col, False
    if orientation is None:
        return None, None, False  # no orientation at all (secondary captures): not damaged, absent
    line = _line(positions)
    if line is None:
        return None, None, False
    if row is not None and col is not None:  # both there but not perpendicular: keep one in the image plane
        if abs(float(row @ line)) <= abs(float(col @ line)):  # collinear: the row (first) survives
            col = None
        else:
            row = None
    # a direction along the stack cannot lie in the image plane (gantry tilts stay well below 45 degrees)
    row = row if row is not None and abs(float(row @ line)) < 0.7 else None
    col = col if col is not None and abs(float(col @ line)) < 0.7 else None
    if row is None and col is None:
        d = int(np.argmax(np.abs(line)))
        guess = np.eye(3)[1] if d == 0 else np.eye(3)[0]  # sagittal: rows run posterior; else to the left
        row = _display_sign(_unit(guess - (guess @ line) * line))
    if col is None:
        col = _display_sign(_unit(np.cross(line, row)))
    else:
        row = _display_sign(_unit(np.cross(col, line)))
    return row, col, True


def slice_normal(frames: list[FrameRef]) -> np.ndarray | None:
    """The unit normal of the frames' image plane (rebuilt from positions if damaged), or None."""
    positions = [p for p in (frame_position(f.frame) for f in frames) if p is not None]
    orientation = next((f.frame.orientation for f in frames if finite(f.frame.orientation, 6) is not None),
                       frames[0].frame.orientation if frames else None)
    row, col, _ = resolve_axes(orientation, np.asarray(positions).reshape(-1, 3))
    return None if row is None else np.cross(row, col)


def _spacing(frames: list[FrameRef], warnings: list[str], say_absent: bool = True) -> tuple[float, float]:
    for f in frames:
        s = frame_spacing(f.frame)
        if s is not None:
            return float(s[0]), float(s[1])
    if any(f.frame.pixel_spacing is not None for f in frames):
        warnings.append("The images' pixel spacing (PixelSpacing) is not a positive number; 1 mm was assumed, so "
                        "distances and areas in the image plane are not real millimetres.")
    elif say_absent:
        warnings.append("The images carry no pixel spacing; 1 mm was assumed.")
    return 1.0, 1.0


def _approximate(frames: list[FrameRef], warnings: list[str], why: str) -> StackGeometry:
    """Secondary captures and the like: no usable patient geometry.  Keep file order by instance number."""
    frames = sorted(frames, key=lambda f: (f.instance.instance_number or 0, f.frame.index or 0))
    spacing = _spacing(frames, warnings, say_absent=False)
    affine = np.diag([spacing[1], spacing[0], 1.0, 1.0])
    warnings.append(f"The images carry no {why}; geometry is approximate.")
    return StackGeometry(frames, list(range(len(frames))), len(frames), affine, warnings)


def _drop_lone_ends(frames, positions, dist, warnings):
    """Leave out a single slice at either end that lies far beyond the rest (a damaged position):
    kept, it would stretch the volume to thousands of blank slots or a meaningless mean step."""
    dropped = 0
    while len(frames) > 3:
        steps = np.diff(dist)
        far = max(50.0 * float(np.median(steps)), 200.0)  # mm: beyond any real run of missing slices
        if steps[-1] > far and steps[-1] > 4 * max(float(steps[:-1].max()), 1e-3):
            frames, positions, dist = frames[:-1], positions[:-1], dist[:-1]
        elif steps[0] > far and steps[0] > 4 * max(float(steps[1:].max()), 1e-3):
            frames, positions, dist = frames[1:], positions[1:], dist[1:]
        else:
            break
        dropped += 1
    if dropped:
        warnings.append(f"{dropped} image(s) lie far from the others along the slice normal (a damaged "
                        "ImagePositionPatient) and were left out.")
    return frames, positions, dist


def _checked(g: StackGeometry) -> StackGeometry:
    """The last guard: an affine that is not finite or not invertible never leaves this module."""
    a = g.affine
    if not np.all(np.isfinite(a)) or abs(float(np.linalg.det(a[:3, :3]))) < 1e-9:
        raise HounsfieldError("The images' geometry (position, orientation or spacing) is damaged beyond repair; "
                              "ask for the series to be sent again.")
    return g


def stack_geometry(frames: list[FrameRef]) -> StackGeometry:
    warnings: list[str] = []
    if all(f.frame.orientation is None for f in frames) or all(f.frame.position is None for f in frames):
        return _checked(_approximate(frames, warnings, "patient position or orientation"))
    placed = [f for f in frames if frame_position(f.frame) is not None]
    if not placed:
        return _checked(_approximate(frames, warnings, "valid patient position (ImagePositionPatient)"))
    if len(placed) < len(frames):
        warnings.append(f"{len(frames) - len(placed)} image(s) have no valid position (ImagePositionPatient "
                        "missing or not a number) and were left out.")
    frames = placed
    positions = np.asarray([frame_position(f.frame) for f in frames])
    orientation = next((f.frame.orientation for f in frames if finite(f.frame.orientation, 6) is not None),
                       next((f.frame.orientation for f in frames if f.frame.orientation is not None), None))
    row_dir, col_dir, rebuilt = resolve_axes(orientation, positions)
    if row_dir is None:
        return _checked(_approximate(frames, warnings, "valid image orientation (ImageOrientationPatient)"))
    if rebuilt:
        warnings.append(_ORIENTATION_REBUILT)
    else:
        odd = sum(1 for f in frames if finite(f.frame.orientation, 6) is None)
        if odd:
            warnings.append(f"{odd} image(s) have a damaged orientation (ImageOrientationPatient); the "
                            "orientation of the rest of the series was used.")
    normal = np.cross(row_dir, col_dir)
    dist = positions @ normal
    order = np.argsort(dist, kind="stable")
    frames = [frames[i] for i in order]
    positions, dist = positions[order], dist[order]
    frames, positions, dist = _drop_lone_ends(frames, positions, dist, warnings)

    spacing = _spacing(frames, warnings)
    affine = np.eye(4)
    affine[:3, 0] = row_dir * spacing[1]  # i runs along a row: step = column spacing
    affine[:3, 1] = col_dir * spacing[0]  # j runs down a column: step = row spacing
    affine[:3, 3] = positions[0]

    n = len(frames)
    slots = list(range(n))
    depth = n
    tilt = 0.0
    if n == 1:
        thickness = finite([frames[0].instance.slice_thickness], 1)
        affine[:3, 2] = normal * (float(thickness[0]) if thickness is not None and thickness[0] > 1e-6 else 1.0)
        return _checked(StackGeometry(frames, slots, depth, affine, warnings))

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
    if np.linalg.norm(k_vec) < 1e-3:  # every slice at one position: stacked in order, 1 mm apart
        k_vec = normal * 1.0
    affine[:3, 2] = k_vec

    cosang = abs(float(np.dot(k_vec, normal))) / max(np.linalg.norm(k_vec), 1e-9)
    tilt = float(np.degrees(np.arccos(min(1.0, cosang))))
    if tilt > 0.01:
        warnings.append(f"Gantry tilt of {tilt:.2f} degrees: slices are sheared relative to their normal "
                        "(geometry kept exact in the affine).")
    return _checked(StackGeometry(frames, slots, depth, affine, warnings, tilt))
