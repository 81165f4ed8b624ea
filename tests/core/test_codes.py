"""One coded-concept type (viewer/core/codes.py) used by segments, DICOM SEG and the plugin API."""

from __future__ import annotations

import json

import pytest

from viewer.core.codes import AlgorithmType, Code


def test_a_code_is_value_scheme_meaning_and_stays_a_plain_triplet_in_json():
    bone = Code("3138006", "SCT", "Bone")
    assert (bone.value, bone.scheme, bone.meaning) == ("3138006", "SCT", "Bone")
    assert bone == ("3138006", "SCT", "Bone")  # saved journals and presets hold plain triplets
    assert json.loads(json.dumps(bone)) == ["3138006", "SCT", "Bone"]
    assert Code.of(["3138006", "SCT", "Bone"]) == bone and isinstance(Code.of(("a", "b", "c")), Code)
    assert Code.of({"value": "3138006", "scheme": "SCT", "meaning": "Bone"}) == bone
    with pytest.raises(ValueError, match="coded concept"):
        Code.of(("3138006", "SCT"))


def test_a_code_goes_to_and_from_highdicom_and_dicom_code_items():
    bone = Code("3138006", "SCT", "Bone")
    hd_code = bone.to_highdicom()
    assert (hd_code.value, hd_code.scheme_designator, hd_code.meaning) == ("3138006", "SCT", "Bone")
    assert Code.of(hd_code) == bone
    assert Code.of([hd_code]) == bone  # a code sequence: its first item


def test_algorithm_types_are_the_dicom_defined_terms():
    assert [t.value for t in AlgorithmType] == ["MANUAL", "SEMIAUTOMATIC", "AUTOMATIC"]
    assert AlgorithmType("AUTOMATIC") is AlgorithmType.AUTOMATIC and AlgorithmType.MANUAL == "MANUAL"
    assert json.dumps({"t": AlgorithmType.SEMIAUTOMATIC}) == '{"t": "SEMIAUTOMATIC"}'
    with pytest.raises(ValueError):
        AlgorithmType("GUESSED")
