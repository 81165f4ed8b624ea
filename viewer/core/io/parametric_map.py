"""AI heatmaps (probability, uncertainty) out of the viewer and back: DICOM Parametric Map
(highdicom.pm) referencing the source series, and NIfTI (or NRRD/MHA) on the heatmap's own grid.

The Parametric Map stores the layer's values in [0, 1] as 32-bit floats, one frame per source
slice, with a real world value mapping that says what 1.0 stands for (``layer.full_scale`` in
``layer.unit``; "probability" and unitless maps in UCUM "1").  ``read_parametric_map`` places the
frames back on the source volume's grid by their Image Position (Patient), as DICOM SEG does, and
returns a ``HeatmapLayer``; ``viewer.core.references`` recognises the file so that opening it opens
its images with it.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np

from viewer.core.errors import HounsfieldError
from viewer.core.layers import HeatmapLayer
from viewer.core.volume import Volume
from viewer.logs import log

PM_STORAGE = "1.2.840.10008.5.1.4.1.1.30"


def _unit(layer: HeatmapLayer):
    import highdicom as hd

    if layer.unit == "HU":
        return hd.sr.CodedConcept("[hnsf'U]", "UCUM", "Hounsfield unit")
    if layer.unit == "mm":
        return hd.sr.CodedConcept("mm", "UCUM", "millimeter")
    return hd.sr.CodedConcept("1", "UCUM", "no units")


def write_parametric_map(layer: HeatmapLayer, source: Volume, path, *, series_instance_uid: str | None = None,
                         deidentifier=None) -> Path:
    """Write ``layer`` (on ``source``'s grid) as a DICOM Parametric Map referencing ``source``'s images."""
    import highdicom as hd

    from viewer.core.io.seg_dicom import slices_by_k, source_datasets

    v = layer.volume
    if tuple(v.shape) != tuple(source.shape) or not np.allclose(v.affine, source.affine, atol=1e-3):
        raise HounsfieldError("The heatmap is not on the series' grid; export it as NIfTI instead.")
    datasets = source_datasets(source)
    if not datasets:
        raise HounsfieldError("A DICOM Parametric Map needs the DICOM images the heatmap was made on; "
                              "export NIfTI instead.")
    by_k = slices_by_k(source, datasets)
    ks = sorted(by_k)
    if not ks:
        raise HounsfieldError("None of the series' images could be matched to the heatmap; export NIfTI instead.")
    pixels = np.ascontiguousarray(v.array[ks], dtype=np.float32)
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=layer.name[:16] or "AI map", lut_explanation=(layer.description or layer.name)[:64],
        unit=_unit(layer), value_range=(0.0, 1.0), slope=float(layer.full_scale or 1.0), intercept=0.0)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pm = hd.pm.ParametricMap(
                source_images=[by_k[k] for k in ks], pixel_array=pixels,
                series_instance_uid=series_instance_uid or hd.UID(), series_number=9002, sop_instance_uid=hd.UID(),
                instance_number=1, manufacturer="Hounsfield", manufacturer_model_name="Hounsfield",
                software_versions="hounsfield", device_serial_number="0",
                contains_recognizable_visual_features=False, real_world_value_mappings=[mapping],
                window_center=0.5, window_width=1.0, content_label="AIMAP",
                content_description=(layer.provenance or layer.name)[:64])
            pm.SeriesDescription = f"AI map {layer.name}"[:64]
            if deidentifier is not None:
                deidentifier.dataset(pm)
            path = Path(path)
            pm.save_as(path)
        for w in caught:
            log.info("Parametric Map: %s", w.message)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        log.warning("Parametric Map export failed", exc_info=True)
        raise HounsfieldError(f"The heatmap could not be written as a DICOM Parametric Map ({exc}).") from None
    return path


def read_parametric_map(path, volume: Volume) -> HeatmapLayer:
    """A Parametric Map's frames on ``volume``'s grid, as a heatmap layer (values outside [0, 1] clipped)."""
    import pydicom

    try:
        ds = pydicom.dcmread(os.fspath(path))
    except Exception as exc:
        raise HounsfieldError(f"{os.path.basename(os.fspath(path))} could not be read ({exc}).") from None
    if str(getattr(ds, "SOPClassUID", "")) != PM_STORAGE:
        raise HounsfieldError(f"{os.path.basename(os.fspath(path))} is not a DICOM Parametric Map.")
    frames = np.asarray(ds.pixel_array, np.float32)
    if frames.ndim == 2:
        frames = frames[None]
    nk, nj, ni = volume.shape
    if frames.shape[1:] != (nj, ni):
        raise HounsfieldError("The Parametric Map's frames are not the size of the series' slices; "
                              "open the series it was made on.")
    out = np.zeros(volume.shape, np.float32)
    placed = 0
    for n, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pos = [float(x) for x in fg.PlanePositionSequence[0].ImagePositionPatient]
        idx = volume.lps_to_index(pos)
        k = int(round(float(idx[2])))
        if 0 <= k < nk and abs(float(idx[0])) < 0.5 and abs(float(idx[1])) < 0.5:
            out[k] = frames[n]
            placed += 1
    if placed == 0:
        raise HounsfieldError("The Parametric Map does not lie on this series; open the series it was made on.")
    scale, unit, label = 1.0, "", "AI map"
    try:
        m = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        scale = float(m.RealWorldValueSlope)
        label = str(m.LUTLabel)
        unit = str(m.MeasurementUnitsCodeSequence[0].CodeValue)
        unit = {"1": "", "[hnsf'U]": "HU"}.get(unit, unit)
    except (AttributeError, IndexError, KeyError):
        pass
    desc = str(getattr(ds, "ContentDescription", "") or "")
    return HeatmapLayer(label, Volume(np.clip(out, 0.0, 1.0), volume.affine.copy(), modality="OT", units=""),
                        desc, provenance=desc, unit=unit, full_scale=scale)


def write_heatmap_nifti(layer: HeatmapLayer, path) -> None:
    """The layer's values in [0, 1] times its full scale (so in its unit) on its own grid, as NIfTI/NRRD/MHA."""
    from viewer.core.formats import write_volume

    v = layer.volume
    arr = (np.asarray(v.array, np.float32) * np.float32(layer.full_scale or 1.0)).astype(np.float32)
    write_volume(Volume(arr, v.affine, modality="OT", units=layer.unit), path)
