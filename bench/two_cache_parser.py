"""The model-judge parser as it was before the fast-path count: two caches and a union per batch.

Kept for ``bench_raw_trades --parsers``, to measure in one run what skipping the judged side buys:
it caches the stage, then the model's verdicts on the rows off the fast path (a Python stage per
task even when no row needs it), and yields the union of the two.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from pyspark.sql import Column, DataFrame

from lakehouse.parsing import MessageParser


class TwoCacheParser(MessageParser):
    """``MessageParser`` whose ``persisted`` always judges: the stage cached, the verdicts cached."""

    @contextmanager
    def persisted(self, kafka_rows: DataFrame, columns: Sequence[Column | str],
                  judged_only: Sequence[str] = ()) -> Iterator[DataFrame]:
        staged = self.stage(kafka_rows, judged_only).persist()
        judged_rows = None
        try:
            fast, judged = self.verdicts(staged)
            judged_rows = judged.select(*columns).persist()
            yield fast.select(*columns).unionByName(judged_rows)
        finally:
            if judged_rows is not None:
                judged_rows.unpersist()
            staged.unpersist()
