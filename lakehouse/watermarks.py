"""The bars job's high-water mark, kept per micro-batch next to its streaming checkpoint.

Why a log per batch and not one value: Spark replays the last micro-batch after a crash, and a
replay must decide "late or not" exactly as the first attempt did. So batch N reads the mark
written by the newest batch *before* N, and writes its own under N when it is done; a replay of N
finds the same predecessor and reaches the same decisions (the table writes are idempotent MERGEs).
The log lives inside the checkpoint directory, so deleting the checkpoint to rebuild the bars also
resets the watermark. Paths may be local or any fsspec URL (``gs://`` on GCP).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import fsspec

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
KEEP_BATCHES = 100


def to_epoch_micros(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def from_epoch_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


class HighWaterMarkLog:
    """``<directory>/<batch_id>.json`` holding ``{"high_water_mark_us": <epoch microseconds>}``."""

    def __init__(self, directory: str) -> None:
        self._fs, self._root = fsspec.core.url_to_fs(directory)
        self._fs.makedirs(self._root, exist_ok=True)

    def _batch_ids(self) -> list[int]:
        names = (path.rstrip("/").rsplit("/", 1)[-1] for path in self._fs.ls(self._root, detail=False))
        return sorted(
            int(name[: -len(".json")])
            for name in names
            if name.endswith(".json") and name[: -len(".json")].isdigit()
        )

    def before(self, batch_id: int) -> datetime | None:
        """The mark as it stood when batch ``batch_id`` started (None before the first batch)."""
        earlier = [b for b in self._batch_ids() if b < batch_id]
        if not earlier:
            return None
        with self._fs.open(f"{self._root}/{earlier[-1]}.json", "r") as handle:
            return from_epoch_micros(int(json.load(handle)["high_water_mark_us"]))

    def record(self, batch_id: int, high_water_mark: datetime) -> None:
        """Write the mark after batch ``batch_id``; keep only the last ``KEEP_BATCHES`` entries."""
        path = f"{self._root}/{batch_id}.json"
        tmp = f"{self._root}/.{batch_id}.json.tmp"
        with self._fs.open(tmp, "w") as handle:
            json.dump(
                {
                    "high_water_mark_us": to_epoch_micros(high_water_mark),
                    "high_water_mark": high_water_mark.isoformat(),
                },
                handle,
            )
        self._fs.mv(tmp, path)
        for old in self._batch_ids():
            if old <= batch_id - KEEP_BATCHES:
                self._fs.rm(f"{self._root}/{old}.json")
