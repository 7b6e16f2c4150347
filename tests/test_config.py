"""Config: strict merging, overrides, clear errors; every YAML under configs/ loads."""
import pytest

from methods import METHODS, method_config
from orchestration import pipeline  # noqa: F401  (registers the task families, as a run does)
from unlearnbench.config import (
    CONFIG_ROOT,
    ConfigError,
    ExperimentConfig,
    from_dict,
    load_config,
    read_tuned,
    read_yaml,
)
from unlearnbench.tasks import build_task


def tasks_of(cfg):
    return {label: build_task(label, section) for label, section in cfg.tasks.items()}


def test_default_experiment_and_overrides():
    cfg = load_config(["unlearn.lr=2e-5", "methods=GradAscent", "task.synthetic.n_authors=12", "lora=true",
                       "output_dir=/tmp/x"])
    assert cfg.name == "default"
    assert cfg.unlearn.lr == pytest.approx(2e-5)
    assert cfg.methods == ["GradAscent"]
    assert tasks_of(cfg)["tofu_embedded"].cfg.synthetic.n_authors == 12
    assert cfg.lora is True and cfg.output_dir == "/tmp/x"
    assert cfg.model.name == "embedded"          # from configs/model/embedded.yaml


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'unlearn\.lrr'.*valid keys here: epochs, lr"):
        load_config(["unlearn.lrr=1"])
    with pytest.raises(ConfigError, match="unknown config key 'bogus'"):
        load_config(["bogus=1"])


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"config key 'unlearn\.epochs': expected float, got 'many'"):
        load_config(["unlearn.epochs=many"])
    with pytest.raises(ConfigError, match=r"config key 'seed': expected int"):
        from_dict(ExperimentConfig, {"seed": 1.5})
    with pytest.raises(ConfigError, match=r"config key 'lora': expected bool"):
        load_config(["lora=maybe"])


def test_unknown_experiment_lists_the_choices():
    with pytest.raises(ConfigError, match=r"unknown experiment 'nope'; choose from \[.*'default'.*'smoke'"):
        load_config(["experiment=nope"])


def test_unknown_task_and_malformed_override():
    with pytest.raises(ConfigError, match=r"unknown task 'nope'; choose from \[.*'tofu'.*'wmdp'.*tofu_embedded"):
        tasks_of(load_config(["task=nope"]))
    with pytest.raises(ConfigError, match="not of the form key=value"):
        load_config(["unlearn.lr"])


def test_several_tasks_and_per_task_keys():
    cfg = load_config(["tasks=tofu_micro,wmdp_micro", "tasks.wmdp_micro.finetune.epochs=2"])
    tasks = tasks_of(cfg)
    assert [t.label for t in tasks.values()] == ["tofu_forget10", "wmdp_synthetic"]
    assert tasks["wmdp_micro"].cfg.finetune.epochs == 2.0
    with pytest.raises(ConfigError, match=r"this run has 2 tasks .*tasks\.<label>\.finetune\.epochs"):
        load_config(["tasks=tofu_micro,wmdp_micro", "task.finetune.epochs=2"])
    with pytest.raises(ConfigError, match=r"unknown config key 'tasks\.tofu_micro\.n_forget'.*forget_split"):
        tasks_of(load_config(["task=tofu_micro", "task.n_forget=3"]))
    with pytest.raises(ConfigError, match=r"tasks\.x\.name: unknown task 'cifar'; choose from \[.*'muse'.*'tofu'"):
        build_task("x", {"name": "cifar"})


def test_model_may_be_a_hub_id_or_path():
    cfg = load_config(["model=HuggingFaceTB/SmolLM2-135M"])
    assert cfg.model.name == "HuggingFaceTB/SmolLM2-135M"
    assert cfg.model.trust_remote_code is False


def test_method_hyperparameters_strict():
    assert method_config("GradDiff", {"alpha": "2"}).alpha == 2.0
    with pytest.raises(ConfigError, match=r"method_args\.GradDiff\.beta"):
        method_config("GradDiff", {"beta": 1})
    with pytest.raises(ValueError, match=r"unknown method 'Nope'; choose from \["):
        method_config("Nope", {})


def test_every_yaml_under_configs_loads():
    paths = sorted(CONFIG_ROOT.rglob("*.yaml"))
    assert paths
    for path in paths:
        group = path.parent.name
        if group == "experiment":
            tasks_of(load_config([f"experiment={path.stem}"]))
        elif group in ("model", "task"):
            tasks_of(load_config([f"{group}={path.stem}"]))
        elif group == "method":
            assert path.stem in METHODS, f"{path} names no registered method"
            method_config(path.stem, {})
        elif group == "tuned":           # tune.py's choices: registered methods, valid hyperparameters
            for name, args in read_tuned(f"tuned/{path.stem}")[0].items():
                method_config(name, args)
        else:
            read_yaml(path)


def test_an_experiment_may_build_on_one_that_builds_on_another():
    """tune_curve -> tune_default -> default: each layer's keys, the nearest winning."""
    cfg = load_config(["experiment=tune_curve"])
    assert cfg.name == "tune_curve" and cfg.tuning.curve_every == 7 and cfg.tuning.output == "tuned/default_curve"
    assert cfg.tuning.budget == 6 and len(cfg.tuning.grid) == 16 and cfg.seeds == 2      # tune_default's
    assert cfg.unlearn.epochs == 5 and cfg.probes == [] and cfg.tuned == ""    # default's; probes, tuned overridden
