"""Registration of one series to another: rigid and deformable, with SimpleITK (no Qt, VTK or torch).

A :class:`Registration` maps points of the *fixed* series' patient space (LPS mm) to the *moving*
series' patient space, ITK's convention: ``to_moving(p)`` is where the anatomy at ``p`` in the fixed
series lies in the moving one; ``to_fixed`` is the inverse.  ``resample`` brings the moving image (or
a label map on its grid) onto the fixed grid, which is what fusion and carrying segments need.

:func:`register` runs off the UI thread: ``progress(fraction, text)`` is called as it goes and
``cancel()`` is polled each iteration; a cancelled run raises :class:`RegistrationCancelled`.
"""

from __future__ import annotations

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


def _progress_hooks(method: sitk.ImageRegistrationMethod, progress, cancel, start: float, span: float,
                    iterations: int, levels: int) -> None:
    count = {"n": 0}

    def on_iteration() -> None:
        count["n"] += 1
        if cancel is not None and cancel():
            method.StopRegistration()
            return
        if progress is not None:
            level = method.GetCurrentLevel()
            frac = (level + min(1.0, method.GetOptimizerIteration() / max(1, iterations))) / levels
            progress(start + span * frac, f"level {level + 1} of {levels}, metric {method.GetMetricValue():.4f}")

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)


def _mattes(method: sitk.ImageRegistrationMethod, sampling: float, seed: int = 2026) -> None:
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.RANDOM)
    method.SetMetricSamplingPercentage(sampling, seed)
    method.SetInterpolator(sitk.sitkLinear)


def register(fixed: Volume, moving: Volume, kind: str = "rigid", *, initial: Registration | None = None,
             progress: Callable[[float, str], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> Registration:
    """Register ``moving`` to ``fixed``: multi-resolution Mattes mutual information (so CT-MR works),
    rigid (Euler 3D, centred on the images' centres of mass) or deformable (that rigid then a
    B-spline on a ~50 mm grid).  Raises :class:`RegistrationCancelled` when ``cancel()`` turned true."""
    if kind not in ("rigid", "deformable"):
        raise HounsfieldError(f"Unknown registration kind {kind!r}; choose rigid or deformable.")
    t0 = time.perf_counter()
    f_img, m_img = to_sitk(fixed), to_sitk(moving)
    cancelled = {"flag": False}

    def is_cancelled() -> bool:
        if cancel is not None and cancel():
            cancelled["flag"] = True
        return cancelled["flag"]

    if initial is not None and initial.kind in ("rigid", "identity"):
        init = sitk.Euler3DTransform(initial.transform) if initial.kind == "rigid" else sitk.Euler3DTransform()
    else:
        init = sitk.CenteredTransformInitializer(f_img, m_img, sitk.Euler3DTransform(),
                                                 sitk.CenteredTransformInitializerFilter.MOMENTS)
    rigid_span = 1.0 if kind == "rigid" else 0.4
    method = sitk.ImageRegistrationMethod()
    _mattes(method, 0.05)
    method.SetOptimizerAsRegularStepGradientDescent(learningRate=2.0, minStep=1e-3, numberOfIterations=100,
                                                    relaxationFactor=0.6)
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetShrinkFactorsPerLevel([8, 4, 2])
    method.SetSmoothingSigmasPerLevel([3.0, 2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetInitialTransform(init, inPlace=False)
    _progress_hooks(method, progress, is_cancelled, 0.0, rigid_span, 100, 3)
    rigid = method.Execute(f_img, m_img)
    if is_cancelled():
        raise RegistrationCancelled("The registration was cancelled; nothing was changed.")
    rigid = sitk.Euler3DTransform(sitk.CompositeTransform(rigid).GetNthTransform(0)) \
        if isinstance(rigid, sitk.CompositeTransform) or rigid.GetName() == "CompositeTransform" else rigid
    metric = method.GetMetricValue()
    if kind == "rigid":
        return Registration(fixed.source.series_instance_uid, moving.source.series_instance_uid, "rigid",
                            rigid, metric, time.perf_counter() - t0)

    extent = np.asarray(f_img.GetSize()) * np.asarray(f_img.GetSpacing())
    mesh = [max(1, int(round(e / 50.0))) for e in extent]
    bspline = sitk.BSplineTransformInitializer(f_img, mesh, order=3)
    method = sitk.ImageRegistrationMethod()
    _mattes(method, 0.05)
    method.SetOptimizerAsLBFGSB(gradientConvergenceTolerance=1e-5, numberOfIterations=60,
                                maximumNumberOfCorrections=5, maximumNumberOfFunctionEvaluations=200)
    method.SetShrinkFactorsPerLevel([4, 2])
    method.SetSmoothingSigmasPerLevel([2.0, 1.0])
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    method.SetMovingInitialTransform(rigid)
    method.SetInitialTransform(bspline, inPlace=True)
    _progress_hooks(method, progress, is_cancelled, rigid_span, 1.0 - rigid_span, 60, 2)
    method.Execute(f_img, m_img)
    if is_cancelled():
        raise RegistrationCancelled("The registration was cancelled; nothing was changed.")
    composite = sitk.CompositeTransform([rigid, bspline])
    return Registration(fixed.source.series_instance_uid, moving.source.series_instance_uid, "deformable",
                        composite, method.GetMetricValue(), time.perf_counter() - t0)
