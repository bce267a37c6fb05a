"""Kafka message bytes -> typed, validated rows, with a reason for every reject.

The pydantic message model in ``lakehouse.messages`` is the judge, run in the executors: a
message's raw bytes go through ``Model.model_validate_json``, exactly what a producer's message
must pass, and a valid message's columns hold the values the model produced. One fast path skips
Python: a message in the canonical form ``model_dump_json`` writes (``canonical_form``: fields in
order, no whitespace, printable-ASCII strings without escapes, unsigned plain numbers) is parsed by
Spark's ``from_json`` and checked by Spark rules derived from the model's constraints; within that
form the two parsers cannot differ, and anything outside it, or failing a rule, goes to the model
for its verdict and reason. tests/test_contract.py proves the result equals the model's. So a job stores
exactly what the contract accepts, byte for byte, and nothing else: Spark's own JSON reader differs
from pydantic in many ways (it coerces numbers and objects to strings, replaces invalid UTF-8,
accepts single quotes and trailing bytes, and Java's ``$`` matches before a final line break).
Parsing never raises: a message that fails gets ``reject_reason`` set and goes to quarantine with
its raw bytes untouched.
"""

from __future__ import annotations

import enum
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import reduce
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal

import annotated_types
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from lakehouse.messages import NotBefore

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType, StructType

REJECT_REASON = "reject_reason"
PARSED = "message"
CANONICAL = "_canonical"  # working columns of MessageParser
FAST = "_fast_path"
JUDGED = "_judged"
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


def judge_messages(model: type[BaseModel], raw_values: pd.Series) -> pd.DataFrame:
    """The model's verdict on each raw message (None: nothing to judge, the fast path took it):
    one column per model field (None where rejected) and ``reject_reason`` (None where valid)."""
    import pandas as pd

    names = list(model.model_fields)
    fields_of = attrgetter(*names)
    validate = model.model_validate_json
    rows: list[tuple | None] = []
    reasons: list[str | None] = []
    for raw in raw_values:
        if raw is None:
            rows.append(None)
            reasons.append(None)
            continue
        try:
            rows.append(fields_of(validate(raw)))
            reasons.append(None)
        except ValidationError as error:
            rows.append(None)
            reasons.append(reject_reason(error))
    columns = {
        name: pd.Series([None if row is None else _plain(row[i]) for row in rows], dtype=object)
        for i, name in enumerate(names)
    }
    columns[REJECT_REASON] = pd.Series(reasons, dtype=object)
    return pd.DataFrame(columns)


def _plain(value: Any) -> Any:
    """A model value as Arrow takes it: an enum member is its value."""
    return value.value if isinstance(value, enum.Enum) else value


# Printable ASCII but for the quote and the backslash: a JSON string of these has no escapes, so
# every JSON parser reads the same characters, one per byte, and no line terminator can reach a
# pattern (Java's ``$`` matches before a final line break; Python's ``\Z``-anchored match does not).
_PLAIN_STRING = r'"[\x20\x21\x23-\x5b\x5d-\x7e]*"'
# Unsigned JSON numbers: both parsers round a decimal to the nearest double, and read an integer
# exactly. A sign, NaN or infinity leaves the fast path.
_PLAIN_FLOAT = r"(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?"
_PLAIN_INT = r"(0|[1-9][0-9]{0,17})"


def _string_item(annotation: Any) -> bool:
    return annotation is str or (typing.get_origin(annotation) is typing.Annotated
                                 and typing.get_args(annotation)[0] is str)


def _max_length(annotation: Any) -> int | None:
    """The ``max_length`` of an ``Annotated[str, Field(max_length=...)]`` list item, else None."""
    for meta in typing.get_args(annotation)[1:]:
        for constraint in getattr(meta, "metadata", [meta]):
            if isinstance(constraint, annotated_types.MaxLen):
                return constraint.max_length
    return None


def _plain_string(max_length: int | None) -> str:
    """``_PLAIN_STRING``, at most ``max_length`` characters (one byte each) when given: the fast path
    then takes only what the item's own constraint allows, and a longer item goes to the model."""
    return _PLAIN_STRING if max_length is None else _PLAIN_STRING.replace("]*", f"]{{0,{max_length}}}")


def _value_form(name: str, annotation: Any) -> str:
    annotation, optional = _unwrap_optional(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
        origin = typing.get_origin(annotation)
    if origin is Literal:
        form = "|".join(str(a) if isinstance(a, int) else f'"{a}"' for a in typing.get_args(annotation))
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        form = "|".join(f'"{member.value}"' for member in annotation)
    elif origin is list and _string_item(typing.get_args(annotation)[0]):
        item = _plain_string(_max_length(typing.get_args(annotation)[0]))
        form = rf"\[({item}(,{item})*)?\]"
    elif annotation is str:
        form = _PLAIN_STRING
    elif annotation is bool:
        form = "true|false"
    elif annotation is float:
        form = _PLAIN_FLOAT
    elif annotation is int:
        form = _PLAIN_INT
    else:
        raise TypeError(f"no canonical form for {name}: {annotation!r}")
    return f"({form}|null)" if optional else f"({form})"


def canonical_form(model: type[BaseModel]) -> str:
    """A Java regex for the canonical JSON of ``model``: every field, in order, as ``model_dump_json``
    writes it (``\\z``: the end of input, not before a final line break)."""
    members = ",".join(f'"{name}":{_value_form(name, field.annotation)}' for name, field in model.model_fields.items())
    return r"^\{" + members + r"\}\z"


def _field_rules(name: str, field: FieldInfo) -> list[Column]:
    """Conditions that mark a field of a canonical message invalid, one per model constraint."""
    from pyspark.sql import functions as F

    value = F.col(f"{PARSED}.{name}")
    annotation, _ = _unwrap_optional(field.annotation)
    rules = [value.isNull()] if field.is_required() else []
    present = value.isNotNull()
    size = F.size(value) if typing.get_origin(annotation) is list else F.length(value)
    for constraint in field.metadata:
        if isinstance(constraint, annotated_types.Gt):
            rules.append(present & (value <= constraint.gt))
        elif isinstance(constraint, annotated_types.Ge):
            rules.append(present & (value < constraint.ge))
        elif isinstance(constraint, annotated_types.Lt):
            rules.append(present & (value >= constraint.lt))
        elif isinstance(constraint, annotated_types.Le):
            rules.append(present & (value > constraint.le))
        elif isinstance(constraint, NotBefore):
            rules.append(present & (value < constraint.earliest_ms))
        elif isinstance(constraint, annotated_types.MinLen):
            rules.append(present & (size < constraint.min_length))
        elif isinstance(constraint, annotated_types.MaxLen):
            rules.append(present & (size > constraint.max_length))
        elif getattr(constraint, "pattern", None):
            rules.append(present & ~value.rlike(constraint.pattern))
        elif getattr(constraint, "allow_inf_nan", None) is False:
            rules.append(present & (F.isnan(value) | value.isin(float("inf"), float("-inf"))))
        elif type(constraint).__name__ not in ("Strict",):
            raise TypeError(f"no Spark rule for {name}: {constraint!r}")
    return rules


class MessageParser:
    """Kafka source rows -> the same rows plus ``message`` (the model's values) and ``reject_reason``.

    ``reject_reason`` is null for a valid message, otherwise the first rule it breaks, in pydantic's
    words. A canonical message that passes every Spark rule takes the fast path; every other one is
    judged by the model. A model with model validators (rules in code, not in field metadata) has no
    fast path.

    Only rows off the fast path may reach Python: a Python UDF ships every row it sees to a Python
    worker and buffers the whole input row in the JVM to join the result back, so a UDF over the
    whole batch (even one passed nulls) costs as much as judging it all. Hence two steps: ``stage``
    (one pass over the Kafka rows: canonical check, ``from_json``, rules, the ``_fast_path`` flag),
    which a job persists, and ``verdicts``, which splits the stage into fast rows and the model's
    verdicts on the others (a small frame, usually empty). ``persisted`` does both for a micro-batch,
    and skips the second when the stage's pass counted no row off the fast path.

    A streaming job builds one parser and calls it on every micro-batch: the expressions are built
    here once (each costs Py4J round trips).
    """

    def __init__(self, model: type[BaseModel]) -> None:
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        message_type = spark_json_schema(model)
        names = list(model.model_fields)
        self.empty = F.col("value").isNull()
        if model.__pydantic_decorators__.model_validators:
            canonical, fast_parse, fast_ok = F.lit(False), F.lit(None).cast(message_type), F.lit(False)
        else:
            text = F.col("value").cast("string")
            canonical = ~self.empty & text.rlike(canonical_form(model))
            fast_parse = F.when(canonical, F.from_json(text, message_type))  # only canonical ones are parsed
            broken = [rule for name, field in model.model_fields.items() for rule in _field_rules(name, field)]
            # A null rule (a field from_json left null) counts as broken.
            fast_ok = F.col(CANONICAL) & ~F.coalesce(reduce(lambda a, b: a | b, broken), F.lit(True))
        verdict_type = T.StructType([*message_type.fields, T.StructField(REJECT_REASON, T.StringType(), True)])
        judge = F.pandas_udf(_judge_function(model), verdict_type)
        judged = F.col(JUDGED)
        self.fast = F.col(FAST)
        self.stage_columns = [[canonical.alias(CANONICAL), fast_parse.alias(PARSED)], [fast_ok.alias(FAST)]]
        self.judge = judge(F.when(~self.empty, F.col("value"))).alias(JUDGED)
        self.judged_message = F.when(
            ~self.empty & judged[REJECT_REASON].isNull(), F.struct(*[judged[name].alias(name) for name in names])
        ).alias(PARSED)
        self.judged_reason = F.when(self.empty, F.lit(EMPTY_MESSAGE)).otherwise(judged[REJECT_REASON]).alias(
            REJECT_REASON
        )
        self.no_reason = F.lit(None).cast(T.StringType()).alias(REJECT_REASON)
        self.off_fast_count = F.count_if(~self.fast)
        # Messages the model judged in ``persisted`` since this parser was built: a producer off the
        # canonical form shows here (each such message costs a trip through a Python worker).
        self.judged_by_model = 0

    def stage(self, kafka_rows: DataFrame, judged_only: Sequence[str] = ()) -> DataFrame:
        """The Kafka rows plus ``_fast_path`` and the fast path's ``message``; the Kafka columns named
        in ``judged_only`` are kept only on rows off the fast path (the raw bytes a valid trade no
        longer needs are then not cached). ``value`` is always kept where the model must judge."""
        columns = kafka_rows.columns
        for stage in self.stage_columns:
            kafka_rows = kafka_rows.select("*", *stage)
        kept = [_off_fast_path(name) if name in judged_only else name for name in columns]
        return kafka_rows.select(*kept, FAST, PARSED)

    def verdicts(self, staged: DataFrame) -> tuple[DataFrame, DataFrame]:
        """(fast-path rows, the model's verdicts on every other row), each with the Kafka columns,
        ``message`` and ``reject_reason``; only the second runs Python, on its rows alone."""
        columns = [name for name in staged.columns if name not in (FAST, PARSED)]
        fast = staged.where(self.fast).select(*columns, PARSED, self.no_reason)
        judged = staged.where(~self.fast).select(*columns, self.judge)
        return fast, judged.select(*columns, self.judged_message, self.judged_reason)

    def __call__(self, kafka_rows: DataFrame) -> DataFrame:
        """Every row with its verdict (row order not kept: a caller that needs it sorts)."""
        fast, judged = self.verdicts(self.stage(kafka_rows))
        return fast.unionByName(judged)

    @contextmanager
    def persisted(self, kafka_rows: DataFrame, columns: Sequence[Column | str],
                  judged_only: Sequence[str] = ()) -> Iterator[DataFrame]:
        """A micro-batch's verdicts as ``columns``, read from Kafka once. The stage is cached (with
        ``judged_only`` columns held only off the fast path) and counted off the fast path in the
        same pass. A batch with no such row (a canonical feed's every batch) is the cached stage
        alone: no second cache, no union, no Python stage (which would run a Python worker per task
        even with no row to judge). Otherwise the model's verdicts are cached too, so each action on
        the result runs no Python again. Both caches are released on exit."""
        staged = self.stage(kafka_rows, judged_only).persist()
        judged_rows = None
        try:
            off_fast_path = staged.agg(self.off_fast_count).first()[0]
            self.judged_by_model += off_fast_path
            if off_fast_path == 0:
                yield staged.select(*[c for c in staged.columns if c not in (FAST, PARSED)], PARSED,
                                    self.no_reason).select(*columns)
            else:
                fast, judged = self.verdicts(staged)
                judged_rows = judged.select(*columns).persist()
                yield fast.select(*columns).unionByName(judged_rows)
        finally:
            if judged_rows is not None:
                judged_rows.unpersist()
            staged.unpersist()


def _off_fast_path(name: str) -> Column:
    """Column ``name`` where the model judges the row, null on the fast path."""
    from pyspark.sql import functions as F

    return F.when(~F.col(FAST), F.col(name)).alias(name)


def _judge_function(model: type[BaseModel]) -> Callable[[pd.Series], pd.DataFrame]:
    """``judge_messages`` bound to ``model``, with the type hints Spark reads to make it a scalar
    pandas UDF (real classes: pandas is imported only where Spark is)."""
    import pandas as pd

    def judge(raw_values: pd.Series) -> pd.DataFrame:
        return judge_messages(model, raw_values)

    judge.__annotations__ = {"raw_values": pd.Series, "return": pd.DataFrame}
    return judge


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
