"""One writer per run folder, and writes that never leave a half file under a final name.

:func:`run_folder_lock` holds ``<run>/.accel-eval.lock`` (an OS file lock through ``filelock``, released
by the kernel when the holder dies, even on ``kill -9``) for one whole ``accel eval`` run: generation,
merge and scoring. Under ``accelerate launch`` only the main process takes it; the other ranks of the
same run write their own record shards under its cover. A second run on a held folder is refused with
a :class:`~accel.errors.StateError` naming the folder and its holder, or waits (``wait=True``).

Writes go through :func:`accel.files.atomic_write` (a sibling temporary with a unique name, fsynced
and renamed into place); :func:`remove_stale_temporaries` clears those a crashed writer left.
"""

from __future__ import annotations

import contextlib
import datetime
import glob
import json
import os
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from .. import errors
from ..errors import StateError
from ..files import atomic_write

LOCK_FILE = ".accel-eval.lock"
OWNER_FILE = ".accel-eval.owner.json"

T = TypeVar("T")

# (thread, real path) -> [lock, depth]: nested holds by one thread (evaluate -> run_generation) re-enter;
# another thread or process opens its own lock and is refused, as flock locks belong to an open file.
_held: dict[tuple[int, str], list[Any]] = {}
_held_guard = threading.Lock()


def _key(run_dir: str) -> tuple[int, str]:
    return threading.get_ident(), os.path.realpath(run_dir)


def holds_lock(run_dir: str) -> bool:
    """Whether this thread holds ``run_dir``'s lock."""
    with _held_guard:
        return _key(run_dir) in _held


def _owner(run_dir: str) -> str:
    try:
        with open(os.path.join(run_dir, OWNER_FILE)) as f:
            owner = json.load(f)
        return f" (pid {owner['pid']} on {owner['host']}, since {owner['started']}: {owner['command']})"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _acquire(run_dir: str, wait: bool | float) -> None:
    from filelock import FileLock, Timeout

    key = _key(run_dir)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            return
    os.makedirs(run_dir, exist_ok=True)
    lock = FileLock(os.path.join(run_dir, LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if wait is False:
            raise StateError(
                f"{run_dir} is in use by another accel eval{_owner(run_dir)}; two runs on one folder would lose "
                "records. Wait for it to finish, rerun with --wait (Python: evaluate(..., wait=True)) to queue behind "
                "it, or write elsewhere (another --out, or another sweep name)"
            ) from None
        print(f"accel eval: waiting for {run_dir}, in use by another accel eval{_owner(run_dir)}", file=sys.stderr)
        try:
            lock.acquire(timeout=-1 if wait is True else float(wait))
        except Timeout:
            raise StateError(
                f"{run_dir} is still in use by another accel eval after {float(wait):g} s{_owner(run_dir)}"
            ) from None
    with _held_guard:
        _held[key] = [lock, 1]
    owner = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([_program(), *sys.argv[1:]]),
    }
    with contextlib.suppress(OSError), atomic_write(os.path.join(run_dir, OWNER_FILE)) as f:
        json.dump(owner, f)  # informative only: a run without it still holds the lock


def _program() -> str:
    name = os.path.basename(sys.argv[0] or "python")
    return "accel" if name in ("accel", "cli.py") else name


def _release(run_dir: str) -> None:
    key = _key(run_dir)
    with _held_guard:
        entry = _held[key]
        entry[1] -= 1
        if entry[1]:
            return
        del _held[key]
    with contextlib.suppress(OSError):
        os.remove(os.path.join(run_dir, OWNER_FILE))
    entry[0].release()


@contextlib.contextmanager
def run_folder_lock(run_dir: str, state: Any = None, wait: bool | float = False) -> Iterator[str]:
    """Hold ``run_dir`` for one run (re-entrant in one thread); only the main process of ``state`` locks.

    ``wait``: False refuses at once with a :class:`StateError` when another run holds the folder, True
    waits for it, a number waits at most that many seconds. Every process of ``state`` raises when the
    main process could not take the lock.
    """
    main = state is None or state.is_main_process
    on_main_process(state, lambda: _acquire(run_dir, wait))
    try:
        yield run_dir
    finally:
        if main:
            _release(run_dir)


def on_main_process(state: Any, fn: Callable[[], T]) -> T | None:
    """``fn()`` on the main process only; when it raises, every process of ``state`` raises too.

    The other ranks get the same accel error type and message (or a :class:`StateError`) instead of
    waiting forever at the next barrier.
    """
    failure: BaseException | None = None
    result = None
    if state is None or state.is_main_process:
        try:
            result = fn()
        except Exception as exc:  # re-raised below, on every process
            failure = exc
    if state is not None and state.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        message = [None if failure is None else (type(failure).__name__, str(failure))]
        broadcast_object_list(message, from_process=0)
        if failure is None and message[0] is not None:
            name, text = message[0]
            cls = getattr(errors, name, None)
            if not (isinstance(cls, type) and issubclass(cls, errors.AccelError)):
                cls, text = StateError, f"the main process failed: {name}: {text}"
            raise cls(text)
    if failure is not None:
        raise failure
    return result


def remove_stale_temporaries(run_dir: str) -> int:
    """Delete temporaries left by crashed writers (call while holding the lock); returns how many."""
    removed = 0
    for pattern in (os.path.join(run_dir, ".*.tmp"), os.path.join(run_dir, "samples", "*", ".*.tmp")):
        for path in glob.glob(pattern):
            if os.path.isfile(path):
                with contextlib.suppress(OSError):
                    os.remove(path)
                    removed += 1
    return removed
