"""The 'hounsfield pacs query' table: what a server sends reaches the terminal only as plain text."""

from __future__ import annotations

from viewer.pacs.cli import results_table
from viewer.pacs.query import QueryResult

HOSTILE = "\x1b]0;owned\x07EVIL\x1b[2J\x1b[31m^PATIENT\r\n\x08\x9b1m\u202e" + "X" * 5000


def _printable(line: str) -> bool:
    return all(c.isprintable() for c in line)


def test_study_table_strips_control_characters_and_truncates_server_strings():
    results = [QueryResult("STUDY", "1.2.3", patient_name=HOSTILE, patient_id="ID\x1b[1m7",
                           study_description=HOSTILE, modalities="CT", num_series=2),
               QueryResult("STUDY", "1.2.4", patient_name="DOE^JANE", study_description="Chest")]
    lines = results_table(results, "STUDY")
    assert len(lines) == 3  # header and one line per study: a server's newline does not add lines
    for line in lines:
        assert _printable(line), repr(line)
        assert len(line) < 400, len(line)
    assert "EVIL" in lines[1] and "ID [1m7" in lines[1] and "1.2.3" in lines[1]
    assert lines[2].startswith("DOE^JANE") and "Chest" in lines[2]
    assert lines[0].startswith("Patient") and "StudyInstanceUID" in lines[0]


def test_series_table_strips_control_characters():
    results = [QueryResult("SERIES", "1.2.3", series_uid="1.2.3.4", series_number=3, modalities="CT\x1b[0m",
                           series_description=HOSTILE, num_instances=141)]
    lines = results_table(results, "SERIES")
    assert len(lines) == 2 and all(_printable(line) and len(line) < 300 for line in lines), lines
    assert lines[1].startswith("3") and "141" in lines[1] and lines[1].endswith("1.2.3.4")


def test_a_uid_is_shown_whole():
    uid = "1.2.826.0.1.3680043.8.498.12345678901234567890123456789012345678"  # 64 characters
    lines = results_table([QueryResult("SERIES", "1.2", series_uid=uid)], "SERIES")
    assert lines[1].endswith(uid)
