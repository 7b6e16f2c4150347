"""Loading TOFU-schema data from a local folder (the same code path as real locuslab/TOFU files)."""
import json

import pytest

from benchmarks.synthetic_tofu import SyntheticTofuConfig, generate
from benchmarks.tofu import load_tofu
from unlearnbench.config import TaskConfig


def write_folder(tmp_path, splits, as_array=()):
    for name, rows in splits.items():
        path = tmp_path / f"{name}.json"
        if name in as_array:
            path.write_text(json.dumps(rows))
        else:
            path.write_text("\n".join(json.dumps(r) for r in rows))
    return tmp_path


def test_local_folder_matches_synthetic(tmp_path):
    synth = SyntheticTofuConfig(n_authors=10, qa_per_author=4, forget_percentages=[10])
    write_folder(tmp_path, generate(synth), as_array=("full",))
    local = load_tofu(TaskConfig(source="local", path=str(tmp_path)))
    same = load_tofu(TaskConfig(source="synthetic", synthetic=synth))
    assert local.splits == same.splits
    assert local.fingerprint == same.fingerprint
    assert local.names["retain"] == "retain90" and local.names["holdout"] == "holdout10"


def test_missing_field_and_missing_split_are_named(tmp_path):
    splits = generate(SyntheticTofuConfig(n_authors=10, qa_per_author=4, forget_percentages=[10]))
    del splits["forget10_perturbed"][2]["paraphrased_answer"]
    write_folder(tmp_path, splits)
    with pytest.raises(ValueError, match=r"'forget10_perturbed' row 2 lacks field 'paraphrased_answer'"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))
    (tmp_path / "forget10_perturbed.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no file for TOFU split 'forget10_perturbed'"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))


def test_empty_forget_set_is_an_error(tmp_path):
    splits = generate(SyntheticTofuConfig(n_authors=10, qa_per_author=4, forget_percentages=[10]))
    splits["forget10"] = []
    write_folder(tmp_path, splits)
    with pytest.raises(ValueError, match=r"split 'forget10' is empty"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))


def test_bad_forget_split_and_source():
    with pytest.raises(ValueError, match="forget_split"):
        load_tofu(TaskConfig(forget_split="forget_all"))
    with pytest.raises(ValueError, match="task.source"):
        load_tofu(TaskConfig(source="ftp"))
    with pytest.raises(ValueError, match="no split 'forget05'"):
        load_tofu(TaskConfig(forget_split="forget05",
                             synthetic=SyntheticTofuConfig(n_authors=10, forget_percentages=[10])))
