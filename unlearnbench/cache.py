"""On-disk units (a trained model, a row's evaluation), each under a key derived from everything that determines it.

A unit is built in a temporary folder and renamed into place with a DONE marker as its last file, so a crash
(even kill -9) never leaves a half-written unit that a later run trusts.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from unlearnbench import CACHE_VERSION, __version__, numerics


def stable_hash(*parts) -> str:
    # the numerics mode picks other CPU kernels, hence other weights: its units never mix with the other mode's
    blob = json.dumps([__version__, CACHE_VERSION, numerics.mode(), *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def row_digests(rows: list[dict]) -> list[str]:
    """Sorted digests of the rows a training unit saw (written beside it), so a test can show which rows never
    reached it (the tuning protocol's test split)."""
    return sorted({hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:16] for r in rows})


def kept(rows: list[dict], removed: list[dict]) -> list[int]:
    """Indices of the rows that are not among `removed` (rows compared by content), in order."""
    gone = {json.dumps(r, sort_keys=True) for r in removed}
    return [i for i, r in enumerate(rows) if json.dumps(r, sort_keys=True) not in gone]


def folder_digest(folder: Path) -> str:
    """A digest of every file's name and bytes under `folder` (a checkpoint the user gives): a folder edited in
    place gets another key, so its cached evaluations are not reused."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0")
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def atomic_write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, ensure_ascii=False, allow_nan=True))


def read_json(path: Path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


class UnitStore:
    def __init__(self, root: Path, fresh: bool = False):
        self.root = Path(root)
        self.fresh = fresh          # rebuild every unit this run touches, ignoring what is cached
        self.rebuilt: set[Path] = set()
        self.sweep()

    def sweep(self) -> None:
        """Remove scratch folders left by runs that died (kill -9, power loss); live runs' scratch is kept."""
        for tmp in self.root.glob("*/.*.tmp"):
            try:
                pid = int(tmp.name.split(".")[2])
                os.kill(pid, 0)
            except ProcessLookupError:
                shutil.rmtree(tmp, ignore_errors=True)
            except (ValueError, IndexError, PermissionError):
                continue

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    def done(self, kind: str, key: str) -> bool:
        path = self.path(kind, key)
        if self.fresh and path not in self.rebuilt:
            return False
        return (path / "DONE").is_file()

    @contextmanager
    def build(self, kind: str, key: str, publish: bool = True):
        """Yield a scratch folder; on success it becomes the unit `kind/key`, on failure it is removed.

        With publish=False (a non-main process of a distributed run) the folder is discarded instead."""
        final = self.path(kind, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{key}.{os.getpid()}.", suffix=".tmp"))
        try:
            yield tmp
            if not publish:
                return
            (tmp / "DONE").write_text("ok\n")
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            self.rebuilt.add(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
