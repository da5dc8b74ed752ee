"""Persistent MetaSchedule JSON databases, one directory per (variant, input shape, target)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from repnext_core.compile.tvm.targets import TargetSpec, canonical_json
from repnext_core.files import cache_root, write_text_atomic

logger = logging.getLogger(__name__)

META_FILE = "db_meta.json"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
FORMAT = "repnext-tvm-tuning-db/1"
# Databases shipped with the package (pyproject package-data), searched after the user's own.
PACKAGED_ROOT = Path(__file__).parent / "databases"


class DatabaseMismatch(ValueError):
    """A database made for another target, shape or model; tuning or building with it would be wrong."""


@dataclass(frozen=True)
class DbKey:
    """What a database is valid for."""

    variant: str
    input_shape: tuple[int, ...]
    dtype: str
    target: TargetSpec

    def dirname(self) -> str:
        """<variant>_<H>x<W>[_b<N>]_<target key>, e.g. repnext_m1_224x224_cortex-a72-1a2b3c4d5e."""
        n, _, h, w = self.input_shape
        batch = f"_b{n}" if n != 1 else ""
        dtype = "" if self.dtype == "float32" else f"_{self.dtype}"
        return f"{self.variant}_{h}x{w}{batch}{dtype}_{self.target.key}"

    def as_json(self) -> dict:
        """The identity part of db_meta.json."""
        return {
            "variant": self.variant,
            "input_shape": list(self.input_shape),
            "dtype": self.dtype,
            "target": self.target.to_json(),
        }


def db_dir(root: str | os.PathLike, key: DbKey) -> Path:
    """The database directory for `key` under the database root."""
    return Path(root) / key.dirname()


def open_for(path: str | os.PathLike, key: DbKey, create: bool, check_variant: bool = True):
    """Check (or, with create, initialise) the database at `path` for `key`, repair it, and open it.

    Raises DatabaseMismatch for a database made for another target/shape/model, and FileNotFoundError when
    `path` holds no database and create is False. Builds skip the variant check: records are keyed by
    kernel structure, so another model's records simply do not match.
    """
    from tvm.s_tir import meta_schedule as ms

    path = Path(path)
    meta_path = path / META_FILE
    if meta_path.is_file():
        check_meta(path, key, check_variant)
    elif create:
        path.mkdir(parents=True, exist_ok=True)
        if (path / RECORD_FILE).exists():
            raise DatabaseMismatch(
                f"{path} holds tuning records but no {META_FILE}: not made by repnext; refusing"
            )
        write_text_atomic(
            meta_path, json.dumps({"format": FORMAT, **key.as_json(), "created": _now()}, indent=2)
        )
    else:
        raise FileNotFoundError(f"no tuning database at {path} (missing {META_FILE})")
    repair(path)
    return ms.database.JSONDatabase(
        path_workload=str(path / WORKLOAD_FILE),
        path_tuning_record=str(path / RECORD_FILE),
        allow_missing=True,
        module_equality="structural",
    )


def check_meta(path: str | os.PathLike, key: DbKey, check_variant: bool = True) -> None:
    """Raise DatabaseMismatch when the database at `path` was made for something other than `key`."""
    meta = json.loads((Path(path) / META_FILE).read_text())
    want = key.as_json()
    problems = []
    have_target = canonical_json(meta.get("target", {}).get("target"))
    if have_target != canonical_json(want["target"]["target"]):
        problems.append(f"target {have_target} (want {canonical_json(want['target']['target'])})")
    fields = ("input_shape", "dtype", "variant") if check_variant else ("input_shape", "dtype")
    for field in fields:
        if meta.get(field) != want[field]:
            problems.append(f"{field} {meta.get(field)} (want {want[field]})")
    if problems:
        raise DatabaseMismatch(f"tuning database {path} was made for another setup: " + "; ".join(problems))


def repair(path: str | os.PathLike) -> int:
    """Drop lines that do not parse (a process killed mid-write); returns how many were dropped.

    Records refer to workloads by line number, so only a damaged last workload line can go.
    """
    path = Path(path)
    workloads = _valid_lines(path / WORKLOAD_FILE, lambda v: isinstance(v, list) and len(v) == 2)
    n_workloads = len(workloads[0])
    if workloads[1] > 1 or (workloads[1] and not _last_line_bad(path / WORKLOAD_FILE)):
        raise DatabaseMismatch(
            f"{path / WORKLOAD_FILE} is damaged in the middle; delete the database to retune"
        )
    records = _valid_lines(
        path / RECORD_FILE,
        lambda v: isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and 0 <= v[0] < n_workloads,
    )
    dropped = 0
    for file, (good, bad) in ((WORKLOAD_FILE, workloads), (RECORD_FILE, records)):
        if bad:
            logger.warning("tuning database %s: dropping %d damaged line(s) of %s", path, bad, file)
            write_text_atomic(path / file, "".join(line + "\n" for line in good))
            dropped += bad
    return dropped


def _last_line_bad(file: Path) -> bool:
    lines = [line for line in file.read_text().splitlines() if line.strip()]
    try:
        json.loads(lines[-1])
    except json.JSONDecodeError:
        return True
    return False


def _valid_lines(file: Path, ok) -> tuple[list[str], int]:
    if not file.is_file():
        return [], 0
    good, bad = [], 0
    for line in file.read_text().splitlines():
        if not line.strip():
            continue
        try:
            valid = ok(json.loads(line))
        except json.JSONDecodeError:
            valid = False
        if valid:
            good.append(line)
        else:
            bad += 1
    return good, bad


def count_records(path: str | os.PathLike) -> int:
    """Tuning records (measured trials, failed ones included) stored in the database at `path`."""
    file = Path(path) / RECORD_FILE
    if not file.is_file():
        return 0
    return sum(1 for line in file.read_text().splitlines() if line.strip())


def summary(path: str | os.PathLike) -> dict:
    """Where the database is and how much it holds, for meta.json and messages."""
    path = Path(path)
    workloads = path / WORKLOAD_FILE
    n_workloads = (
        sum(1 for line in workloads.read_text().splitlines() if line.strip()) if workloads.is_file() else 0
    )
    return {"path": str(path.resolve()), "records": count_records(path), "workloads": n_workloads}


def key_for(variant: str, input_shape: Sequence[int], dtype: str, target: TargetSpec) -> DbKey:
    """DbKey with the shape normalised to a tuple of ints."""
    return DbKey(variant, tuple(int(d) for d in input_shape), dtype, target)


def default_roots() -> list[Path]:
    """Where `repnext tune` writes ($REPNEXT_TVM_DB, else CACHE_ROOT/tvm-db), then the packaged ones."""
    user = os.environ.get("REPNEXT_TVM_DB")
    return [Path(user) if user else cache_root() / "tvm-db", PACKAGED_ROOT]


def find_db(key: DbKey, roots: Sequence[str | os.PathLike] | None = None) -> Path | None:
    """The first database directory for `key` under `roots` (default: default_roots())."""
    for root in roots if roots is not None else default_roots():
        path = db_dir(root, key)
        if (path / META_FILE).is_file():
            return path
    return None


def find_for(
    variant: str, input_shape: Sequence[int], target: str | TargetSpec = "host", roots=None
) -> Path | None:
    """The fp32 database for `variant` at `input_shape` on `target`: the user's, else the shipped one."""
    from repnext_core.compile.tvm.targets import resolve_target

    return find_db(key_for(variant, input_shape, "float32", resolve_target(target)), roots)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
