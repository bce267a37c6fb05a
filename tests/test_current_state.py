"""What a reader keeps of a metadata file: the current state, not the snapshot history."""

from __future__ import annotations

from lakehouse.reading.current_state import current_state


def metadata(current: int, snapshots: list[int], refs: dict[str, int]) -> dict:
    return {
        "format-version": 2,
        "current-snapshot-id": current,
        "snapshots": [{"snapshot-id": s, "manifest-list": f"snap-{s}.avro"} for s in snapshots],
        "refs": {name: {"snapshot-id": s, "type": "branch" if name == "main" else "tag"} for name, s in refs.items()},
        "snapshot-log": [{"snapshot-id": s, "timestamp-ms": s} for s in snapshots],
        "metadata-log": [{"metadata-file": f"v{s}.metadata.json", "timestamp-ms": s} for s in snapshots],
        "schemas": [{"schema-id": 0}],
        "properties": {"write.format.default": "parquet"},
    }


def test_only_the_current_snapshot_and_those_refs_name_are_kept_and_the_logs_emptied() -> None:
    long = metadata(current=3600, snapshots=list(range(1, 3601)), refs={"main": 3600, "audit": 1200})
    kept = current_state(long)
    assert [s["snapshot-id"] for s in kept["snapshots"]] == [1200, 3600]
    assert kept["snapshot-log"] == [] and kept["metadata-log"] == []
    assert {k: v for k, v in kept.items() if k not in ("snapshots", "snapshot-log", "metadata-log")} == {
        k: v for k, v in long.items() if k not in ("snapshots", "snapshot-log", "metadata-log")}
    assert len(long["snapshots"]) == 3600  # the parsed file is not changed


def test_a_table_never_written_keeps_no_snapshot() -> None:
    for current in (-1, None):
        empty = metadata(current=current, snapshots=[], refs={})
        assert current_state(empty)["snapshots"] == []


def test_a_current_snapshot_without_a_main_ref_is_kept() -> None:
    # Format v1 metadata written before refs existed names its current snapshot only by id.
    old = metadata(current=7, snapshots=[5, 6, 7], refs={})
    del old["refs"]
    assert [s["snapshot-id"] for s in current_state(old)["snapshots"]] == [7]
