"""Config: dataclasses are the schema, YAML files under configs/ hold values, `a.b=value` overrides on the command line.

Merging is strict (unlearnbench/strict.py): an unknown key, a value of the wrong type or out of range raises
ConfigError naming the key and the fix.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from unlearnbench.settings import (
    DPSettings,
    PrivacySettings,
    RequestSettings,
    RobustnessSettings,
    SisaSettings,
    TuningSettings,
)
from unlearnbench.strict import ConfigError, FieldError, coerce, deep_merge, from_dict, read_yaml

CONFIG_ROOT = Path(__file__).resolve().parent.parent / "configs"


@dataclass
class TrainConfig:
    epochs: float = 5.0
    lr: float = 1e-5
    batch_size: int = 32
    grad_accum: int = 1
    weight_decay: float = 0.01
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0
    max_length: int = 256
    steps: int = 0              # > 0: exactly this many updates, whatever `epochs` says (a relearning budget)

    def __post_init__(self):
        # ranges only; the key's full name is the caller's (prefix): the message names the field and the fix
        for name, low, fix in (("batch_size", 1, "rows per micro-batch, at least 1"),
                               ("grad_accum", 1, "micro-batches per update, at least 1"),
                               ("max_length", 2, "tokens per row, at least 2"),
                               ("epochs", 0, "passes over the lead set; 0 leaves the model untrained"),
                               ("lr", 0, "a learning rate >= 0"), ("weight_decay", 0, "a decay >= 0"),
                               ("max_grad_norm", 0, "a clipping norm >= 0 (0: no clipping)"),
                               ("steps", 0, "a number of updates >= 0 (0: `epochs` decides)"),
                               ("warmup_ratio", 0, "a fraction of the updates in [0, 1]")):
            value = getattr(self, name)
            if not value >= low or (name == "warmup_ratio" and value > 1):   # `not >=` also catches NaN
                raise FieldError(f"{name}={value}: expected {fix}")


@dataclass
class EmbeddedModelConfig:
    """The small Llama-architecture model the suite builds and pretrains itself (docs/protocol.md, step 1)."""
    vocab_size: int = 2048
    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 512
    max_position: int = 256
    pretrain: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=40, lr=3e-3, batch_size=32))
    # Fine-tuning target and retain also replays the pretraining corpus: a 7B model keeps its general knowledge
    # through a light fine-tune by capacity, a model this small only by rehearsal. Same recipe for both models.
    replay: bool = True

    def __post_init__(self):
        if not self.pretrain.epochs > 0:
            raise FieldError(f"pretrain.epochs={self.pretrain.epochs}: the embedded base needs at least one pass over "
                             f"its pretraining corpus")


@dataclass
class ModelConfig:
    name: str = "embedded"                 # "embedded", a hub id, or a local path
    gguf_file: str = ""                    # load a GGUF file of that repo/directory (needs the gguf package)
    revision: str = ""
    trust_remote_code: bool = False        # stays off unless the user turns it on
    dtype: str = "float32"                 # the weights' torch dtype: float32, bfloat16 or float16
    prompt_format: str = "plain"           # plain: `template`; chat: the tokenizer's chat template
    template: str = "Question: {question}\nAnswer: "
    target: str = ""                       # a given target checkpoint (skips fine-tuning on the full set)
    retain: str = ""                       # a given retain checkpoint (skips fine-tuning on the retain set)
    # A pretrained model: fine-tuning into target and retain (and shadow models) also rehearses hand-written general
    # QA that no evaluated split asks (benchmarks/data/general_qa.tsv). A 135M model otherwise trades real-world
    # answers for the synthetic profiles' answer templates. The embedded model's own: embedded.replay.
    replay: bool = False
    embedded: EmbeddedModelConfig = field(default_factory=EmbeddedModelConfig)

    def __post_init__(self):
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise FieldError(f"dtype={self.dtype!r}: choose float32, bfloat16 or float16")
        if self.replay and self.name == "embedded":
            raise ConfigError("model.replay rehearses general QA while fine-tuning a pretrained model; the embedded "
                              "model rehearses its own pretraining corpus: set model.embedded.replay instead")


@dataclass
class EvalConfig:
    batch_size: int = 32                   # sequences per batch (generation; the reference implementation)
    token_budget: int = 4096               # padded tokens per teacher-forced batch of the evaluation engine
    max_new_tokens: int = 200              # ROUGE generation budget (TOFU reference: 200)

    def __post_init__(self):
        for name, low in (("batch_size", 1), ("token_budget", 1), ("max_new_tokens", 0)):
            if getattr(self, name) < low:
                raise FieldError(f"{name}={getattr(self, name)}: expected at least {low}")


@dataclass
class TaskConfig:
    """What every task's config has. A task family extends it with its own fields (benchmarks/<task>.py) and
    is validated against that dataclass when the run starts (strictly, like the rest of the config)."""
    name: str = "tofu"                     # the registered task family: tofu, wmdp, ...
    source: str = "synthetic"              # where its data comes from; each family lists its choices
    path: str = ""
    revision: str = ""
    finetune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=1e-3, batch_size=16))
    eval: EvalConfig = field(default_factory=EvalConfig)
    unlearn: dict = field(default_factory=dict)        # this task's overrides of the experiment's `unlearn`
    method_args: dict = field(default_factory=dict)    # this task's overrides of `method_args` ({method: {k: v}})
    tuned: str = ""                        # configs/<tuned>.yaml (tune.py's) for this task: its method_args apply
                                           # under the task's own (a run of several tasks, each tuned on its own)
    allow_unseen_forget: bool = False      # forget rows absent from the target's training rows: error, or warn
    replay: bool | None = None             # embedded model: fine-tuning rehearses the pretraining corpus (None:
                                           # model.embedded.replay; a document task may set its own)

    def __post_init__(self):
        if not self.finetune.epochs > 0:
            raise FieldError(f"finetune.epochs={self.finetune.epochs}: target and retain need at least one pass over "
                             f"their rows (e.g. task.finetune.epochs=1)")


@dataclass
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj",
                                                               "gate_proj", "up_proj", "down_proj"])

    def __post_init__(self):
        if self.r < 1 or not self.alpha > 0 or not 0 <= self.dropout < 1:    # `not` also catches NaN
            raise FieldError(f"r={self.r}, alpha={self.alpha}, dropout={self.dropout}: expected a rank >= 1, a "
                             f"scaling alpha > 0 and a dropout probability in [0, 1)")


@dataclass
class ExperimentConfig:
    name: str = "default"
    seed: int = 0
    seeds: int = 1                         # every method row unlearned from seeds seed .. seed + seeds - 1: mean,
                                           # spread, 95 % interval and significance over them (evals/spread.py)
    seed_models: bool = False              # seeds also fine-tune target and retain: seed s's rows unlearn seed s's
                                           # target and are scored against seed s's retain model
    worlds: int = 1                        # replicates of the whole pipeline (orchestration/worlds.py): world w
                                           # draws its own synthetic world, base, target and retain; rows'
    first_world: int = 0                   # statistics over worlds first_world .. first_world + worlds - 1
    utility_floor: float = 0.9             # a method row whose utility is below this fraction of the retain
                                           # model's is flagged and never marked best; tune.py's rule uses it too
    threads: int = 0                       # torch CPU threads; 0 = auto (OMP_NUM_THREADS, else usable CPUs / processes)
    gradient_checkpointing: bool = False   # recompute activations in backward: less memory, ~1/3 more compute
    output_dir: str = ""                   # default: results/<name>
    cache_dir: str = ""                    # default: $UNLEARNBENCH_CACHE or ~/.cache/unlearnbench
    model: ModelConfig = field(default_factory=ModelConfig)
    # {label: task section}; each section is a configs/task/<name>.yaml (with `base:`) merged with overrides, and
    # is validated against its family's dataclass when the run starts. `task=<name>` on the command line is
    # shorthand for a single task, and `task.<key>=` then sets a key of that one task.
    tasks: dict = field(default_factory=lambda: {"tofu_embedded": {"name": "tofu"}})
    methods: list[str] = field(default_factory=lambda: ["GradAscent", "GradDiff"])
    unlearn: TrainConfig = field(default_factory=TrainConfig)
    method_args: dict = field(default_factory=dict)     # {method name: {hyperparameter: value}}
    # configs/<tuned>.yaml, written by tune.py: its method_args apply under the experiment's own (which win)
    tuned: str = ""
    tuning: TuningSettings = field(default_factory=TuningSettings)
    # accelerate's trackers (tensorboard, wandb, mlflow, ...; their packages are not in the lock) receive every
    # unlearning run's training loss and tune.py's unlearning curves; files under <output_dir>/trackers. Off: []
    log_with: list[str] = field(default_factory=list)
    lora: bool = False
    lora_cfg: LoraSettings = field(default_factory=LoraSettings)
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    robustness: RobustnessSettings = field(default_factory=RobustnessSettings)
    requests: RequestSettings = field(default_factory=RequestSettings)
    sisa: SisaSettings = field(default_factory=SisaSettings)
    dp: DPSettings = field(default_factory=DPSettings)
    # {row name: hub id | local folder}: an already unlearned model (full weights, or a peft adapter folder)
    # evaluated as a row of every task, with the task's full metrics
    checkpoints: dict = field(default_factory=dict)
    extensions: list[str] = field(default_factory=list)     # Python files registering methods, tasks or attacks
    # true: every row's model to <output_dir>/models/<row>/ (LoRA rows: the adapter); merged: LoRA rows merged
    save_models: bool | str = False
    # probes of every row, the forget items in unseen words, formats, contexts, frames (docs/probes.md): all (every
    # probe a task offers), none, a list, or all but some (all,-reverse: those a task offers, but reverse)
    probes: list[str] = field(default_factory=list)
    # first: probe each method row's first seed's model, as the recovery attacks do; all: every seed's (intervals)
    probe_seeds: str = "first"

    def __post_init__(self):
        if not 0 <= self.seed < 2 ** 32:
            raise ConfigError(f"seed={self.seed}: a seed in [0, 2**32) (numpy's range), e.g. seed=0")
        if self.threads < 0:
            raise ConfigError(f"threads={self.threads}: a thread count, or 0 for the default (usable CPUs / local "
                              f"processes)")
        if self.seeds < 1:
            raise ConfigError(f"seeds={self.seeds}: the number of unlearning seeds per method must be at least 1")
        if self.worlds < 1 or self.first_world < 0:
            raise ConfigError(f"worlds={self.worlds} first_world={self.first_world}: at least one world, from an index "
                              f">= 0 (worlds=5: worlds 0-4; first_world=5 worlds=5: five others)")
        if not 0 <= self.utility_floor <= 1:
            raise ConfigError(f"utility_floor={self.utility_floor}: a fraction of the retain model's utility in [0, 1] "
                              f"(0.9: a row keeping less than 90 % of it is flagged; 0: no floor)")
        if self.probes in (["none"], ["false"]):
            self.probes = []
        left_out = [p for p in self.probes if p.startswith("-")]
        if ("all" in self.probes and len(self.probes) > 1 + len(left_out) or "none" in self.probes
                or left_out and "all" not in self.probes):
            raise ConfigError(f"probes={self.probes}: all, none, a list of probe names, or all with some left out "
                              f"(all,-reverse) (docs/probes.md)")
        if self.probe_seeds not in ("first", "all"):
            raise ConfigError(f"probe_seeds={self.probe_seeds!r}: first (probe each method row's first seed's model) "
                              f"or all (every seed's, with intervals)")
        if self.save_models not in (False, True, "merged"):
            raise ConfigError(f"save_models={self.save_models!r}: true (each row's model; LoRA rows as the adapter), "
                              f"merged (LoRA rows merged into full weights), or false")
        for name, ref in self.checkpoints.items():
            if not isinstance(ref, str) or not ref or not str(name).strip() or "/" in str(name):
                raise ConfigError(f"checkpoints.{name}={ref!r}: give each row a name without '/' and a hub id or "
                                  f"local folder, e.g. checkpoints.Mine=/path/to/model")
            if name in ("base", "target", "retain", *self.methods):
                raise ConfigError(f"checkpoints.{name}: {name!r} is already a row of this run; name the checkpoint's "
                                  f"row differently, e.g. checkpoints.{name}_ckpt=...")

        if self.requests.folds:
            clash = [k for k, on in (("robustness", self.robustness.relearn_steps or self.robustness.quant_bits
                                                     or self.robustness.attacks),
                                     ("privacy", self.privacy.population or self.privacy.shadow_models),
                                     ("checkpoints", self.checkpoints), ("save_models", self.save_models),
                                     ("sisa", self.sisa.shards), ("dp", self.dp.epsilon),
                                     ("seed_models", self.seed_models), ("probes", self.probes),
                                     ("worlds", self.worlds > 1),
                                     ("model.retain", self.model.retain)) if on]
            if clash:
                raise ConfigError(f"requests.folds={self.requests.folds} runs the requests protocol, which does not "
                                  f"take {', '.join(clash)} (model.retain, seed_models: each request has its own gold "
                                  f"standard, retrained without the folds forgotten so far); unset {clash[0]} or run "
                                  f"it without requests")

    def seed_values(self) -> list[int]:
        """The seeds every method row runs from: seed .. seed + seeds - 1; the first is the record's own, the others
        give its spread."""
        return [self.seed + k for k in range(self.seeds)]

    def resolved_cache_dir(self) -> Path:
        return Path(self.cache_dir or os.environ.get("UNLEARNBENCH_CACHE") or
                    Path.home() / ".cache" / "unlearnbench").expanduser()

    def resolved_output_dir(self) -> Path:
        return Path(self.output_dir or f"results/{self.name}")

    def method_args_for(self, name: str, task_cfg) -> dict:
        """Method `name`'s settings on one task: the experiment's method_args.<name>, with the task's own on top."""
        return {**(self.method_args.get(name) or {}), **(task_cfg.method_args.get(name) or {})}

    def unlearn_schedule(self, label: str, task_cfg) -> TrainConfig:
        """The unlearning schedule on one task: the experiment's `unlearn`, with the task's own on top."""
        return from_dict(TrainConfig, {**dataclasses.asdict(self.unlearn), **task_cfg.unlearn},
                         prefix=f"tasks.{label}.unlearn")


def available(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_ROOT / group).glob("*.yaml"))


def _named(group: str, name: str) -> dict:
    named = _find(group, name)
    if named is None:
        raise ConfigError(f"unknown {group} {name!r}; choose from {available(group)} "
                          f"(files under configs/{group}/)")
    return named


def _find(group: str, name: str) -> dict | None:
    path = CONFIG_ROOT / group / f"{name}.yaml"
    return read_yaml(path) if path.is_file() else None


def _section(group: str, value) -> dict:
    """A `model:` or `task:` entry: a config name, (model only) a hub id / path, or an inline mapping.

    A mapping may name `base: <config name>` to start from that config."""
    if not isinstance(value, dict):
        # a model may be a hub id or path; a task with no YAML is a registered family with its defaults
        named = _find(group, str(value))
        value = named if named is not None else {"name": str(value)}
    base = value.pop("base", None)
    return deep_merge(_section(group, base), value) if base else value


def _set(tree: dict, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    node = tree
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {dotted!r}: {part!r} is not a section")
        node = child
    node[leaf] = value


def _task_sections(value) -> dict:
    """`tasks:` as a list of config names (or comma string), or a mapping {label: config name | section}."""
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list):
        value = {str(name): str(name) for name in value}
    if not isinstance(value, dict) or not value:
        raise ConfigError(f"tasks must name at least one task config, e.g. tasks=tofu_embedded,wmdp_embedded; "
                          f"available: {available('task')}")
    return {str(label): _section("task", section if section is not None else label)
            for label, section in value.items()}


def load_config(overrides: list[str]) -> ExperimentConfig:
    """`experiment=<name>` picks configs/experiment/<name>.yaml (default: default); `model=` picks a named config
    (or a hub id / path), `task=`/`tasks=` named task configs; any other `a.b=value` sets one key."""
    pairs = []
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value (see --help)")
        key, value = item.split("=", 1)
        pairs.append((key.strip(), value))
    experiment = dict(pairs).get("experiment", "default")
    tree = _named("experiment", experiment)
    seen = [experiment]
    while "base" in tree:   # an experiment may start from another one (`base: <experiment name>`), which may too
        base = str(tree.pop("base"))
        if base in seen:
            raise ConfigError(f"experiment {experiment!r}: its bases loop ({' -> '.join(seen + [base])})")
        seen.append(base)
        tree = deep_merge(_named("experiment", base), tree)
        tree.pop("name", None)
    tree.setdefault("name", experiment)
    if "model" in tree:
        tree["model"] = _section("model", tree["model"])
    if "task" in tree:      # a config name, or an inline section (`task: {base: tofu_embedded, ...}`)
        task = tree.pop("task")
        tree["tasks"] = {str(task.get("base") or task.get("name", "tofu")): task} if isinstance(task, dict) else [task]
    if "tasks" in tree:
        tree["tasks"] = _task_sections(tree["tasks"])
    for key, value in pairs:
        if key == "experiment":
            continue
        if key == "model":
            tree[key] = _section(key, value)
        elif key in ("task", "tasks"):
            tree["tasks"] = _task_sections(value if key == "tasks" else [value])
        elif key.startswith("task."):
            tasks = tree.get("tasks") or {}
            if len(tasks) != 1:
                raise ConfigError(f"{key!r}: this run has {len(tasks)} tasks ({', '.join(tasks)}); set a key of one "
                                  f"of them with tasks.<label>.{key[5:]}=...")
            _set(tree, f"tasks.{next(iter(tasks))}.{key[5:]}", value)
        else:
            _set(tree, key, value)
    tasks = tree.get("tasks") or {}
    for section in [tree, *tasks.values()]:    # the experiment's and each task's tuned file
        if isinstance(section, dict) and section.get("tuned"):
            chosen, held = read_tuned(str(section["tuned"]))
            own = section.get("method_args") or {}
            section["method_args"] = {name: {**chosen.get(name, {}), **(own.get(name) or {})}
                                      for name in {*chosen, *own}}
            for label, task in (tasks.items() if section is tree else [(None, section)]):
                _share(task, held, label, str(section["tuned"]))
    return from_dict(ExperimentConfig, tree)


def _share(task: dict, held: dict, label: str | None, tuned: str) -> None:
    """The task settings a tuned file's sweep held its validation questions out with (real WMDP's
    validation_fraction): a test run takes them, so that it scores none of those questions."""
    for key, value in held.items():       # a command line's value is a string until the config is built
        if coerce(task.get(key, value), type(value), f"task.{key}") != value:
            raise ConfigError(f"task{'s.' + label if label else ''}.{key}={task[key]}: the settings in tuned={tuned} "
                              f"were chosen on questions held out with {key}={value}, which this run would score; "
                              f"drop the setting (the tuned file sets it) or retune")
        task[key] = value


def tuned_path(name: str) -> Path:
    """Where tune.py writes / an experiment's `tuned:` reads: configs/<name>.yaml, or a path given as *.yaml."""
    return Path(name).expanduser() if name.endswith(".yaml") else CONFIG_ROOT / f"{name}.yaml"


def read_tuned(name: str) -> tuple[dict, dict]:
    """({method: settings}, {task setting: value} its test runs share) of a file tune.py wrote (tuned_path)."""
    path = tuned_path(name)
    if not path.is_file():
        raise ConfigError(f"tuned={name!r}: no file {path}; run `python tune.py experiment=<its tuning experiment>` "
                          f"to write it, or drop tuned=")
    tree = read_yaml(path)
    args, held = tree.get("method_args"), tree.get("task_args") or {}
    if not isinstance(args, dict) or not all(isinstance(v, dict) for v in args.values()) or not isinstance(held, dict):
        raise ConfigError(f"{path}: needs a `method_args:` mapping {{method: {{hyperparameter: value}}}} and at most a "
                          f"`task_args:` mapping (tune.py writes them)")
    return args, held


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def dump_yaml(cfg) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)

