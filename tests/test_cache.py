"""Units are all-or-nothing: a failure mid-build leaves no unit behind."""
import pytest

from unlearnbench.cache import UnitStore, stable_hash


def test_failed_build_leaves_nothing(tmp_path):
    store = UnitStore(tmp_path)
    with pytest.raises(RuntimeError):
        with store.build("row", "k") as tmp:
            (tmp / "half.json").write_text("{")
            raise RuntimeError("crash")
    assert not store.done("row", "k")
    assert list((tmp_path / "row").iterdir()) == []


def test_finished_build_is_done_and_fresh_rebuilds(tmp_path):
    store = UnitStore(tmp_path)
    with store.build("row", "k") as tmp:
        (tmp / "x").write_text("1")
    assert store.done("row", "k") and (store.path("row", "k") / "x").read_text() == "1"
    fresh = UnitStore(tmp_path, fresh=True)
    assert not fresh.done("row", "k")
    with fresh.build("row", "k") as tmp:
        (tmp / "x").write_text("2")
    assert fresh.done("row", "k") and (fresh.path("row", "k") / "x").read_text() == "2"


def test_keys_depend_on_every_part():
    assert stable_hash({"a": 1}, [1, 2]) == stable_hash({"a": 1}, [1, 2])
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})


def test_scratch_of_dead_runs_is_swept_and_live_scratch_kept(tmp_path):
    import os
    dead = tmp_path / "row" / ".k.999999999.abc.tmp"       # no such pid
    live = tmp_path / "row" / f".k.{os.getpid()}.abc.tmp"
    dead.mkdir(parents=True)
    live.mkdir()
    UnitStore(tmp_path)
    assert not dead.exists() and live.exists()
