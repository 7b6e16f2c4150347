"""The environment a result came from: library versions and the committed lock (requirements/*.txt) they match.

`scripts/setup.sh` installs a lock exactly and `scripts/check_env.py` fails when what is installed differs from
it; every results.json records the lock's name, its SHA-256 and any difference, so two results files say at a
glance whether they came from the same environment.
"""
from __future__ import annotations

import hashlib
import platform
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

LOCKS = Path(__file__).resolve().parents[1] / "requirements"
LOCK_FILES = ("cpu.txt", "gpu.txt")
REPORTED = ("unlearnbench", "torch", "transformers", "accelerate", "peft", "datasets", "rouge-score", "scipy",
            "lm_eval")
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)==([^\s;\\#]+)")


def pins(lock: Path) -> dict[str, str]:
    """{package: version} of every `name==version` line of a pip-compile lock."""
    out = {}
    for line in Path(lock).read_text().splitlines():
        match = _PIN.match(line.strip())
        if match:
            out[match.group(1)] = match.group(2)
    if not out:
        raise ValueError(f"{lock} pins no package (expected pip-compile's 'name==version' lines)")
    return out


def installed(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def drift(lock: Path) -> list[str]:
    """Each locked package whose installed version differs from the lock, as 'name installed (lock version)'."""
    return [f"{name} {installed(name) or 'missing'} (lock {want})" for name, want in pins(lock).items()
            if installed(name) != want]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def describe() -> dict:
    """Library versions, and the lock this environment matches: the first of LOCK_FILES with no drift, else the
    CPU lock with its differences listed (`matches_lock` false)."""
    out = {"python": platform.python_version(), **{pkg: installed(pkg) for pkg in REPORTED}}
    locks = [LOCKS / name for name in LOCK_FILES if (LOCKS / name).is_file()]
    if not locks:
        return {**out, "lock": None, "matches_lock": False}
    diffs = {lock: drift(lock) for lock in locks}
    lock = next((lock for lock in locks if not diffs[lock]), locks[0])
    return {**out, "lock": f"requirements/{lock.name}", "lock_sha256": sha256(lock),
            "matches_lock": not diffs[lock], "lock_drift": diffs[lock]}
