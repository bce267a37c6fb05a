"""Kafka message bytes -> typed, validated rows, with a reason for every reject.

The pydantic message model in ``lakehouse.messages`` is the judge, run in the executors: each
message's raw bytes go through ``Model.model_validate_json``, exactly what a producer's message
must pass, and a valid message's columns hold the values the model produced. So a job stores
exactly what the contract accepts, byte for byte, and nothing else: Spark's own JSON reader differs
from pydantic in many ways (it coerces numbers and objects to strings, replaces invalid UTF-8,
accepts single quotes and trailing bytes, and Java's ``$`` matches before a final line break).
Parsing never raises: a message that fails gets ``reject_reason`` set and goes to quarantine with
its raw bytes untouched.
"""

from __future__ import annotations

import enum
import json
import types
import typing
from collections.abc import Iterator
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ValidationError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

REJECT_REASON = "reject_reason"
PARSED = "message"
EMPTY_MESSAGE = "empty message"
# A reason is one line an operator reads; pydantic's messages are short, the cap guards the column.
MAX_REASON_CHARS = 500


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0], True
    return annotation, False


def _spark_type(annotation: Any) -> DataType:
    from pyspark.sql import types as T

    annotation, _ = _unwrap_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _spark_type(typing.get_args(annotation)[0])
    if origin is list:
        return T.ArrayType(_spark_type(typing.get_args(annotation)[0]))
    if origin is Literal:
        return _spark_type(type(typing.get_args(annotation)[0]))
    if (isinstance(annotation, type) and issubclass(annotation, enum.Enum)) or annotation is str:
        return T.StringType()
    if annotation is bool:
        return T.BooleanType()
    if annotation is int:
        return T.LongType()
    if annotation is float:
        return T.DoubleType()
    raise TypeError(f"no Spark type for {annotation!r}")


def spark_json_schema(model: type[BaseModel]) -> StructType:
    """The Spark struct a message of ``model`` is held in (one field per model field, same names)."""
    from pyspark.sql import types as T

    return T.StructType(
        [T.StructField(name, _spark_type(field.annotation), True) for name, field in model.model_fields.items()]
    )


def reject_reason(error: ValidationError) -> str:
    """The first rule a message breaks, as ``field: pydantic's message`` (no input echoed: the raw
    bytes are beside the reason in quarantine already)."""
    errors = error.errors(include_url=False, include_input=False, include_context=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"])
    reason = f"{where}: {first['msg']}" if where else first["msg"]
    if len(errors) > 1:
        reason += f" (and {len(errors) - 1} more)"
    return reason[:MAX_REASON_CHARS]


class ModelJudge:
    """The ``mapInArrow`` function: Arrow batches of Kafka rows -> the same rows plus the model's
    fields (a struct, null when rejected) and the reject reason (null when valid).

    Pickled to the executors by reference to this module, so they import ``lakehouse.parsing`` and
    ``lakehouse.messages`` (the venv's python locally, ``--py-files`` on a cluster).
    """

    def __init__(self, model: type[BaseModel], message_type: StructType) -> None:
        self.model = model
        self.message_type_json = message_type.json()
        self._arrow_type: pa.StructType | None = None

    def _message_arrow_type(self) -> pa.StructType:
        if self._arrow_type is None:
            from pyspark.sql.pandas.types import to_arrow_type
            from pyspark.sql.types import StructType

            self._arrow_type = to_arrow_type(StructType.fromJson(json.loads(self.message_type_json)))
        return self._arrow_type

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        import pyarrow as pa

        message_type = self._message_arrow_type()
        names = list(self.model.model_fields)
        fields_of = attrgetter(*names)
        validate = self.model.model_validate_json
        for batch in batches:
            rows: list[tuple | None] = []
            reasons: list[str | None] = []
            for raw in batch.column("value").to_pylist():
                if raw is None:
                    rows.append(None)
                    reasons.append(EMPTY_MESSAGE)
                    continue
                try:
                    rows.append(fields_of(validate(raw)))
                    reasons.append(None)
                except ValidationError as error:
                    rows.append(None)
                    reasons.append(reject_reason(error))
            rejected = pa.array([row is None for row in rows], pa.bool_())
            columns = [
                pa.array([None if row is None else _plain(row[i]) for row in rows], message_type.field(i).type)
                for i in range(len(names))
            ]
            message = pa.StructArray.from_arrays(columns, fields=list(message_type), mask=rejected)
            yield pa.RecordBatch.from_arrays(
                [*batch.columns, message, pa.array(reasons, pa.string())],
                names=[*batch.schema.names, PARSED, REJECT_REASON],
            )


def _plain(value: Any) -> Any:
    """A model value as Arrow takes it: an enum member is its value."""
    return value.value if isinstance(value, enum.Enum) else value


class MessageParser:
    """Kafka source rows -> the same rows plus ``message`` (the model's values) and ``reject_reason``.

    ``reject_reason`` is null for a valid message, otherwise the first rule it breaks, in pydantic's
    words. A streaming job builds one parser and calls it on every micro-batch: the output schema
    is built here once, so a batch costs the driver one ``mapInArrow`` call.
    """

    def __init__(self, model: type[BaseModel]) -> None:
        from pyspark.sql import types as T

        self.message_type = spark_json_schema(model)
        self.judge = ModelJudge(model, self.message_type)
        self.added_fields = [
            T.StructField(PARSED, self.message_type, True),
            T.StructField(REJECT_REASON, T.StringType(), True),
        ]

    def __call__(self, kafka_rows: DataFrame) -> DataFrame:
        from pyspark.sql import types as T

        schema = T.StructType([*kafka_rows.schema.fields, *self.added_fields])
        return kafka_rows.mapInArrow(self.judge, schema)


def quarantine_rows(rejected: DataFrame) -> DataFrame:
    """Rejected Kafka rows in the quarantine table's shape (raw bytes untouched)."""
    from pyspark.sql import functions as F

    return rejected.select(
        F.col("topic"),
        F.col("partition").alias("kafka_partition"),
        F.col("offset").alias("kafka_offset"),
        F.col("timestamp").alias("kafka_timestamp"),
        F.col("key").alias("raw_key"),
        F.col("value").alias("raw_value"),
        F.col(REJECT_REASON).alias("reason"),
        F.current_timestamp().alias("quarantined_time"),
    )
