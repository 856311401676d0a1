"""Results (docs/method.md, Statistics): run records, statistics, the paper's numbers, tables, figures and run
summaries.

Reads records; never imports training or method code. :mod:`glai.results.figures` imports matplotlib and is
loaded only when figures are written.
"""

from glai.results.records import SCHEMA_VERSION, read_record, record_path, write_record

__all__ = ["SCHEMA_VERSION", "read_record", "record_path", "write_record"]
