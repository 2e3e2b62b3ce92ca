"""The export verifier's report of missing or invalid record numbers (verify/export.py)."""

from __future__ import annotations

from warrantor.verify.export import ExportReport


def test_an_export_report_names_every_missing_number_in_order() -> None:
    report = ExportReport()
    for low, high in ((3, 3), (4, 6), (9, 9), (2, 2), (7, 7), (20, 21)):
        report.mark_invalid(low, high)
    assert report.invalid == [(2, 7), (9, 9), (20, 21)]
    assert report.missing_text() == "2-7, 9, 20-21"
