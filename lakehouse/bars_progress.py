"""The bars job's progress (high-water mark and open bars), kept per micro-batch next to its checkpoint.

Why a log per batch and not one value: Spark replays the last micro-batch after a crash, and a
replay must decide "late or not", and combine its trades into the open bars, exactly as the first
attempt did. So batch N reads the progress written by the newest batch *before* N, and writes its
own under N when it is done; a replay of N finds the same predecessor and reaches the same values
(the table writes are MERGEs of whole bars, so writing them twice changes nothing).
The log lives inside the checkpoint directory, so deleting the checkpoint to rebuild the bars also
resets the watermark. Paths may be local or any fsspec URL (``gs://`` on GCP).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime

import fsspec

from lakehouse.open_bars import BarKey, OpenBar
from lakehouse.times import from_epoch_micros, to_epoch_micros

KEEP_BATCHES = 100


@dataclass(frozen=True)
class BarsProgress:
    """Where the bars job stood after a micro-batch."""

    high_water_mark: datetime | None = None
    open_bars: dict[BarKey, OpenBar] = field(default_factory=dict)
    # Windows starting here or later have had every trade pass through the job (``split_by_knowledge``);
    # None until the job has set it (its first batch, or the first after an upgrade).
    tracked_from_us: int | None = None
    # The watermark the job closed bars at (``bars.advance_watermark``): never moves back, whatever
    # the allowed lateness of a later run. None in an entry written before it was kept.
    watermark: datetime | None = None


class BarsProgressLog:
    """``<directory>/<batch_id>.json`` holding the high-water mark (epoch microseconds), the open
    bars, where full tracking began and the watermark bars were closed at. An entry written before
    open bars were kept has none: the job then rebuilds each window it meets from the trades table
    until its tracking begins."""

    def __init__(self, directory: str) -> None:
        self._fs, self._root = fsspec.core.url_to_fs(directory)
        # What this process recorded last: with one writer per checkpoint it is the newest entry,
        # so the next batch needs no listing and read of the directory (a remote one on GCP).
        self._last: tuple[int, BarsProgress] | None = None
        self._fs.makedirs(self._root, exist_ok=True)

    def run_id(self) -> str:
        """An id made when this log was created: it names the checkpoint in the bars table's commits
        (``lakehouse.bars_commit``), and a checkpoint deleted and made anew at the same path gets a
        new one, so its batch ids, counted from 0 again, are never mistaken for the old ones."""
        path = f"{self._root}/run_id"
        if not self._fs.exists(path):
            tmp = f"{self._root}/.run_id.tmp"
            with self._fs.open(tmp, "w") as handle:
                handle.write(uuid.uuid4().hex)
            self._fs.mv(tmp, path)
        with self._fs.open(path, "r") as handle:
            return handle.read().strip()

    def _batch_ids(self) -> list[int]:
        names = (path.rstrip("/").rsplit("/", 1)[-1] for path in self._fs.ls(self._root, detail=False))
        return sorted(
            int(name[: -len(".json")])
            for name in names
            if name.endswith(".json") and name[: -len(".json")].isdigit()
        )

    def before(self, batch_id: int) -> BarsProgress:
        """The progress as it stood when batch ``batch_id`` started (empty before the first batch)."""
        if self._last is not None and self._last[0] < batch_id:
            return self._last[1]
        earlier = [b for b in self._batch_ids() if b < batch_id]
        if not earlier:
            return BarsProgress()
        with self._fs.open(f"{self._root}/{earlier[-1]}.json", "r") as handle:
            entry = json.load(handle)
        mark_us = entry.get("high_water_mark_us")
        tracked_from_us = entry.get("tracked_from_us")
        watermark_us = entry.get("watermark_us")
        bars = (OpenBar.from_json(fields) for fields in entry.get("open_bars", []))
        return BarsProgress(
            None if mark_us is None else from_epoch_micros(int(mark_us)),
            {bar.key: bar for bar in bars},
            None if tracked_from_us is None else int(tracked_from_us),
            None if watermark_us is None else from_epoch_micros(int(watermark_us)),
        )

    def record(self, batch_id: int, progress: BarsProgress) -> None:
        """Write the progress after batch ``batch_id``; keep only the last ``KEEP_BATCHES`` entries."""
        path = f"{self._root}/{batch_id}.json"
        tmp = f"{self._root}/.{batch_id}.json.tmp"
        mark = progress.high_water_mark
        with self._fs.open(tmp, "w") as handle:
            json.dump(
                {
                    "high_water_mark_us": None if mark is None else to_epoch_micros(mark),
                    "high_water_mark": None if mark is None else mark.isoformat(),
                    "open_bars": [bar.to_json() for bar in progress.open_bars.values()],
                    "tracked_from_us": progress.tracked_from_us,
                    "watermark_us": None if progress.watermark is None else to_epoch_micros(progress.watermark),
                },
                handle,
            )
        self._fs.mv(tmp, path)
        self._last = (batch_id, progress)
        for old in self._batch_ids():
            if old <= batch_id - KEEP_BATCHES:
                self._fs.rm(f"{self._root}/{old}.json")
