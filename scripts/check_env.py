"""Fails (exit 1) when the installed packages differ from a lock: what scripts/setup.sh ran last.

    python scripts/check_env.py [requirements/cpu.txt]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from unlearnbench.environment import LOCKS, drift, pins, sha256


def main(argv: list[str]) -> int:
    lock = Path(argv[0]) if argv else LOCKS / "cpu.txt"
    bad = drift(lock)
    if bad:
        print(f"installed packages differ from {lock}: " + "; ".join(bad), file=sys.stderr)
        print("fix: rerun scripts/setup.sh (it rebuilds .venv from the lock), or regenerate the lock with "
              "scripts/lock.sh if the change is meant", file=sys.stderr)
        return 1
    print(f"environment equals {lock} ({len(pins(lock))} packages, sha256 {sha256(lock)[:12]})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
