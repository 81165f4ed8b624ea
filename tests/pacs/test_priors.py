"""Priors on the PACS: a study-level query by PatientID (C-FIND and QIDO-RS) against the real Orthanc
lists the patient's other studies, never the study itself, never another patient."""

from __future__ import annotations

import pytest

from viewer.core.priors import pacs_priors
from viewer.core.volume import SourceInfo
from viewer.pacs import Query, query


@pytest.mark.parametrize("name", ["orthanc", "orthanc-web"])
def test_pacs_priors_by_patient_id(orthanc, name):
    node = orthanc.node(name)

    def priors(source):
        answers = query(node, Query(level="STUDY", patient_id=source.patient_id), orthanc.local) \
            if source.patient_id else []
        return pacs_priors(answers, source, node.name)

    # a follow-up of the brain MR's patient, made elsewhere: the PACS's study is its prior
    followup = SourceInfo(patient_id="VS-SEG-001", patient_name="VS-SEG-001", study_instance_uid="1.2.826.0.1.99")
    found = priors(followup)
    assert [s.study_uid for s in found] == [orthanc.brain.study_uid]
    st = found[0]
    assert (st.date, st.modalities, st.node, st.local) == ("19940904", ("MR",), name, False)
    # the brain study itself has no prior there; another patient's ID and an empty ID find nothing
    assert priors(SourceInfo(patient_id="VS-SEG-001", study_instance_uid=orthanc.brain.study_uid)) == []
    assert priors(SourceInfo(patient_id="VS-SEG-00", study_instance_uid="1.2.3")) == []
    assert priors(SourceInfo(patient_id="", patient_name="VS-SEG-001", study_instance_uid="1.2.3")) == []
