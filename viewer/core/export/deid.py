"""De-identification of exports, after the DICOM PS3.15 Basic Application Level Confidentiality
Profile (no options retained): patient identity, dates and other identifiers are replaced or
removed, private tags removed, and every UID that is not a DICOM-registered one is replaced by a
new one, consistently within one export (one ``Deidentifier`` per export, shared by its files),
so that an exported SR still points at the exported key images and at each other.
"""

from __future__ import annotations

from dataclasses import replace

from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from viewer.core.volume import SourceInfo

METHOD = "DICOM PS3.15 Basic Application Confidentiality Profile"
ANON_NAME = "ANONYMOUS"
_DICOM_ROOT = "1.2.840.10008."
_KEEP_UIDS = {"CodingSchemeUID", "ImplementationClassUID", "PrivateInformationCreatorUID", "SOPClassUID",
              "ReferencedSOPClassUID", "MediaStorageSOPClassUID", "TransferSyntaxUID"}
# Z/D: keep the element (type 1/2) with an empty or dummy value
_EMPTY = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName", "StudyDate",
          "StudyTime", "SeriesDate", "SeriesTime", "AcquisitionDate", "AcquisitionTime", "InstanceCreationDate",
          "InstanceCreationTime")
_DUMMY = {"ContentDate": "19000101", "ContentTime": "000000"}
# X: remove
_REMOVE = ("OtherPatientIDs", "OtherPatientIDsSequence", "OtherPatientNames", "PatientBirthTime", "PatientAddress",
           "PatientTelephoneNumbers", "PatientAge", "PatientSize", "PatientWeight", "EthnicGroup", "PatientComments",
           "AdditionalPatientHistory", "MilitaryRank", "MedicalRecordLocator", "IssuerOfPatientID",
           "PatientMotherBirthName", "InstitutionName", "InstitutionAddress", "InstitutionalDepartmentName",
           "ReferringPhysicianAddress", "ReferringPhysicianTelephoneNumbers", "PhysiciansOfRecord",
           "PerformingPhysicianName", "NameOfPhysiciansReadingStudy", "OperatorsName", "StationName",
           "DeviceSerialNumber", "RequestAttributesSequence", "StudyDescription", "SeriesDescription",
           "AdmittingDiagnosesDescription", "RequestingPhysician", "ReferencedPatientSequence",
           "VerifyingObserverSequence", "AuthorObserverSequence", "ParticipantSequence")


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

    def dataset(self, ds: Dataset) -> Dataset:
        """De-identify ``ds`` in place (and return it)."""
        ds.remove_private_tags()
        self._walk(ds)
        ds.PatientName = self.patient_name
        ds.PatientID = self.patient_id
        for kw in _EMPTY:
            if kw in ds:
                setattr(ds, kw, "")
        for kw, value in _DUMMY.items():
            if kw in ds:
                setattr(ds, kw, value)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = METHOD
        code = Dataset()
        code.CodeValue, code.CodingSchemeDesignator = "113100", "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = [code]
        meta = getattr(ds, "file_meta", None)
        if meta is not None and "SOPInstanceUID" in ds:
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        return ds

    def _walk(self, ds: Dataset) -> None:
        for kw in _REMOVE:
            if kw in ds:
                delattr(ds, kw)
        for elem in list(ds):
            if elem.VR == "SQ":
                for item in elem.value:
                    self._walk(item)
            elif elem.VR == "UI" and elem.keyword not in _KEEP_UIDS and elem.value:
                if elem.VM > 1:
                    elem.value = [self.uid(u) for u in elem.value]
                else:
                    elem.value = self.uid(elem.value)
            elif elem.VR == "PN" and elem.value:
                elem.value = self.patient_name
