"""De-identification of exports after DICOM PS3.15 Table E.1-1, the Basic Application Level
Confidentiality Profile, with the Clean Structured Content option for the SR's content (which
Hounsfield writes itself) and no other option retained.

The attribute list and each attribute's action come from the maintained table of the
``dicom-anonymizer`` package (Kitware; generated from the standard's E.1-1, edition named by
``PROFILE_VERSION``), not from a hand-typed list.  Its actions are applied at every nesting depth:

- X remove; Z empty (a sequence: no items); D a dummy value of the attribute's VR (a sequence:
  no items); U a new UID, the same for the same original within one export;
- the conditional ones (X/Z, X/D, Z/D, X/Z/D) take the value that keeps every IOD valid,
  whatever the attribute's type: the dummy where D is allowed, else empty;
- X/Z/U* (Referenced/Source Image Sequence) keep the references with their UIDs replaced;
- the Content Sequence (D in the table) is kept and cleaned item by item (Clean Structured
  Content): it holds Hounsfield's measurements; the free text a user typed (labels, segment names)
  is cleared before this point when the user asks for it (``report.export_report``).

Beyond the table, as the profile's text requires: private tags are removed, every UID that is not a
DICOM-registered one is replaced, every person name becomes ``ANONYMOUS`` and every other date,
time or date-time becomes a dummy (no longitudinal temporal information is retained).
"""

from __future__ import annotations

from dataclasses import replace

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

from viewer.core.volume import SourceInfo

PROFILE_VERSION = "dicomfields_2026c"
METHOD = "DICOM PS3.15 E.1-1 Basic Application Confidentiality Profile"
ANON_NAME = "ANONYMOUS"
_DICOM_ROOT = "1.2.840.10008."
_KEEP_UIDS = {"CodingSchemeUID", "ImplementationClassUID", "PrivateInformationCreatorUID", "SOPClassUID",
              "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"}
_CATEGORIES = {"X_TAGS": "X", "Z_TAGS": "Z", "D_TAGS": "D", "U_TAGS": "U", "Z_D_TAGS": "Z/D", "X_Z_TAGS": "X/Z",
               "X_D_TAGS": "X/D", "X_Z_D_TAGS": "X/Z/D", "X_Z_U_STAR_TAGS": "X/Z/U*"}
# what each of the table's actions does here (see the module's text)
_EFFECT = {"X": "remove", "Z": "empty", "D": "dummy", "U": "uid", "Z/D": "dummy", "X/Z": "empty", "X/D": "dummy",
           "X/Z/D": "dummy", "X/Z/U*": "clean"}
CONTENT_SEQUENCE = 0x0040A730
_DUMMY = {"DA": "19000101", "TM": "000000", "DT": "19000101000000", "AS": "000Y", "UR": "",
          "DS": "0", "IS": "0", "CS": "ANONYMIZED", "AE": "ANONYMIZED"}
_NUMBERS = ("US", "SS", "UL", "SL", "FL", "FD", "UV", "SV")
_BYTES = ("OB", "OW", "OD", "OF", "OL", "OV", "UN")


def _load_profile() -> tuple[dict[int, str], list[tuple[int, int, str]]]:
    """(tag -> action, [(base, mask, action)] for the repeating groups 50xx and 60xx)."""
    from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector

    table = dicom_anonymization_database_selector(PROFILE_VERSION)
    actions, masked = {}, []
    for category, action in _CATEGORIES.items():
        for t in table[category]:
            if len(t) == 2:
                actions[(t[0] << 16) | t[1]] = action
            else:  # (group, element, group mask, element mask)
                masked.append(((t[0] << 16) | t[1], (t[2] << 16) | t[3], action))
    return actions, masked


PROFILE, _MASKED = _load_profile()


def profile_action(tag: int) -> str | None:
    """The E.1-1 action of an attribute (None: the profile does not list it)."""
    action = PROFILE.get(int(tag))
    if action is None:
        action = next((a for base, mask, a in _MASKED if int(tag) & mask == base), None)
    return action


class Deidentifier:
    """One export's de-identification: the same original UID always maps to the same new one."""

    def __init__(self, patient_id: str | None = None):
        self.uids: dict[str, str] = {}
        self.patient_name = ANON_NAME
        self.patient_id = patient_id or "ANON-" + generate_uid().rsplit(".", 1)[-1][-10:]

    def uid(self, old: str) -> str:
        old = str(old)
        if not old or old.startswith(_DICOM_ROOT):
            return old
        if old not in self.uids:
            self.uids[old] = generate_uid()
        return self.uids[old]

    def source(self, src: SourceInfo) -> SourceInfo:
        """A de-identified copy of a volume's source description (for tables and file names)."""
        return replace(src, patient_name=self.patient_name, patient_id=self.patient_id, patient_birth_date="",
                       patient_sex="", study_date="", study_description="", accession_number="",
                       series_description="", manufacturer="", path="",
                       study_instance_uid=self.uid(src.study_instance_uid),
                       series_instance_uid=self.uid(src.series_instance_uid),
                       frame_of_reference_uid=self.uid(src.frame_of_reference_uid),
                       sop_instance_uids=tuple(self.uid(u) for u in src.sop_instance_uids))

    def dataset(self, ds: Dataset, pixels_cleaned: bool = True) -> Dataset:
        """De-identify ``ds`` in place (and return it).  ``pixels_cleaned``: its pixels were rendered here
        without identifying text (a key image), so a BurnedInAnnotation NO may claim the Clean Pixel Data
        Option; False for the source images, whose pixels go out as the modality made them."""
        self._clean(ds)
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        if "ContentDate" in ds:  # type 1 in SEG and SR
            ds.ContentDate, ds.ContentTime = _DUMMY["DA"], _DUMMY["TM"]
        ds.PatientIdentityRemoved = "YES"
        codes = [("113100", "Basic Application Confidentiality Profile")]
        if CONTENT_SEQUENCE in ds:
            codes.append(("113104", "Clean Structured Content Option"))
        if pixels_cleaned and str(ds.get("BurnedInAnnotation", "")) == "NO" and "PixelData" in ds:
            codes.append(("113101", "Clean Pixel Data Option"))  # rendered without the identity text
        ds.DeidentificationMethod = [METHOD] + [meaning for _, meaning in codes[1:]]  # LO: 64 characters each
        items = []
        for value, meaning in codes:
            code = Dataset()
            code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning = value, "DCM", meaning
            items.append(code)
        ds.DeidentificationMethodCodeSequence = items
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds

    # the walk
    def _clean(self, ds: Dataset) -> None:
        ds.remove_private_tags()
        for elem in list(ds):
            tag = int(elem.tag)
            if tag in (0x7FE00010, 0x00020010):
                continue  # the pixels and the transfer syntax
            action = profile_action(tag)
            effect = _EFFECT[action] if action else None
            if tag == CONTENT_SEQUENCE:
                effect = "clean"
            if effect == "remove":
                del ds[tag]
            elif elem.VR == "SQ":
                if effect in ("empty", "dummy"):
                    elem.value = Sequence([])
                else:  # not listed, or to be kept with its UIDs replaced: clean each item
                    for item in elem.value:
                        self._clean(item)
            elif effect == "empty":
                self._empty(ds, elem)
            elif effect in ("dummy", "uid"):
                self._dummy(ds, elem)
            else:
                self._beyond_table(elem)

    def _empty(self, ds: Dataset, elem: DataElement) -> None:
        if elem.VR in _NUMBERS or elem.VR in _BYTES:
            ds[elem.tag] = DataElement(elem.tag, elem.VR, None)
        else:
            elem.value = ""

    def _dummy(self, ds: Dataset, elem: DataElement) -> None:
        vr = elem.VR
        if vr == "UI":
            if elem.value:
                elem.value = [self.uid(u) for u in elem.value] if elem.VM > 1 else self.uid(elem.value)
        elif vr == "PN":
            elem.value = self.patient_name
        elif vr in _DUMMY:
            elem.value = _DUMMY[vr]
        elif vr in _NUMBERS:
            elem.value = 0
        elif vr in _BYTES:
            ds[elem.tag] = DataElement(elem.tag, vr, b"\x00\x00" if vr != "UN" else b"")
        else:  # LO, SH, ST, LT, UT, UC
            elem.value = "ANONYMIZED"

    def _beyond_table(self, elem: DataElement) -> None:
        if not elem.value:
            return
        if elem.VR == "UI" and elem.keyword not in _KEEP_UIDS:
            elem.value = [self.uid(u) for u in elem.value] if elem.VM > 1 else self.uid(elem.value)
        elif elem.VR == "PN":
            elem.value = self.patient_name
        elif elem.VR in ("DA", "TM", "DT"):
            elem.value = _DUMMY[elem.VR]
