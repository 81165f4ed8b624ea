"""What to look for on a PACS (``Query``) and what came back (``QueryResult``), protocol-neutral.

``Query`` becomes a C-FIND identifier or QIDO-RS parameters; each match becomes one
``QueryResult`` at study or series level.  ``COLUMNS`` and ``sort_results`` give a table
(the GUI's result view and the CLI's output) that sorts on any column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from pydicom.dataset import Dataset

from viewer.core.errors import HounsfieldError

LEVELS = ("STUDY", "SERIES")
_DATE = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})$")


def _date(value: str, what: str) -> str:
    if not value:
        return ""
    m = _DATE.match(value.strip())
    if not m:
        raise HounsfieldError(f"The {what} '{value}' is not a date; write it as YYYY-MM-DD or YYYYMMDD.")
    return "".join(m.groups())


@dataclass
class Query:
    """Search terms; empty ones match everything.  ``patient_name`` takes the wildcards * and ?.

    At SERIES level ``study_uid`` says which study's series to list.
    """

    level: str = "STUDY"
    patient_name: str = ""
    patient_id: str = ""
    date_from: str = ""  # YYYYMMDD or YYYY-MM-DD, inclusive
    date_to: str = ""
    modality: str = ""
    accession_number: str = ""
    study_uid: str = ""
    limit: int = 0  # DICOMweb only: at most this many results (0: the server's limit)

    def normalized(self) -> Query:
        level = self.level.upper()
        if level not in LEVELS:
            raise HounsfieldError(f"Query level '{self.level}' is unknown; use study or series.")
        if level == "SERIES" and not self.study_uid:
            raise HounsfieldError("A series-level query needs the StudyInstanceUID of the study to list.")
        d0, d1 = _date(self.date_from, "start date"), _date(self.date_to, "end date")
        if d0 and d1 and d0 > d1:
            raise HounsfieldError(f"The date range {d0}-{d1} ends before it starts; swap the dates.")
        return Query(level, self.patient_name.strip(), self.patient_id.strip(), d0, d1,
                     self.modality.strip().upper(), self.accession_number.strip(), self.study_uid.strip(),
                     max(0, int(self.limit)))

    @property
    def date_range(self) -> str:
        """DICOM range matching: 'A-B', 'A-', '-B' or ''."""
        if not (self.date_from or self.date_to):
            return ""
        if self.date_from and self.date_from == self.date_to:
            return self.date_from
        return f"{self.date_from}-{self.date_to}"

    def matching_keys(self) -> dict[str, str]:
        """Keyword -> value of the attributes that constrain the search (both protocols)."""
        keys = {"PatientName": self.patient_name, "PatientID": self.patient_id, "StudyDate": self.date_range,
                "AccessionNumber": self.accession_number, "StudyInstanceUID": self.study_uid}
        keys["ModalitiesInStudy" if self.level == "STUDY" else "Modality"] = self.modality
        return {k: v for k, v in keys.items() if v}

    def identifier(self) -> Dataset:
        """The C-FIND identifier: matching keys plus the return keys a result needs."""
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        for kw in RETURN_KEYS[self.level]:
            setattr(ds, kw, "")
        for kw, value in self.matching_keys().items():
            setattr(ds, kw, value)
        return ds


RETURN_KEYS = {
    "STUDY": ["PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "StudyTime",
              "StudyDescription", "AccessionNumber", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
              "NumberOfStudyRelatedInstances"],
    "SERIES": ["StudyInstanceUID", "SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription",
               "NumberOfSeriesRelatedInstances"],
}


@dataclass
class QueryResult:
    """One matching study or series.  Numbers the server did not send are None."""

    level: str
    study_uid: str
    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = ""
    study_date: str = ""
    study_time: str = ""
    study_description: str = ""
    accession_number: str = ""
    modalities: str = ""  # study: modalities in the study ("CT\\SEG" shown as "CT, SEG"); series: its modality
    series_uid: str = ""
    series_number: int | None = None
    series_description: str = ""
    num_series: int | None = None
    num_instances: int | None = None

    @classmethod
    def from_dataset(cls, ds: Dataset, level: str) -> QueryResult:
        def text(kw: str) -> str:
            value = ds.get(kw)
            if value is None or value == "":
                return ""
            if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
                return ", ".join(str(v) for v in value)
            return str(value).strip()

        def number(kw: str) -> int | None:
            try:
                value = ds.get(kw)
                return None if value in (None, "") else int(value)
            except (TypeError, ValueError):
                return None

        series = level == "SERIES"
        return cls(
            level=level, study_uid=text("StudyInstanceUID"), patient_name=text("PatientName"),
            patient_id=text("PatientID"), patient_birth_date=text("PatientBirthDate"),
            study_date=text("StudyDate"), study_time=text("StudyTime"), study_description=text("StudyDescription"),
            accession_number=text("AccessionNumber"),
            modalities=text("Modality" if series else "ModalitiesInStudy"),
            series_uid=text("SeriesInstanceUID"), series_number=number("SeriesNumber"),
            series_description=text("SeriesDescription"), num_series=number("NumberOfStudyRelatedSeries"),
            num_instances=number("NumberOfSeriesRelatedInstances" if series else "NumberOfStudyRelatedInstances"),
        )

    def to_json(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# Table columns per level: (attribute, heading).  The GUI's table and the CLI print these.
COLUMNS = {
    "STUDY": [("patient_name", "Patient"), ("patient_id", "Patient ID"), ("study_date", "Date"),
              ("modalities", "Modalities"), ("study_description", "Description"),
              ("accession_number", "Accession"), ("num_series", "Series"), ("num_instances", "Images"),
              ("study_uid", "StudyInstanceUID")],
    "SERIES": [("series_number", "#"), ("modalities", "Modality"), ("series_description", "Description"),
               ("num_instances", "Images"), ("series_uid", "SeriesInstanceUID")],
}


def sort_key(column: str):
    """A key function sorting results on ``column``: numbers numerically, text without case, blanks last."""

    def key(r: QueryResult):
        value = getattr(r, column)
        if value is None or value == "":
            return (1, 0, "")
        if isinstance(value, (int, float)):
            return (0, value, "")
        return (0, 0, str(value).casefold())

    return key


def sort_results(results: list[QueryResult], column: str, descending: bool = False) -> list[QueryResult]:
    if column not in {f.name for f in fields(QueryResult)}:
        raise HounsfieldError(f"Results cannot be sorted by '{column}'; use one of the table's columns.")
    present = [r for r in results if getattr(r, column) not in (None, "")]
    blank = [r for r in results if getattr(r, column) in (None, "")]
    return sorted(present, key=sort_key(column), reverse=descending) + blank
