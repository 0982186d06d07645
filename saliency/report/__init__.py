"""The run report: one self-contained HTML page with every stage of a run."""

from saliency.report.html import REPORT_FILE, build_report, time_to_first_masks

__all__ = ["REPORT_FILE", "build_report", "time_to_first_masks"]
