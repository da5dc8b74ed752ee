"""Small file utilities, each written once: atomic writes (files and .mlpackage directories), content
hashes, and the cache root that downloads and tuning databases live under."""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".tmp-"  # hidden temp names look like ".model.tmp-<pid>-<hex>.onnx"


def temp_sibling(path: Path, tag: str = "tmp") -> Path:
    """A hidden, unique path in the target's directory, keeping its suffix (coremltools checks it)."""
    mark = TEMP_MARK if tag == "tmp" else f".{tag}-"
    return path.parent / f".{path.stem}{mark}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}"


def remove_path(path: Path) -> None:
    """Delete a file, link or directory tree if present; never raise on a missing path."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            pass


def replace_path(src: Path, dst: Path) -> None:
    """Move `src` onto `dst`, replacing a file or a whole directory, leaving `dst` whole at every moment.

    os.replace is atomic for files but refuses a non-empty directory target, so an existing target is
    first renamed aside (same filesystem, so a rename) and only deleted once `src` is in place.
    """
    if not os.path.lexists(dst):
        os.replace(src, dst)
        return
    aside = temp_sibling(dst, tag="old")
    os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        os.replace(aside, dst)  # put the previous output back rather than leave nothing
        raise
    remove_path(aside)


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside `path` to write into; on success rename it to `path`, on any error
    (KeyboardInterrupt included) delete it, so readers only ever see a complete output or none."""
    target = Path(path)
    tmp = temp_sibling(target)
    try:
        yield tmp
        if not os.path.lexists(tmp):
            raise FileNotFoundError(f"the writer produced nothing at {tmp}")
        replace_path(tmp, target)
    except BaseException:
        remove_path(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write `text` through a temp file and a rename; the parent directory is created if missing."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        tmp.write_text(text)
    return target


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's content, read in 1 MiB chunks (checkpoints can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def cache_root() -> Path:
    """Where repnext keeps downloads, builds and tuning databases: $REPNEXT_CACHE, else
    $XDG_CACHE_HOME/repnext, else ~/.cache/repnext."""
    explicit = os.environ.get("REPNEXT_CACHE")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "repnext"
