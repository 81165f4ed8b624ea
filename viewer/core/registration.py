"""Registration of one series to another: rigid and deformable, with SimpleITK (no Qt, VTK or torch).

A :class:`Registration` maps points of the *fixed* series' patient space (LPS mm) to the *moving*
series' patient space, ITK's convention: ``to_moving(p)`` is where the anatomy at ``p`` in the fixed
series lies in the moving one; ``to_fixed`` is the inverse.  ``resample`` brings the moving image (or
a label map on its grid) onto the fixed grid, which is what fusion and carrying segments need.

:func:`register` runs off the UI thread: ``progress(fraction, text)`` is called as it goes and
``cancel()`` is polled each iteration; a cancelled run raises :class:`RegistrationCancelled`.
It works on images averaged down to about 2 mm (:func:`working_image`) with a fixed budget of metric
samples per level: the chest CT pair (512x512x141) registers rigidly in about 5 s on 2 cores, the
synthetic follow-up deformably in about 25-45 s (tests/benchmarks/bench_registration.py).

``Registration.inverse()`` swaps fixed and moving (a deformable one's B-spline inverted as a displacement
field); ``to_dict``/``from_dict`` and ``save``/``load`` (ITK .tfm) keep it.  ``viewer.core.registration_store``
saves registrations with the study (a rigid one also as a DICOM Spatial Registration object,
``viewer.core.io.spatial_registration``), and ``Workspace.add_registration``/``registration`` keep them
for the open series.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from viewer.core.errors import HounsfieldError
from viewer.core.volume import Volume

KINDS = ("identity", "rigid", "deformable")


class RegistrationCancelled(HounsfieldError):
    """The user cancelled a registration; nothing was changed."""


def to_sitk(volume: Volume, array: np.ndarray | None = None, dtype=np.float32) -> sitk.Image:
    """``volume`` (or ``array`` on its grid) as a SimpleITK image with the same LPS geometry."""
    data = volume.real_values() if array is None else array
    image = sitk.GetImageFromArray(np.ascontiguousarray(data, dtype=dtype))
    image.SetSpacing([float(s) for s in volume.spacing])
    image.SetOrigin([float(o) for o in volume.origin])
    image.SetDirection([float(d) for d in volume.direction.ravel()])
    return image


@dataclass
class Registration:
    """A transform from the fixed series' LPS space to the moving series' (ITK convention)."""

    fixed_uid: str
    moving_uid: str
    kind: str
    transform: sitk.Transform
    metric: float | None = None  # final metric value (Mattes MI: lower is better)
    seconds: float = 0.0
    created: float = field(default_factory=time.time)
    fixed_frame_uid: str = ""  # the series' frames of reference (a DICOM registration object names them)
    moving_frame_uid: str = ""

    @classmethod
    def identity(cls, fixed_uid: str = "", moving_uid: str = "") -> Registration:
        return cls(fixed_uid, moving_uid, "identity", sitk.Euler3DTransform())

    def to_moving(self, points) -> np.ndarray:
        """Fixed LPS points (..., 3) -> moving LPS points."""
        pts = np.asarray(points, dtype=np.float64)
        flat = pts.reshape(-1, 3)
        out = np.array([self.transform.TransformPoint(tuple(map(float, p))) for p in flat])
        return out.reshape(pts.shape)

    def to_fixed(self, points, iterations: int = 20, tol_mm: float = 1e-3) -> np.ndarray:
        """Moving LPS points (..., 3) -> fixed LPS points (the inverse; iterative where deformable)."""
        pts = np.asarray(points, dtype=np.float64)
        flat = pts.reshape(-1, 3)
        if self.kind in ("identity", "rigid"):
            inverse = self.transform.GetInverse()
            out = np.array([inverse.TransformPoint(tuple(map(float, p))) for p in flat])
            return out.reshape(pts.shape)
        out = flat.copy()  # fixed-point iteration x <- x - (T(x) - target)
        for _ in range(iterations):
            err = self.to_moving(out) - flat
            out -= err
            if np.max(np.abs(err), initial=0.0) < tol_mm:
                break
        return out.reshape(pts.shape)

    def resample(self, moving: Volume, fixed: Volume, *, array: np.ndarray | None = None,
                 nearest: bool = False, default: float | None = None) -> np.ndarray:
        """The moving image (real values, or ``array`` on the moving grid, e.g. a label map) on the
        fixed grid, shape ``fixed.shape``.  ``nearest`` for labels; ``default`` outside the moving
        volume (air for CT, 0 otherwise)."""
        if default is None:
            default = -1024.0 if (array is None and moving.modality == "CT") else 0.0
        src = array if array is not None else moving.real_values()
        dtype = src.dtype if nearest else np.float32
        image = to_sitk(moving, src, dtype=dtype)
        ref = sitk.Image([int(s) for s in fixed.shape[::-1]], sitk.sitkUInt8)
        ref.SetSpacing([float(s) for s in fixed.spacing])
        ref.SetOrigin([float(o) for o in fixed.origin])
        ref.SetDirection([float(d) for d in fixed.direction.ravel()])
        interp = sitk.sitkNearestNeighbor if nearest else sitk.sitkLinear
        out = sitk.Resample(image, ref, self.transform, interp, float(default), image.GetPixelID())
        return sitk.GetArrayFromImage(out)

    @property
    def matrix(self) -> np.ndarray:
        """The 4x4 fixed -> moving LPS matrix of a rigid (or identity) registration."""
        if self.kind not in ("rigid", "identity"):
            raise HounsfieldError("A deformable registration has no single matrix; use to_moving for points.")
        return rigid_matrix(self.transform)

    def inverse(self) -> Registration:
        """The same alignment the other way round: fixed and moving swapped, so its ``to_moving`` is this
        one's ``to_fixed``.  Exact for a rigid one; for a deformable one the B-spline part is inverted as a
        displacement field on a 3 mm grid over its domain (error well under 0.1 mm for smooth motion)."""
        base = dict(metric=self.metric, seconds=self.seconds, created=self.created,
                    fixed_frame_uid=self.moving_frame_uid, moving_frame_uid=self.fixed_frame_uid)
        if self.kind in ("identity", "rigid"):
            inv = self.transform.GetInverse()
            if self.kind == "rigid":
                inv = _as_euler(inv)
            return Registration(self.moving_uid, self.fixed_uid, self.kind, inv, **base)
        parts = _components(self.transform)
        inverted: list[sitk.Transform] = []
        for t in parts:  # T = parts[0](parts[1](...(x))): the inverse applies the inverses in reverse
            inverted.append(_invert(t))
        # CompositeTransform applies its last transform first: T^-1 = inv(last) o ... o inv(first)
        return Registration(self.moving_uid, self.fixed_uid, "deformable",
                            sitk.CompositeTransform(inverted[::-1]), **base)

    def to_dict(self) -> dict:
        """Everything needed to rebuild it (JSON-ready): a matrix when rigid, the ITK transform file's
        text (.tfm) when deformable."""
        d = {"version": 1, "fixed_uid": self.fixed_uid, "moving_uid": self.moving_uid, "kind": self.kind,
             "metric": self.metric, "seconds": self.seconds, "created": self.created,
             "fixed_frame_uid": self.fixed_frame_uid, "moving_frame_uid": self.moving_frame_uid}
        if self.kind in ("identity", "rigid"):
            d["matrix"] = self.matrix.tolist()
        else:
            d["tfm"] = transform_text(self.transform)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Registration:
        kind = str(d["kind"])
        if kind not in KINDS:
            raise HounsfieldError(f"A saved registration has an unknown kind {kind!r}; it was left out.")
        if kind in ("identity", "rigid"):
            transform: sitk.Transform = matrix_transform(np.asarray(d["matrix"], np.float64))
        else:
            transform = transform_from_text(str(d["tfm"]))
        return cls(str(d.get("fixed_uid", "")), str(d.get("moving_uid", "")), kind, transform,
                   d.get("metric"), float(d.get("seconds", 0.0)), float(d.get("created", time.time())),
                   str(d.get("fixed_frame_uid", "")), str(d.get("moving_frame_uid", "")))

    def save(self, path) -> str:
        """Write the transform as an ITK transform file (.tfm, fixed -> moving); returns the path."""
        path = os.fspath(path)
        sitk.WriteTransform(self.transform, path)
        return path

    @classmethod
    def load(cls, path, fixed_uid: str = "", moving_uid: str = "", kind: str | None = None) -> Registration:
        """A registration from an ITK transform file (fixed -> moving)."""
        try:
            transform = sitk.ReadTransform(os.fspath(path))
        except RuntimeError as exc:
            raise HounsfieldError(f"{os.fspath(path)} could not be read as an ITK transform; check the file.") from exc
        if kind is None:
            kind = "deformable" if any(t.GetName() not in _RIGID_NAMES for t in _components(transform)) else "rigid"
        if kind == "rigid":
            transform = matrix_transform(rigid_matrix(transform))
        return cls(fixed_uid, moving_uid, kind, transform)


_RIGID_NAMES = ("Euler3DTransform", "VersorRigid3DTransform", "TranslationTransform", "IdentityTransform",
                "AffineTransform", "Similarity3DTransform", "ScaleVersor3DTransform")


def _components(transform: sitk.Transform) -> list[sitk.Transform]:
    """A transform's parts in CompositeTransform order (the last is applied first)."""
    if transform.GetName() != "CompositeTransform":
        return [transform]
    comp = sitk.CompositeTransform(transform)
    out: list[sitk.Transform] = []
    for n in range(comp.GetNumberOfTransforms()):
        out.extend(_components(comp.GetNthTransform(n)))
    return out


def _downcast(t: sitk.Transform) -> sitk.Transform:
    name = t.GetName()
    cls = getattr(sitk, name, None)
    try:
        return cls(t) if cls is not None and name != "Transform" else t
    except (TypeError, RuntimeError):
        return t


def _invert(t: sitk.Transform, grid_mm: float = 3.0) -> sitk.Transform:
    t = _downcast(t)
    if t.GetName() in _RIGID_NAMES:
        return t.GetInverse()
    if isinstance(t, sitk.BSplineTransform):
        origin = np.asarray(t.GetTransformDomainOrigin())
        extent = np.asarray(t.GetTransformDomainPhysicalDimensions())
        direction = t.GetTransformDomainDirection()
        size = [int(np.ceil(e / grid_mm)) + 1 for e in extent]
        spacing = [float(e) / max(1, n - 1) for e, n in zip(extent, size)]
        field = sitk.TransformToDisplacementField(t, sitk.sitkVectorFloat64, size, origin.tolist(), spacing, direction)
        inv = sitk.InvertDisplacementField(field, maximumNumberOfIterations=50, maxErrorToleranceThreshold=0.01,
                                           meanErrorToleranceThreshold=0.001, enforceBoundaryCondition=True)
        return sitk.DisplacementFieldTransform(inv)
    try:
        return t.GetInverse()
    except RuntimeError as exc:
        raise HounsfieldError(f"A {t.GetName()} cannot be inverted here; register the other way round.") from exc


def rigid_matrix(transform: sitk.Transform) -> np.ndarray:
    """The 4x4 matrix of an affine (rigid) transform, however ITK parametrises it (centre, translation)."""
    o = np.asarray(transform.TransformPoint((0.0, 0.0, 0.0)))
    m = np.eye(4)
    for axis in range(3):
        e = [0.0, 0.0, 0.0]
        e[axis] = 1.0
        m[:3, axis] = np.asarray(transform.TransformPoint(tuple(e))) - o
    m[:3, 3] = o
    return m


def matrix_transform(matrix: np.ndarray) -> sitk.Euler3DTransform:
    """An Euler 3D transform from a 4x4 rigid matrix (the rotation orthonormalised)."""
    m = np.asarray(matrix, np.float64)
    u, _s, vt = np.linalg.svd(m[:3, :3])
    r = u @ vt
    if np.linalg.det(r) < 0:
        raise HounsfieldError("The registration matrix mirrors the image (not a rigid motion); it cannot be used.")
    t = sitk.Euler3DTransform()
    t.SetMatrix([float(v) for v in r.ravel()], 1e-5)
    t.SetTranslation([float(v) for v in m[:3, 3]])
    return t


def transform_text(transform: sitk.Transform) -> str:
    """The ITK transform file text (.tfm) of ``transform``."""
    fd, tmp = tempfile.mkstemp(suffix=".tfm")
    os.close(fd)
    try:
        sitk.WriteTransform(transform, tmp)
        with open(tmp, encoding="utf-8") as f:
            return f.read()
    finally:
        os.unlink(tmp)


def transform_from_text(text: str) -> sitk.Transform:
    fd, tmp = tempfile.mkstemp(suffix=".tfm")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        return sitk.ReadTransform(tmp)
    except RuntimeError as exc:
        raise HounsfieldError("A saved registration's transform could not be read; register again.") from exc
    finally:
        os.unlink(tmp)


def _progress_hooks(method: sitk.ImageRegistrationMethod, progress, cancel, start: float, span: float,
                    iterations: int, levels: int) -> None:
    def on_iteration() -> None:
        if cancel is not None and cancel():
            method.StopRegistration()
            return
        if progress is not None:
            level = method.GetCurrentLevel()
            frac = (level + min(1.0, method.GetOptimizerIteration() / max(1, iterations))) / levels
            progress(start + span * min(1.0, frac),
                     f"level {level + 1} of {levels}, metric {method.GetMetricValue():.4f}")

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)


def _mattes(method: sitk.ImageRegistrationMethod, sampling: float, seed: int = 2026) -> None:
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed)
    method.SetInterpolator(sitk.sitkLinear)


WORKING_MM = 2.0  # registration works on images averaged down to voxels of about this size
SAMPLES = 60_000  # metric samples per evaluation at the finest level (Mattes MI, random)


def working_image(volume: Volume, target_mm: float = WORKING_MM) -> sitk.Image:
    """``volume`` as a float32 SimpleITK image averaged down (bin shrink) to voxels of about
    ``target_mm``: the finest level registration uses (1 mm detail adds time, not accuracy, for
    structures a radiologist aligns by eye; the targets are met at 2 mm)."""
    image = to_sitk(volume)
    factors = [max(1, int(target_mm / float(s) + 0.25)) for s in volume.spacing]
    return sitk.BinShrink(image, factors) if max(factors) > 1 else image


def _sampling(image: sitk.Image, shrink: int) -> float:
    voxels = float(np.prod(image.GetSize())) / shrink ** 3
    return float(min(1.0, max(0.002, SAMPLES / max(1.0, voxels))))


def _as_euler(transform: sitk.Transform) -> sitk.Euler3DTransform:
    if transform.GetName() == "CompositeTransform":
        transform = sitk.CompositeTransform(transform).GetNthTransform(0)
    return sitk.Euler3DTransform(transform)


def _rigid(f_img: sitk.Image, m_img: sitk.Image, init: sitk.Euler3DTransform, progress, is_cancelled,
           span: float) -> tuple[sitk.Euler3DTransform, float]:
    shrinks, sigmas = [4, 2, 1], [2.0, 1.0, 0.0]
    iterations = 80
    transform = sitk.Euler3DTransform(init)
    metric = 0.0
    # one method per level so each level gets its own sampling budget (a fixed number of samples)
    for level, (shrink, sigma) in enumerate(zip(shrinks, sigmas)):
        method = sitk.ImageRegistrationMethod()
        _mattes(method, _sampling(f_img, shrink))
        method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0 if level == 0 else 1.0, minStep=1e-3 * 2,
                                                        numberOfIterations=iterations, relaxationFactor=0.5,
                                                        gradientMagnitudeTolerance=1e-6)
        method.SetOptimizerScalesFromPhysicalShift()
        method.SetShrinkFactorsPerLevel([shrink])
        method.SetSmoothingSigmasPerLevel([sigma])
        method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
        method.SetInitialTransform(transform, inPlace=True)
        _progress_hooks(method, progress, is_cancelled, span * level / len(shrinks), span / len(shrinks),
                        iterations, 1)
        method.Execute(f_img, m_img)
        if is_cancelled():
            raise RegistrationCancelled("The registration was cancelled; nothing was changed.")
        metric = method.GetMetricValue()
    return transform, metric


def register(fixed: Volume, moving: Volume, kind: str = "rigid", *, initial: Registration | None = None,
             progress: Callable[[float, str], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> Registration:
    """Register ``moving`` to ``fixed``: multi-resolution Mattes mutual information (so CT-MR works) on
    images averaged to about 2 mm, rigid (Euler 3D, started from the images' centres of mass or from
    ``initial``) or deformable (that rigid, then a B-spline on a ~64 mm control grid).
    Raises :class:`RegistrationCancelled` when ``cancel()`` turned true; nothing is changed."""
    if kind not in ("rigid", "deformable"):
        raise HounsfieldError(f"Unknown registration kind {kind!r}; choose rigid or deformable.")
    t0 = time.perf_counter()
    frames = {"fixed_frame_uid": fixed.source.frame_of_reference_uid,
              "moving_frame_uid": moving.source.frame_of_reference_uid}
    cancelled = {"flag": False}

    def is_cancelled() -> bool:
        if cancel is not None and not cancelled["flag"] and cancel():
            cancelled["flag"] = True
        return cancelled["flag"]

    if progress is not None:
        progress(0.0, "preparing the images")
    f_img, m_img = working_image(fixed), working_image(moving)
    if is_cancelled():
        raise RegistrationCancelled("The registration was cancelled; nothing was changed.")
    if initial is not None and initial.kind in ("rigid", "identity"):
        init = _as_euler(initial.transform) if initial.kind == "rigid" else sitk.Euler3DTransform()
    else:
        init = sitk.Euler3DTransform(sitk.CenteredTransformInitializer(
            f_img, m_img, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.MOMENTS))
    rigid_span = 1.0 if kind == "rigid" else 0.3
    rigid, metric = _rigid(f_img, m_img, init, progress, is_cancelled, rigid_span)
    if kind == "rigid":
        if progress is not None:
            progress(1.0, "done")
        return Registration(fixed.source.series_instance_uid, moving.source.series_instance_uid, "rigid",
                            rigid, metric, time.perf_counter() - t0, **frames)

    bspline, metric = _bspline(f_img, m_img, rigid, progress, is_cancelled, rigid_span)
    composite = sitk.CompositeTransform([rigid, bspline])
    if progress is not None:
        progress(1.0, "done")
    return Registration(fixed.source.series_instance_uid, moving.source.series_instance_uid, "deformable",
                        composite, metric, time.perf_counter() - t0, **frames)


BSPLINE_MM = 64.0  # control-point spacing: smooth enough to be well posed with a few ten thousand samples


def _bspline(f_img: sitk.Image, m_img: sitk.Image, rigid: sitk.Transform, progress, is_cancelled,
             start: float) -> tuple[sitk.BSplineTransform, float]:
    """A cubic B-spline on a ~64 mm control grid over the fixed image, after ``rigid``; three levels
    (4x, 2x, 1x of the ~2 mm working image), L-BFGS.  A finer grid (48 mm, or refined to 32 mm) was
    slower and less accurate on the synthetic follow-up (the metric's sampling noise is fitted)."""
    extent = np.asarray(f_img.GetSize()) * np.asarray(f_img.GetSpacing())
    mesh = [max(1, int(round(e / BSPLINE_MM))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(f_img, mesh, order=3)
    shrinks, sigmas = [4, 2, 1], [2.0, 1.0, 0.0]
    iterations = 50
    method = sitk.ImageRegistrationMethod()
    _mattes(method, _sampling(f_img, 1))
    method.SetOptimizerAsLBFGS2(solutionAccuracy=1e-5, numberOfIterations=iterations, deltaConvergenceTolerance=0.0)
    method.SetShrinkFactorsPerLevel(shrinks)
    method.SetSmoothingSigmasPerLevel(sigmas)
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(bspline, inPlace=True)
    _progress_hooks(method, progress, is_cancelled, start, 1.0 - start, iterations, len(shrinks))
    result = method.Execute(f_img, m_img)
    if is_cancelled():
        raise RegistrationCancelled("The registration was cancelled; nothing was changed.")
    if result.GetName() == "CompositeTransform":
        result = sitk.CompositeTransform(result).GetNthTransform(0)
    return sitk.BSplineTransform(result), method.GetMetricValue()
