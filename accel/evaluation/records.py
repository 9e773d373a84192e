"""Append-only sample records: resumable, never overwriting finished work.

Each process appends one JSON line per finished sample to ``records.rank<r>.jsonl`` and fsyncs it
right after the sample's PNG has been renamed into place, so a ``kill -9`` loses at most the sample
in flight. :func:`merge` folds the shards into ``records.jsonl`` (deduplicated by key) at the end of
a run; readers always look at ``records.jsonl`` and every shard.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

RECORDS = "records.jsonl"


def record_key(config: str, prompt_id: int, seed: int) -> str:
    return f"{config}|p{prompt_id:04d}|s{seed}"


def _read_lines(path: str) -> Iterator[dict[str, Any]]:
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a crash mid-write: that sample is simply redone


def read_records(run_dir: str) -> dict[str, dict[str, Any]]:
    """All finished records of a run folder, keyed by :func:`record_key` (first occurrence wins)."""
    out: dict[str, dict[str, Any]] = {}
    paths = [os.path.join(run_dir, RECORDS)] + sorted(glob.glob(os.path.join(run_dir, "records.rank*.jsonl")))
    for path in paths:
        if os.path.exists(path):
            for record in _read_lines(path):
                key = record.get("key")
                if key and key not in out and os.path.exists(os.path.join(run_dir, record["path"])):
                    out[key] = record
    return out


class RecordWriter:
    """Appends records for one process rank."""

    def __init__(self, run_dir: str, rank: int = 0) -> None:
        self.path = os.path.join(run_dir, f"records.rank{rank}.jsonl")
        self._file = open(self.path, "a")

    def write(self, record: dict[str, Any]) -> None:
        self._file.write(json.dumps(record, sort_keys=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def merge(run_dir: str) -> list[dict[str, Any]]:
    """Write every finished record once into ``records.jsonl`` (sorted by key) and drop the shards."""
    records = read_records(run_dir)
    ordered = [records[k] for k in sorted(records)]
    tmp = os.path.join(run_dir, RECORDS + ".tmp")
    with open(tmp, "w") as f:
        for record in ordered:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(run_dir, RECORDS))
    for shard in glob.glob(os.path.join(run_dir, "records.rank*.jsonl")):
        os.remove(shard)
    return ordered
