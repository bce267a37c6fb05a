"""The Spark-only parser the jobs used before the model judged messages (``from_json`` plus Spark
rules derived from the model's constraints), kept for one purpose: ``bench_raw_trades`` runs the
raw-trades job with it and with ``lakehouse.parsing.MessageParser`` in one run, to price the model's
judgement. It is looser than the contract (tests/test_contract.py shows how): never use it in a job.
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from functools import reduce
from typing import TYPE_CHECKING, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from lakehouse.parsing import PARSED, REJECT_REASON, _unwrap_optional, spark_json_schema

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame

CORRUPT = "_corrupt_record"


def _field_rules(name: str, field: FieldInfo) -> list[tuple[Column, str]]:
    """(condition that marks the field invalid, reason) pairs for one model field."""
    from pyspark.sql import functions as F

    value = F.col(f"{PARSED}.{name}")
    annotation, _ = _unwrap_optional(field.annotation)
    rules: list[tuple[Column, str]] = []
    if field.is_required():
        rules.append((value.isNull(), f"{name} is missing or has the wrong type"))
    present = value.isNotNull()
    if typing.get_origin(annotation) is Literal:
        allowed = list(typing.get_args(annotation))
        rules.append((present & ~value.isin(allowed), f"{name} must be one of {allowed}"))
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        allowed = [member.value for member in annotation]
        rules.append((present & ~value.isin(allowed), f"{name} must be one of {allowed}"))
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Gt):
            rules.append((present & (value <= constraint.gt), f"{name} must be > {constraint.gt}"))
        elif isinstance(constraint, annotated_types.Ge):
            rules.append((present & (value < constraint.ge), f"{name} must be >= {constraint.ge}"))
        elif isinstance(constraint, annotated_types.Le):
            rules.append((present & (value > constraint.le), f"{name} must be <= {constraint.le}"))
        elif isinstance(constraint, annotated_types.MinLen):
            size = F.size(value) if typing.get_origin(annotation) is list else F.length(value)
            rules.append((present & (size < constraint.min_length), f"{name} is shorter than {constraint.min_length}"))
        elif isinstance(constraint, annotated_types.MaxLen):
            size = F.size(value) if typing.get_origin(annotation) is list else F.length(value)
            rules.append((present & (size > constraint.max_length), f"{name} is longer than {constraint.max_length}"))
        elif getattr(constraint, "pattern", None):
            rules.append((present & ~value.rlike(constraint.pattern), f"{name} does not match {constraint.pattern}"))
        elif getattr(constraint, "allow_inf_nan", None) is False:
            rules.append(
                (present & (F.isnan(value) | value.isin(float("inf"), float("-inf"))), f"{name} is not finite")
            )
    return rules


def validation_rules(model: type[BaseModel], extra: list[tuple[Column, str]] | None = None) -> list[tuple[Column, str]]:
    """Every rule of ``model`` (in field order), then the ``extra`` cross-field rules."""
    rules = [rule for name, field in model.model_fields.items() for rule in _field_rules(name, field)]
    return rules + list(extra or [])


class FromJsonParser:
    """Kafka source rows -> the same rows plus ``message`` (parsed struct) and ``reject_reason``.

    ``reject_reason`` is null for a valid message, otherwise the first rule it breaks. The JSON is
    parsed once: a record ``from_json`` cannot parse at all (nothing but its corrupt-record column
    filled) is "not a JSON object"; one with a field of the wrong type gets that field's reason.

    A streaming job builds one parser and calls it on every micro-batch: the expressions are built
    here once: rebuilt per batch, they and ``lakehouse.trades.TradeRows`` cost 677 Py4J round trips,
    0.4 s of driver time before any data moved (docs/performance.md#the-raw-trades-jobs-cost-model).
    """

    def __init__(self, model: type[BaseModel], extra_rules: list[tuple[Column, str]] | None = None) -> None:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        schema = spark_json_schema(model).add(T.StructField(CORRUPT, T.StringType(), True))
        options = {"mode": "PERMISSIVE", "columnNameOfCorruptRecord": CORRUPT}
        self.message = F.from_json(F.col("value").cast("string"), schema, options)
        fields = [F.col(f"{PARSED}.{name}") for name in model.model_fields]
        nothing_parsed = reduce(lambda a, b: a & b, [field.isNull() for field in fields])
        reason = F.when(F.col("value").isNull(), F.lit("empty message")).when(
            F.col(PARSED).isNull() | (F.col(f"{PARSED}.{CORRUPT}").isNotNull() & nothing_parsed),
            F.lit("not a JSON object"),
        )
        for condition, message in validation_rules(model, extra_rules):
            reason = reason.when(condition, F.lit(message))
        self.reason = reason.when(F.col(f"{PARSED}.{CORRUPT}").isNotNull(), F.lit("malformed JSON"))

    def __call__(self, kafka_rows: DataFrame) -> DataFrame:
        return kafka_rows.withColumn(PARSED, self.message).withColumn(REJECT_REASON, self.reason)

    @contextmanager
    def persisted(self, kafka_rows: DataFrame, columns: list, judged_only: tuple = ()) -> Iterator[DataFrame]:
        """The parse cached as ``columns`` for one micro-batch, as the jobs had it (one pass, one cache)."""
        parsed = self(kafka_rows).select(*columns).persist()
        try:
            yield parsed
        finally:
            parsed.unpersist()
