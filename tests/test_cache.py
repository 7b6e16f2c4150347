"""Units are all-or-nothing: a failure mid-build leaves no unit behind; a unit is JSON only in its cache file."""
import json

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


def test_a_unit_is_json_only_in_its_cache_file():
    """A Unit writes the fields it has (the model reference never: the reader makes it again), reads back equal,
    and a file with a field this version does not write is a named error, not a unit read half right."""
    from orchestration.units import ModelRef, Unit
    ok = Unit("ok", {"forget": {"nll": [0.5]}}, {"wall_seconds": 1.0}, {"wall_seconds": 0.2}, train_log={"updates": 2},
              hparams={"lr": 1e-3}, rows_seen=["ab12"], model=ModelRef("/cache/weights/x", "k"))
    saved = json.loads(json.dumps(ok.to_json()))
    assert "model" not in saved and Unit.from_json(saved) == Unit(**{**vars(ok), "model": None})
    failed = Unit("failed", cost={"wall_seconds": 0.1}, error="the loss became nan")
    assert failed.to_json() == {"status": "failed", "cost": {"wall_seconds": 0.1}, "error": "the loss became nan"}
    with pytest.raises(ValueError, match=r"holds \['stats_v0'\].*--fresh"):
        Unit.from_json({**saved, "stats_v0": []})
    with pytest.raises(ValueError, match="a unit that is failed has no statistics"):
        failed.measured()
