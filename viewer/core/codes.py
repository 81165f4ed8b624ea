"""Coded concepts, with no Qt and no VTK: one type for every (value, scheme, meaning) triplet.

Segment terminology (SNOMED CT category and type), DICOM SEG and SR, RT structure sets and the
plugin API (``viewer.ai.api.Segment.code``) all use ``Code``: a named triplet in DICOM's order,
code value, coding scheme designator, code meaning.  It is a tuple, so saved journals and JSON
presets keep their plain ``[value, scheme, meaning]`` lists; ``to_highdicom`` and ``Code.of`` cross
to and from highdicom's ``CodedConcept`` and pydicom code sequence items at the DICOM boundary.

``AlgorithmType`` holds the values DICOM defines for Segment Algorithm Type (0062,0008), the same
defined terms as an RT structure set's ROI Generation Algorithm (3006,0036).
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple


class Code(NamedTuple):
    value: str  # Code Value, e.g. "3138006"
    scheme: str  # Coding Scheme Designator, e.g. "SCT"
    meaning: str  # Code Meaning, e.g. "Bone"

    @classmethod
    def of(cls, obj) -> Code:
        """A ``Code`` from a ``Code``, a (value, scheme, meaning) sequence, a dict with those keys, a
        highdicom ``CodedConcept`` or pydicom code item, or a code sequence (its first item)."""
        if isinstance(obj, Code):
            return obj
        if isinstance(obj, dict):
            return cls(str(obj["value"]), str(obj["scheme"]), str(obj["meaning"]))
        if hasattr(obj, "CodeValue") or hasattr(obj, "LongCodeValue"):  # pydicom Dataset / CodedConcept
            value = getattr(obj, "CodeValue", None) or getattr(obj, "LongCodeValue", "")
            return cls(str(value), str(obj.CodingSchemeDesignator), str(obj.CodeMeaning))
        items = list(obj)
        if len(items) == 1:
            return cls.of(items[0])
        if len(items) != 3:
            raise ValueError(f"a coded concept is (value, scheme, meaning), not {obj!r}")
        return cls(*(str(x) for x in items))

    def to_highdicom(self):
        import highdicom as hd

        return hd.sr.CodedConcept(self.value, self.scheme, self.meaning)


class AlgorithmType(StrEnum):
    MANUAL = "MANUAL"
    SEMIAUTOMATIC = "SEMIAUTOMATIC"
    AUTOMATIC = "AUTOMATIC"
