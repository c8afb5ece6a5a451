"""Writing a user's files safely: each write goes to a temporary file beside the target and is then
renamed over it, so a write that fails part-way (a full disk, a killed process) leaves the old file
as it was; and the target's folder is checked before long work whose result goes there."""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Callable, Iterator


def check_writable(path, name: str = "path") -> str:
    """``path`` as a str; ValueError unless its folder exists and this process may write there.
    Call it before long work whose result goes to ``path``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a path (str or os.PathLike), got {type(path).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"{name}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{name}: the folder {folder} is not writable")
    if os.path.isdir(path):
        raise ValueError(f"{name} is a directory, expected a file: {path}")
    return path


@contextlib.contextmanager
def _replacing(path, name: str) -> Iterator[str]:
    """Yields a temporary path beside ``path`` that keeps its extension (libraries pick the format
    from it); renames it over ``path`` when the block succeeds, and removes it either way."""
    path = check_writable(path, name)
    folder, base = os.path.split(os.path.abspath(path))
    stem, extension = os.path.splitext(base)
    temporary = os.path.join(folder, f".{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp{extension}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def write_atomically(path, write: Callable[[str], None], name: str = "path") -> None:
    """Calls ``write(temporary path)`` and renames the result over ``path``; on any failure ``path``
    is untouched and the temporary file removed."""
    with _replacing(path, name) as temporary:
        write(temporary)


@contextlib.contextmanager
def open_atomically(path, mode: str = "w", name: str = "path", **kwargs) -> Iterator:
    """``with open_atomically(path) as f:``: f writes a temporary file that replaces ``path`` only
    when the block ends without an exception. Modes "w" (UTF-8 unless told) and "wb"."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with _replacing(path, name) as temporary:
        with open(temporary, mode, **kwargs) as f:
            yield f
