"""Tasks, the extension point beside methods (docs/protocol.md, "Tasks"). The pipeline knows a task only through
this file.

A task family is one module under benchmarks/ that registers a class with `@task(name, ConfigDataclass)`; its
config dataclass extends `TaskConfig` with the family's own fields, and `configs/task/*.yaml` hold values. The
class, built from its validated config, provides what `Task` declares. It may also define optional hooks, each
declared (typed, with what it means) by one of the protocols below `Task`; registration records those it defines
in `capabilities`, the pipeline asks `"<hook>" in task.capabilities`, and a protocol that needs a hook the task
lacks is an input error before anything trains (`require`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from unlearnbench.config import ConfigError, TaskConfig, available, from_dict
from unlearnbench.registry import Registry

TASKS = Registry("task")

Pairs = dict[str, list[tuple[str, list[str]]]]     # per evaluation split, each item's (question, answers)


class Task(Protocol):
    """What every task provides."""
    cfg: TaskConfig             # its validated config (the family's dataclass)
    label: str                  # results' `task` column (e.g. tofu_forget10)
    version: int                # bumped when its evaluation or metrics change meaning (part of every evaluation's
                                # cache key; the data's own changes go in TaskData.fingerprint)
    forget_score: str           # which metric is the forget score
    utility: str                # which metric is the model utility
    forget_measure: str         # the metric the recovery attacks and the requests' per-fold columns measure
    higher_is_better: dict[str, bool]   # every metric it reports, with its direction (a metric whose goal is a
                                        # value, MUSE's PrivLeak at 0, has none: no arrow, never marked best)
    headline: list[str]         # the metrics the leaderboard shows, in order
    log_scale: set[str]         # metrics read on a log scale (p-values)
    prompted: bool              # whether its questions go through the model's prompt format (QA) or are scored as
                                # raw text (lm-eval's context + continuation)
    capabilities: frozenset[str]    # the optional hooks it defines, recorded when it registers

    def load(self, cache_dir) -> TaskData:
        """The rows to train and unlearn on (cache_dir: where to write generated files)."""

    def scored_pairs(self) -> Pairs:
        """After load: per evaluation split, each item's (question, answers) as the evaluation scores them; checked
        against the context before any training."""

    def evaluate(self, model, tokenizer, fmt, name: str, batch_size: int, accelerator=None, **options) -> dict:
        """Per-item statistics of a model (JSON-able); computed once and cached. Every process calls it and gets the
        whole result (a task may split the items across the accelerator's processes and gather them). Options:
        generate=False, teacher-forced statistics only (a population member; TOFU); probes=(...), the probes'
        statistics beside the evaluation's (`stats["probes"]`, a task with the probe hooks)."""

    def metrics(self, stats: dict, retain_stats: dict | None) -> dict[str, float]:
        """Numbers from statistics; retain_stats is the retain model's, or None where the task has no retain model
        (then no metric may pretend it has one)."""


class Relearns(Protocol):
    def relearn_split(self, seed: int) -> tuple[list[dict], Any]:
        """After load (the relearning attack needs it): the rows to relearn on (part of the forget set) and the
        forget split's items it scores (None: all), never one of the rows trained on."""


class Requests(Protocol):
    def request_folds(self, k: int, seed: int) -> list[tuple[list[int], Any]]:
        """After load: the forget set as k disjoint requests along the task's natural unit
        (orchestration/requests.py): per fold the indices of its rows in TaskData.forget and of its items in the
        forget evaluation split (None: every item, at every request)."""


class Shards(Protocol):
    def train_units(self) -> list[str]:
        """After load: a label per row of TaskData.train["target"], rows of one unit sharing it (TOFU: an author;
        WMDP-style: a species); SISA (orchestration/guarantees.py) keeps a unit in one shard and slice. Without
        it each row is its own unit."""


class Packs(Protocol):
    def pack(self, rows: list[dict], seed: int) -> list[dict]:
        """The rows a fine-tuning run trains on, made from the task rows it is given (a target's, a retain
        model's, a gold standard's or a SISA slice's): a document task packs documents into longer rows, as LM
        training does, so rows without a document never hold it."""


class Validates(Protocol):
    def validation(self, n: int = 0) -> tuple[Task, TaskData]:
        """After load: the tuning protocol's split (tune.py), a task and its data sharing no forget row with the
        test forget set, whose forget set is n authors / species / articles (0: as many as the test's)."""

    def held_out(self) -> dict:
        """With validation: task settings that the test runs of the chosen settings must share with the sweep
        (real WMDP: the share of its questions held out for validation); tune.py writes them, load_config applies
        them."""


class Probes(Protocol):
    """A task that offers probes (docs/probes.md) defines all five."""

    def offered_probes(self) -> tuple[str, ...]:
        """After load: the probes this data can serve."""

    def probe_pairs(self, probes: tuple[str, ...]) -> Pairs:
        """The probes' (question, answers) per split, for the length check."""

    def probe_scores(self, stats: dict) -> dict:
        """{probe: {split: {"score": [...], "ratio": [...]?}}}: per-item scores, higher = the model shows the fact
        (evals/probes.py), the probe "plain" being the task's own question (its forget measure's items); the plain
        entry's "scale": scores x scale = the metric (MUSE: 100)."""

    def probe_claims(self, probes: tuple[str, ...]) -> dict[str, dict]:
        """After load: {probe: {"changes": str, "unseen": [texts]}}, what each probe changes
        (unlearnbench.probes.CHANGES) and the texts it claims no model trained on (every unlearning run checks
        them)."""

    @staticmethod
    def probe_names() -> tuple[str, ...]:
        """Every probe name the family may offer (an exclusion, probes=all,-p, must name one of some family's)."""


# A task may also set `tuning_score: str`, the metric tune.py's rule optimises in its direction (default: its
# forget_score; WMDP- and MUSE-style: forget_gap_to_retain; real WMDP: forget_gap_to_chance).


def _members(protocol: type) -> tuple[str, ...]:
    return tuple(name for name in vars(protocol) if not name.startswith("_"))


# what a task class itself must define: Task's attributes but those its instance (cfg, label) or its registration
# (capabilities) sets
REQUIRED_ATTRIBUTES = tuple(a for a in Task.__annotations__ if a not in ("cfg", "label", "capabilities"))
REQUIRED_HOOKS = _members(Task)
PROBE_HOOKS = _members(Probes)
OPTIONAL_HOOKS = (*_members(Relearns), *_members(Requests), *_members(Shards), *_members(Packs),
                  *_members(Validates), *PROBE_HOOKS)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    config: type            # a dataclass extending TaskConfig
    build: Callable         # config -> task object
    source: str = ""        # registered from a user's file (extensions=): "<path>@<digest>", part of its units' keys


def capabilities(name: str, cls: type) -> frozenset:
    """The optional hooks `cls` defines, after checking it against the interface: a missing member or a public
    method that is no hook (a misspelt one, say) is an error now, at registration, not an AttributeError mid-run."""
    missing = [a for a in REQUIRED_ATTRIBUTES + REQUIRED_HOOKS if not hasattr(cls, a)]
    if missing:
        raise TypeError(f"task {name!r}: {cls.__name__} lacks {missing} (the task interface: unlearnbench/tasks.py)")
    not_callable = [h for h in REQUIRED_HOOKS + OPTIONAL_HOOKS if hasattr(cls, h) and not callable(getattr(cls, h))]
    unknown = [a for a, v in vars(cls).items() if callable(v) and not a.startswith("_")
               and a not in REQUIRED_HOOKS + OPTIONAL_HOOKS]
    if not_callable or unknown:
        raise TypeError(f"task {name!r}: {cls.__name__} has {not_callable + unknown}, which are not hooks of the "
                        f"task interface (required {list(REQUIRED_HOOKS)}, optional {list(OPTIONAL_HOOKS)}); "
                        f"rename a misspelt hook, or prefix a helper with _")
    found = frozenset(h for h in OPTIONAL_HOOKS if hasattr(cls, h))
    if found & set(PROBE_HOOKS) and not found >= set(PROBE_HOOKS):
        raise TypeError(f"task {name!r}: {cls.__name__} defines {sorted(found & set(PROBE_HOOKS))} but not "
                        f"{sorted(set(PROBE_HOOKS) - found)}; a task that offers probes defines all of "
                        f"{list(PROBE_HOOKS)}")
    return found


def task(name: str, config: type):
    """Register a task class under `name` with its config dataclass; its optional hooks become `capabilities`."""
    if not issubclass(config, TaskConfig):
        raise TypeError(f"task {name!r}: its config {config.__name__} must extend unlearnbench.config.TaskConfig")

    def wrap(cls):
        cls.capabilities = capabilities(name, cls)
        TASKS.register(name, TaskSpec(name, config, cls))
        return cls
    return wrap


def require(task: Task, hook: str, what: str) -> None:
    """An input error unless `task` serves the optional `hook` that `what` (a setting, for the message) needs."""
    if hook not in task.capabilities:
        raise ConfigError(f"task {task.label} cannot serve {what}: it has no {hook} hook (unlearnbench/tasks.py); "
                          f"run it without {what}")


def probes_for(task: Task, wanted: list[str]) -> tuple[str, ...]:
    """After load: the probes a run asks of `task` (probes=all: every one it offers; all,-p: every one but p; none:
    none). A named probe the task cannot serve is an input error, never skipped; a probe left out of all that the
    task does not offer is nothing to leave out if some task family offers it (another family's, in a run of
    several), and an input error if none does (a misspelt name would otherwise leave nothing out, silently)."""
    offered = cast(Probes, task).offered_probes() if "offered_probes" in task.capabilities else ()
    if "all" in wanted:
        known = {p for spec in TASKS.values() if "probe_names" in spec.build.capabilities
                 for p in spec.build.probe_names()}
        unknown = [p[1:] for p in wanted if p.startswith("-") and p[1:] not in offered and p[1:] not in known]
        if unknown:
            raise ConfigError(f"probes: {['-' + p for p in unknown]} leave out no probe: no task family offers "
                              f"{unknown}; task {task.label} offers {list(offered) or 'none'} (docs/probes.md)")
        return tuple(p for p in offered if f"-{p}" not in wanted)
    missing = [p for p in wanted if p not in offered]
    if missing:
        raise ConfigError(f"probes: task {task.label} cannot serve {missing}; it offers {list(offered) or 'none'} "
                          f"(docs/probes.md); use probes=all for every probe a task offers")
    return tuple(p for p in offered if p in wanted)


def build_task(label: str, section: dict):
    """The task object of one `tasks.<label>` section, validated strictly against its family's dataclass."""
    if not isinstance(section, dict):
        raise ConfigError(f"tasks.{label} must be a mapping of task config keys, got {section!r}")
    family = section.get("name", TaskConfig.name)
    if family not in TASKS:
        raise ConfigError(f"tasks.{label}.name: unknown task {family!r}; choose from {sorted(TASKS)} (task families) "
                          f"or a task config: {available('task')}")
    spec = TASKS[family]
    return spec.build(from_dict(spec.config, section, prefix=f"tasks.{label}"))


@dataclass
class TaskData:
    """What a task trains and unlearns on. A row is {"question", "answer"} (prompted QA: loss on the answer) or
    {"text"} (plain text: loss on every token).

    train["target"] / train["retain"]: rows the target / retain model are fine-tuned on from the base; None means
    no fine-tuning: the target is the given model itself, and there is no retain model unless model.retain names
    one. forget / retain: the unlearning sets. texts: every text of the task's world (an embedded tokenizer is
    trained on them). describe: split names and sizes for the results file. pretrain: rows the embedded base
    pretrains on besides the general corpus (and rehearses with it), for a skill the task's evaluation expects of
    any pretrained model (MUSE-style: questions after ten in-context pairs); a task without any leaves its
    base as it was."""
    train: dict
    forget: list[dict]
    retain: list[dict]
    fingerprint: str
    texts: list[str] = field(default_factory=list)
    describe: dict = field(default_factory=dict)
    pretrain: list[dict] = field(default_factory=list)
