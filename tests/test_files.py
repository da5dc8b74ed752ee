"""repnext_core.files: the one home of atomic text writes, content hashes and the cache root."""

from __future__ import annotations

import hashlib
from pathlib import Path

from repnext_core.files import cache_root, file_sha256, write_text_atomic


def test_cache_root_prefers_repnext_cache_then_xdg_then_home(monkeypatch, tmp_path):
    monkeypatch.setenv("REPNEXT_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_root() == tmp_path / "mine"
    monkeypatch.delenv("REPNEXT_CACHE")
    assert cache_root() == tmp_path / "xdg" / "repnext"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_root() == Path.home() / ".cache" / "repnext"


def test_text_written_whole_and_hashed_in_chunks(tmp_path):
    text = "x" * (3 << 20)  # more than one 1 MiB read
    path = write_text_atomic(tmp_path / "new" / "a.txt", text)
    assert path.read_text() == text
    assert [p.name for p in path.parent.iterdir()] == ["a.txt"]  # no temp file left beside it
    assert file_sha256(path) == hashlib.sha256(text.encode()).hexdigest()
