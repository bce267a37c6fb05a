"""A table as of its current snapshot, loaded without the snapshot history its metadata file holds.

A metadata file keeps every snapshot the table still has (up to 3,600 for a stream's table between
maintenance runs) and the logs of earlier snapshots and metadata files; pyiceberg validates all of
it on every load: ~60-190 ms at 3,600 snapshots against ~1 ms for a new table, paid by every
reader that follows a live table (the dashboard reloads a table on each of its commits). A read of
the current data needs only the schemas, specs, properties and the snapshots a ref points at, so
the history is cut from the parsed JSON before pyiceberg sees it
(docs/performance.md#the-dashboards-refresh). Such a table is for reads only: it has no history to
travel to (``Lakehouse.table`` loads the whole table).
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

HISTORY_LOGS = ("snapshot-log", "metadata-log")


@dataclass(frozen=True)
class CurrentTable:
    table: Table  # the current snapshot and what reads need, no history
    snapshots: int | None  # how many snapshots the metadata file holds (None: not known to this load)


def current_state(metadata: dict[str, Any]) -> dict[str, Any]:
    """``metadata`` (a metadata file's JSON) with only the snapshots the current one and the refs
    (branches, tags) name, and empty history logs: what reading the current data needs."""
    named = {ref["snapshot-id"] for ref in metadata.get("refs", {}).values()}
    current = metadata.get("current-snapshot-id")
    if current is not None and current != -1:
        named.add(current)
    kept = dict(metadata)
    kept["snapshots"] = [s for s in metadata.get("snapshots", []) if s["snapshot-id"] in named]
    for log in HISTORY_LOGS:
        if log in kept:
            kept[log] = []
    return kept


def load_current(catalog: Catalog, identifier: str, metadata_location: str) -> CurrentTable:
    """The table whose metadata file is ``metadata_location`` (the catalog's pointer), as of its
    current snapshot; read through the catalog's own FileIO, as ``catalog.load_table`` reads it."""
    from pyiceberg.io import load_file_io
    from pyiceberg.serializers import Compressor
    from pyiceberg.table import Table
    from pyiceberg.table.metadata import TableMetadataUtil

    io = load_file_io(properties=catalog.properties, location=metadata_location)
    decompress = Compressor.get_compressor(metadata_location).stream_decompressor
    with decompress(io.new_input(metadata_location).open()) as raw:
        metadata = json.loads(codecs.getreader("utf-8")(raw).read())
    parsed = TableMetadataUtil.parse_obj(current_state(metadata))
    table = Table(identifier=catalog.identifier_to_tuple(identifier), metadata=parsed,
                  metadata_location=metadata_location, io=catalog._load_file_io(parsed.properties, metadata_location),
                  catalog=catalog)
    return CurrentTable(table, len(metadata.get("snapshots", [])))
