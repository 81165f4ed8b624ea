"""The modality of an image file that has none (NIfTI, NRRD, MHA read as "OT"), for a plugin that takes
CT or MR: ``hounsfield run --modality`` says it on the command line, the viewer asks the reader
(viewer.ui.ai.modality).  No Qt here."""

from __future__ import annotations

from viewer.core.errors import HounsfieldError

UNSAID = ("OT", "")  # what a volume read from a file without a modality says


def is_dicom(volume) -> bool:
    return bool(volume.source.sop_instance_uids or volume.source.sop_class_uid)


def assume_modality(volume, modality: str):
    """Give ``volume``, read from a file without a modality, ``modality`` (CT or MR), with its units: HU
    for CT, none for MR.  A DICOM series keeps its own (a one-sentence error)."""
    modality = modality.upper()
    if volume.modality.upper() == modality:
        return volume
    if is_dicom(volume):
        raise HounsfieldError(f"This is a DICOM {volume.modality} series, which says its own modality; only a "
                              "file without one (NIfTI, NRRD, MHA) can be told what it is.")
    volume.modality = modality
    if modality == "CT":
        volume.units = volume.units or "HU"
    elif volume.units == "HU":
        volume.units = ""
    return volume


def modality_choices(volume, info) -> tuple[str, ...]:
    """The modalities (of CT and MR) to ask about before plugin ``info`` runs on ``volume``: none when the
    volume says its modality or the plugin takes any image."""
    if volume.modality.upper() not in UNSAID or is_dicom(volume):
        return ()
    accepts = [m.upper() for m in (info.inputs[0].modalities if info.inputs else ())]
    if not accepts or "OT" in accepts:
        return ()
    return tuple(m for m in ("MR", "CT") if m in accepts)
