"""Append-only sample records: resumable, never overwriting finished work.

Each process appends one JSON line per finished sample to ``records.rank<r>.jsonl`` and fsyncs it
right after the sample's PNG has been renamed into place, so a ``kill -9`` loses at most the sample
in flight. A line torn by such a kill is cut off when the shard is opened again, so the next record
starts on a line of its own. :func:`merge` folds the shards into ``records.jsonl`` (deduplicated by
key) at the end of a run, only while this process holds the run folder's lock; readers always look
at ``records.jsonl`` and every shard.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from typing import Any

from ..errors import StateError
from ..files import atomic_write
from .runfolder import holds_lock

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


def _end_on_a_whole_line(path: str) -> None:
    """Make ``path`` end with a newline: a last line torn by a crash is cut off (a complete record that
    only lacks its newline gets one), so an appended record never joins it."""
    try:
        f = open(path, "r+b")
    except FileNotFoundError:
        return
    with f:
        size = f.seek(0, os.SEEK_END)
        end = size
        while end > 0:  # find the last newline, reading backwards
            start = max(0, end - 65536)
            f.seek(start)
            found = f.read(end - start).rfind(b"\n")
            if found >= 0:
                end = start + found + 1
                break
            end = start
        if end == size:
            return
        f.seek(end)
        tail = f.read()
        try:
            whole = isinstance(json.loads(tail), dict)
        except ValueError:
            whole = False
        if whole:
            f.write(b"\n")
        else:
            f.truncate(end)
        f.flush()
        os.fsync(f.fileno())


class RecordWriter:
    """Appends records for one process rank: each one whole line, written at once and fsynced."""

    def __init__(self, run_dir: str, rank: int = 0) -> None:
        self.path = os.path.join(run_dir, f"records.rank{rank}.jsonl")
        _end_on_a_whole_line(self.path)
        self._file = open(self.path, "ab", buffering=0)

    def write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, sort_keys=True) + "\n").encode()
        while data:
            data = data[self._file.write(data) :]
        os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()


def merge(run_dir: str) -> list[dict[str, Any]]:
    """Write every finished record once into ``records.jsonl`` (sorted by key) and drop the shards.

    Only while this process holds the run folder's lock (:func:`~.runfolder.run_folder_lock`), after
    every rank of the run closed its writer: no other process can be appending to a shard then.
    """
    if not holds_lock(run_dir):
        raise StateError(
            f"merging {run_dir} deletes its record shards, which another process may still be writing; "
            "hold the run folder's lock first (accel.evaluation.runfolder.run_folder_lock)"
        )
    shards = sorted(glob.glob(os.path.join(run_dir, "records.rank*.jsonl")))
    records = read_records(run_dir)
    ordered = [records[k] for k in sorted(records)]
    with atomic_write(os.path.join(run_dir, RECORDS)) as f:
        for record in ordered:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    for shard in shards:
        os.remove(shard)
    return ordered
