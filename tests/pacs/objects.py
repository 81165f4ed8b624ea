"""Reading results as the segmentation and measurement issues will export them: a DICOM SEG and a
TID 1500 SR (highdicom) on real slices of the chest CT, to send back to the PACS."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid


def ct_slices(folder: Path, count: int = 3) -> list[pydicom.Dataset]:
    """``count`` neighbouring slices from the middle of the series, in position order."""
    dss = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    dss.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    mid = len(dss) // 2
    return dss[mid:mid + count]


def make_seg(slices: list[pydicom.Dataset]) -> hd.seg.Segmentation:
    hu = np.stack([d.pixel_array * float(d.RescaleSlope) + float(d.RescaleIntercept) for d in slices])
    lung = hu < -500  # air and lung: a real, irregular region
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label="lung (test)",
        segmented_property_category=codes.SCT.Organ, segmented_property_type=codes.SCT.Lung,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
    return hd.seg.Segmentation(
        source_images=slices, pixel_array=lung, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=generate_uid(), series_number=900,
        sop_instance_uid=generate_uid(), instance_number=1, manufacturer="Hounsfield",
        manufacturer_model_name="test", software_versions="0.1", device_serial_number="0")


def make_sr(source: pydicom.Dataset) -> hd.sr.Comprehensive3DSR:
    observer = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(name="Reader^Test"))
    region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.CIRCLE,
                               graphic_data=np.array([[256.0, 256.0], [266.0, 256.0]]),
                               source_image=hd.sr.SourceImageForRegion.from_source_image(source))
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="lesion 1"),
        referenced_region=region,
        measurements=[hd.sr.Measurement(name=codes.SCT.Diameter, value=19.5, unit=codes.UCUM.Millimeter)])
    report = hd.sr.MeasurementReport(observation_context=hd.sr.ObservationContext(observer_person_context=observer),
                                     procedure_reported=codes.LN.CTUnspecifiedBodyRegion,
                                     imaging_measurements=[group])
    return hd.sr.Comprehensive3DSR(evidence=[source], content=report, series_number=901,
                                   series_instance_uid=generate_uid(), sop_instance_uid=generate_uid(),
                                   instance_number=1, manufacturer="Hounsfield")
