"""Static HTML review reports (jinja2 + matplotlib, self-contained) and the documented output schema."""

from qscope.report.html import highlight, write_report
from qscope.report.schema import OUTPUT_COLUMNS, order_columns, schema_markdown

__all__ = ["OUTPUT_COLUMNS", "highlight", "order_columns", "schema_markdown", "write_report"]
