"""Files a user hands in are data: read with bounds, kept inside their folder, written atomically.

Plans, coefficients, schedules, sweep specs and prompt lists may come from anywhere (a colleague, a
model card, a web form). Everything accel reads on their behalf goes through here:

* :func:`read_text` takes regular files only (no folder, device or pipe), up to a size limit, and
  UTF-8 only; :func:`read_json` / :func:`read_yaml` / :func:`read_data` then parse with limits on
  nesting depth and, for YAML, on what aliases expand to (an anchor bomb is refused at once);
* :func:`resolve_inside` resolves a file a plan names inside the plan's folder: no absolute path, no
  ``..``, no symlink out of the folder, and a missing file is an error, never a lookup elsewhere;
* :func:`atomic_write` writes every output through a temporary file and a rename, so a full disk or a
  kill leaves the old file or none, never a truncated one under the final name;
* :func:`brief` is a bounded ``repr`` for error messages.

Every failure is an :class:`AccelError` of one line that names the file and the limit.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import reprlib
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

from .errors import ConfigError, NotFoundError, OutOfSpaceError

#: Largest JSON / YAML file read (plans, coefficients, schedules, specs).
MAX_DATA_BYTES = 32 * 2**20
#: Largest prompt file, and most prompts in it.
MAX_PROMPT_BYTES = 16 * 2**20
MAX_PROMPT_LINES = 100_000
#: Deepest nesting of lists and mappings in a data file.
MAX_DEPTH = 64
#: Most values a YAML document may expand to once its aliases are followed.
MAX_YAML_NODES = 200_000

_BRIEF = reprlib.Repr()
_BRIEF.maxstring = _BRIEF.maxother = 80
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 6
_BRIEF.maxlevel = 3


def brief(value: Any) -> str:
    """A ``repr`` of at most a few hundred characters, whatever ``value`` holds."""
    return _BRIEF.repr(value)


# ---------------------------------------------------------------------------------------- reading
def read_text(path: str, what: str, max_bytes: int = MAX_DATA_BYTES) -> str:
    """The UTF-8 text of the regular file ``path``; ``what`` names it in errors (``"sweep spec"``)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise NotFoundError(f"{what}: no such file {path!r}") from None
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path!r}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{what}: {path!r} is a folder; name a file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{what}: {path!r} is not a regular file (a device, pipe or socket); name a file")
    if info.st_size > max_bytes:
        raise ConfigError(f"{what}: {path!r} holds {info.st_size:,} bytes; the limit is {max_bytes:,}")
    try:
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path!r}: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{what}: {path!r} holds more than {max_bytes:,} bytes; the limit is {max_bytes:,}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what}: {path!r} is not UTF-8 text (byte {exc.start} is 0x{raw[exc.start]:02x})") from None


def read_lines(
    path: str, what: str, max_bytes: int = MAX_PROMPT_BYTES, max_lines: int = MAX_PROMPT_LINES
) -> list[str]:
    """The lines of a text file (prompt lists), within a size and line-count limit."""
    lines = read_text(path, what, max_bytes).splitlines()
    if len(lines) > max_lines:
        raise ConfigError(f"{what}: {path!r} holds {len(lines):,} lines; the limit is {max_lines:,}")
    return lines


def parse_json(text: str, what: str) -> Any:
    """JSON with unique keys and nesting at most :data:`MAX_DEPTH` deep."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} nests lists or mappings deeper than {MAX_DEPTH} levels") from None
    check_depth(data, what)
    return data


def parse_yaml(text: str, what: str) -> Any:
    """YAML (safe types only, unique keys) whose aliases expand to at most :data:`MAX_YAML_NODES` values
    and whose nesting is at most :data:`MAX_DEPTH` deep; checked on the node graph before any object
    is built, so an anchor bomb is refused at once."""
    import yaml

    loader = _bounded_loader()(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_node_graph(node, what)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{what} is not valid YAML: {_one_line(exc)}") from None
    except ConfigError as exc:
        raise ConfigError(f"{what}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{what} nests lists or mappings deeper than {MAX_DEPTH} levels") from None
    finally:
        loader.dispose()


def read_json(path: str, what: str, max_bytes: int = MAX_DATA_BYTES) -> Any:
    return parse_json(read_text(path, what, max_bytes), f"{what} {path!r}")


def read_yaml(path: str, what: str, max_bytes: int = MAX_DATA_BYTES) -> Any:
    return parse_yaml(read_text(path, what, max_bytes), f"{what} {path!r}")


def read_data(path: str, what: str, max_bytes: int = MAX_DATA_BYTES) -> Any:
    """A ``.yaml`` / ``.yml`` file as YAML, anything else as JSON."""
    reader = read_yaml if path.endswith((".yaml", ".yml")) else read_json
    return reader(path, what, max_bytes)


def check_depth(data: Any, what: str, limit: int = MAX_DEPTH) -> None:
    """Refuse lists and mappings nested more than ``limit`` deep (checked without recursion)."""
    stack = [(data, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, tuple, dict)):
            if depth >= limit:
                raise ConfigError(f"{what} nests lists or mappings deeper than {limit} levels")
            items = value.values() if isinstance(value, dict) else value
            stack.extend((item, depth + 1) for item in items)


def _unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ConfigError(f"duplicate key {brief(key)}; each key may appear once per mapping")
        out[key] = value
    return out


def _one_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _check_node_graph(root: Any, what: str) -> None:
    """Count the values a YAML node graph expands to (aliases followed), without expanding it."""
    import yaml

    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node, yaml)
        if done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            depths[key] = 1 + max((depths[id(c)] for c in children), default=0)
            if sizes[key] > MAX_YAML_NODES:
                raise ConfigError(
                    f"{what} expands to more than {MAX_YAML_NODES:,} values once its aliases are followed "
                    "(an alias bomb?); write the values out"
                )
            if depths[key] > MAX_DEPTH:
                raise ConfigError(f"{what} nests lists or mappings deeper than {MAX_DEPTH} levels")
            continue
        if key in sizes:
            continue
        if key in on_path:
            raise ConfigError(f"{what} holds an alias to one of its own enclosing values (a recursive structure)")
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in sizes)


def _children(node: Any, yaml: Any) -> list[Any]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


_LOADER: type | None = None


def _bounded_loader() -> type:
    """yaml's SafeLoader, except that a key repeated in one mapping is an error (not "the last one wins")."""
    global _LOADER
    if _LOADER is not None:
        return _LOADER
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        # the scanner's cost grows with the square of the nesting: refuse deep nesting as it is read
        def fetch_flow_collection_start(self, token_class: Any) -> None:
            if self.flow_level >= MAX_DEPTH:
                raise ConfigError(f"the YAML nests lists or mappings deeper than {MAX_DEPTH} levels")
            super().fetch_flow_collection_start(token_class)

        def add_indent(self, column: int) -> bool:
            if len(self.indents) >= MAX_DEPTH:
                raise ConfigError(f"the YAML nests lists or mappings deeper than {MAX_DEPTH} levels")
            return super().add_indent(column)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict[Any, Any]:
            seen: set[Any] = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise ConfigError(
                            f"duplicate key {brief(key)} at line {key_node.start_mark.line + 1}; each key may appear "
                            "once per mapping"
                        )
                    seen.add(key)
            return super().construct_mapping(node, deep=deep)

    _LOADER = UniqueKeyLoader
    return _LOADER


# ---------------------------------------------------------------------------------------- plan folders
def resolve_inside(folder: str, name: Any, what: str) -> str:
    """The absolute path of the file ``name`` inside ``folder``.

    ``name`` must be a relative path that stays inside ``folder`` (no absolute path, no ``..``), whose
    real location, symlinks followed, is inside ``folder`` too, and which exists as a regular file.
    """
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{what} must be a file name inside {folder!r}, got {brief(name)}")
    if os.path.isabs(name) or name.startswith("~"):
        raise ConfigError(
            f"{what} names the absolute path {brief(name)}; a plan reads only files inside its own folder "
            f"{folder!r} (Plan.export copies them there)"
        )
    parts = name.replace("\\", "/").split("/")
    if ".." in parts:
        raise ConfigError(f"{what} names {brief(name)}, which leaves the plan's folder {folder!r}")
    root = os.path.realpath(folder)
    real = os.path.realpath(os.path.join(root, name))
    if os.path.commonpath([root, real]) != root:
        raise ConfigError(
            f"{what} names {brief(name)}, a link to {real!r} outside the plan's folder {folder!r}; copy the file "
            "into the folder"
        )
    if not os.path.isfile(real):
        raise NotFoundError(f"{what}: the plan's folder {folder!r} holds no file {brief(name)}")
    return real


# ---------------------------------------------------------------------------------------- writing
@contextlib.contextmanager
def atomic_write(path: str, mode: str = "w", **open_kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path`` and rename it onto ``path`` when the block succeeds; on any
    failure the temporary file is removed and ``path`` is untouched. A full disk raises
    :class:`OutOfSpaceError` naming the path."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise_os_error(exc, path)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        _discard(tmp)
        raise_os_error(exc, path)
    except BaseException:
        _discard(tmp)
        raise


def write_json(path: str, data: Any, **dump_kwargs: Any) -> str:
    with atomic_write(path) as f:
        json.dump(data, f, **dump_kwargs)
    return path


def raise_os_error(exc: OSError, path: str) -> None:
    """Re-raise a write failure as one line: a full disk names the path and the free space."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        free = _free_bytes(os.path.dirname(os.path.abspath(path)))
        raise OutOfSpaceError(
            f"no space left on the device writing {path!r} ({free:,} bytes free); free some space or choose "
            "another output folder"
        ) from None
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        raise ConfigError(f"cannot write {path!r}: {exc.strerror} (a read-only folder?)") from None
    raise exc


def _free_bytes(folder: str) -> int:
    try:
        return int(os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize)
    except OSError:
        return 0


def _discard(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)
