"""Loading TOFU-schema data from a local folder (the same code path as real locuslab/TOFU files)."""
import json

import pytest
from tofu_release import NON_ASCII, RELEASE_FILES, write_release

from benchmarks.synthetic_tofu import SyntheticTofuConfig, generate
from benchmarks.tofu import TofuConfig as TaskConfig
from benchmarks.tofu import load_tofu


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
    with pytest.raises(ValueError, match=r"'forget10_perturbed' \(.*forget10_perturbed.json\) row 2 lacks field "
                                         r"'paraphrased_answer'"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))
    (tmp_path / "forget10_perturbed.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no file for TOFU split 'forget10_perturbed'"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))


def test_empty_forget_set_is_an_error(tmp_path):
    splits = generate(SyntheticTofuConfig(n_authors=10, qa_per_author=4, forget_percentages=[10]))
    splits["forget10"] = []
    write_folder(tmp_path, splits)
    with pytest.raises(ValueError, match=r"split 'forget10' \(.*\) is empty"):
        load_tofu(TaskConfig(source="local", path=str(tmp_path)))


def test_bad_forget_split_and_source():
    with pytest.raises(ValueError, match="forget_split"):
        load_tofu(TaskConfig(forget_split="forget_all"))
    with pytest.raises(ValueError, match="task.source"):
        load_tofu(TaskConfig(source="ftp"))
    with pytest.raises(ValueError, match="no split 'forget05'"):
        load_tofu(TaskConfig(forget_split="forget05",
                             synthetic=SyntheticTofuConfig(n_authors=10, forget_percentages=[10])))


def test_reads_the_real_release_layout_as_it_is(tmp_path):
    folder = write_release(tmp_path / "TOFU")
    assert sorted(p.stem for p in folder.iterdir()) == sorted(RELEASE_FILES)
    assert not (folder / "full.json").read_text(encoding="utf-8").startswith("[")   # JSON Lines under .json
    data = load_tofu(TaskConfig(source="local", path=str(folder)))
    assert "holdout" not in data.splits
    assert set(data.splits["real_authors"][0]) == {"question", "answer", "perturbed_answer"}
    text = json.dumps(data.splits, ensure_ascii=False)
    assert all(name in text for name in NON_ASCII)
    with pytest.raises(ValueError, match=r"membership attacks needs the TOFU split 'holdout10'.*no holdout"):
        data.require("holdout", "membership attacks")


@pytest.mark.parametrize("field, value, message", [
    ("perturbed_answer", "one string", r"'perturbed_answer' must be a list of non-empty strings"),
    ("answer", "", r"'answer' must be a non-empty string"),
    ("question", 7, r"'question' must be a non-empty string"),
])
def test_wrong_types_are_named_with_file_and_row(tmp_path, field, value, message):
    folder = write_release(tmp_path / "TOFU")
    path = folder / "forget10_perturbed.json"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    rows[3][field] = value
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(ValueError, match=r"forget10_perturbed.json\) row 3: " + message):
        load_tofu(TaskConfig(source="local", path=str(folder)))


def test_malformed_json_line_names_file_and_line(tmp_path):
    folder = write_release(tmp_path / "TOFU")
    path = folder / "retain90.json"
    lines = path.read_text(encoding="utf-8").splitlines()
    lines[4] = '{"question": "Who?", "answer": "unterminated'
    path.write_text("\n".join(lines), encoding="utf-8")
    with pytest.raises(ValueError, match=r"retain90.json: line 5: malformed JSON"):
        load_tofu(TaskConfig(source="local", path=str(folder)))
