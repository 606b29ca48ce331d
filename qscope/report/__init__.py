"""Static HTML review reports (jinja2 + matplotlib, self-contained), the features they name, and the output schema."""

from qscope.report.features import FeatureNote, describe_features, load_notes, save_notes
from qscope.report.html import highlight, write_report
from qscope.report.schema import OUTPUT_COLUMNS, order_columns, schema_markdown

__all__ = [
    "FeatureNote",
    "OUTPUT_COLUMNS",
    "describe_features",
    "highlight",
    "load_notes",
    "order_columns",
    "save_notes",
    "schema_markdown",
    "write_report",
]
