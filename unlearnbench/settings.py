"""The settings sections of the protocols beyond one unlearning request, each a section of ExperimentConfig
(unlearnbench/config.py): populations for the privacy scores (docs/privacy.md), the tuning protocol
(docs/tuning.md), the robustness attacks (docs/recovery.md), requests over time (docs/requests.md), and the rows
that come with a guarantee, SISA and DP (docs/guarantees.md). 0 / [] turns each off.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from unlearnbench.strict import ConfigError, FieldError


@dataclass
class PrivacySettings:
    """Evaluations that need many models (docs/privacy.md). 0 turns each off; every member is a cached unit."""
    population: int = 0            # N: retain models, target models and unlearned models per method, from N seeds
    independent_retain: bool = True  # a second retain population, scored against the first (the estimator's check)
    shadow_models: int = 0         # LiRA shadow models, each trained on the retain set and half the candidate pool
    seed_targets: bool = False     # unlearned member k starts from target member k (else: all from the one target)
    shadow_lora_lr: float = 0.0    # > 0: shadow models train a LoRA adapter (lora_cfg) at this rate, merged after

    def __post_init__(self):
        if self.population < 0 or self.shadow_models < 0:
            raise ConfigError(f"privacy.population={self.population}, privacy.shadow_models={self.shadow_models}: "
                              f"model counts, 0 to turn each off")
        if 0 < self.population < 4:
            raise ConfigError(f"privacy.population={self.population}: the distributional score fits each attack on "
                              f"half of each population and measures it on the other half, so it needs at least "
                              f"4 models a side (9 to reach the challenge's low bins); use 0 to turn it off")
        if self.shadow_lora_lr < 0:
            raise ConfigError(f"privacy.shadow_lora_lr={self.shadow_lora_lr}: a learning rate for LoRA shadow models "
                              f"(e.g. 1e-3), or 0 to fine-tune them on full weights like the target")
        if 0 < self.shadow_models < 2:
            raise ConfigError(f"privacy.shadow_models={self.shadow_models}: LiRA needs every candidate in at least "
                              f"one shadow model and out of at least one; use at least 2 (0 turns it off)")


@dataclass
class TuningSettings:
    """The tuning protocol (tune.py): every method swept over its grid on the validation split, the same budget
    each, one declared rule choosing its settings, which are written to configs/<output>.yaml."""
    grid: dict = field(default_factory=dict)    # {method: {hyperparameter: [values, ...]}}: the product is swept
    budget: int = 0                # configurations per method: every method's grid must have exactly this many
    # rule: the best value of the task's tuning score (TOFU: forget quality, geometric mean over seeds; WMDP, MUSE:
    # the gap to the retain model, mean) among configurations whose mean utility is at least `utility_floor` (the
    # experiment's) x the utility `floor_of` names
    # what the floor is a fraction of: `retain`, the validation retain model's utility; `lower`, the lower of the
    # validation target's and retain model's (where the target's is below the retain model's, no run that starts
    # from it meets a floor set by the retain model, and the rule would only ever fall back to the highest utility)
    floor_of: str = "retain"
    # the validation forget set's size: authors (TOFU), species per domain (WMDP), articles (MUSE); 0: as many as
    # the test forget set
    validation_authors: int = 0
    # the unlearning curve: every configuration's run is also evaluated on the validation split every this many
    # updates, and the rule chooses among configurations x stopping points (method_args.<name>.stop_after); 0:
    # at the schedule's end only
    curve_every: int = 0
    output: str = ""               # configs/<output>.yaml receives the chosen settings (e.g. tuned/default), or
                                   # a path ending in .yaml


@dataclass
class RobustnessSettings:
    """Does the knowledge come back? Attacks on every evaluated row (orchestration/attacks/); 0 / [] is off."""
    relearn_steps: int = 0         # updates of fine-tuning on the relearn part of the forget set (0: no relearning)
    relearn_lr: float = 3e-4
    relearn_batch_size: int = 8
    relearn_data: str = "forget"   # forget: the relearn part of the forget set; unrelated: as many retain rows
    quant_bits: list[int] = field(default_factory=list)   # bitsandbytes on load: 8 (LLM.int8), 4 (NF4); 16: none
    attacks: list[str] = field(default_factory=list)      # attacks registered from a file (extensions=), by name
    seeds: str = "first"           # first: attack each method row's first seed's model; all: every seed's (intervals)
    attack_args: dict = field(default_factory=dict)       # {attack: {setting: value}}: an attack's own settings

    def __post_init__(self):
        if self.relearn_data not in ("forget", "unrelated"):
            raise FieldError(f"relearn_data={self.relearn_data!r}: forget (Deeb & Roger) or unrelated (Łucki et al.)")
        if self.relearn_steps < 0 or not self.relearn_lr > 0 or self.relearn_batch_size < 1:
            raise FieldError(f"relearn_steps={self.relearn_steps}, relearn_lr={self.relearn_lr}, relearn_batch_size="
                             f"{self.relearn_batch_size}: expected steps >= 0 (0: off), lr > 0, batch size >= 1")
        if self.seeds not in ("first", "all"):
            raise FieldError(f"seeds={self.seeds!r}: first (each method row's first seed's model is attacked) or all "
                             f"(every seed's, so the attack columns carry intervals over seeds)")
        bad = [b for b in self.quant_bits if b not in (4, 8, 16)]
        if bad:
            raise FieldError(f"quant_bits={self.quant_bits}: bitsandbytes loads 8 (LLM.int8) and 4 (NF4) bits; 16 "
                             f"is the unquantized model (a check); [] turns quantization off")


@dataclass
class RequestSettings:
    """Requests that arrive one at a time (orchestration/requests.py): the forget set split into `folds` disjoint
    folds along the task's natural unit (TOFU: authors; WMDP-style: species), drawn by the experiment's seed;
    0 is off (one request). sequential: request k unlearns fold k from the model after request k-1;
    cumulative: request k unlearns folds 1..k at once from the target; both: the two side by side."""
    folds: int = 0
    mode: str = "sequential"

    def __post_init__(self):
        if self.folds < 0 or self.folds == 1:
            raise FieldError(f"folds={self.folds}: expected 0 (off: one request) or at least 2 folds")
        if self.mode not in ("sequential", "cumulative", "both"):
            raise FieldError(f"mode={self.mode!r}: sequential (each request from the previous request's model), "
                             f"cumulative (folds 1..k at once from the target) or both")

    def modes(self) -> list[str]:
        return ["sequential", "cumulative"] if self.mode == "both" else [self.mode]


@dataclass
class SisaSettings:
    """Exact unlearning by sharding (Bourtoule et al. 2021; orchestration/guarantees.py): for each S in `shards`,
    the target's fine-tuning rows are split by the task's unit (TOFU: author; WMDP-style: species) into S shards
    and `slices` slices, one constituent model per shard trained from the base slice by slice; a forget request
    retrains only the shards holding forget rows, from the last slice before their first one. [] is off."""
    shards: list[int] = field(default_factory=list)
    slices: int = 2
    lora_lr: float = 0.0           # > 0: each slice trains a LoRA adapter (lora_cfg) at this rate, merged after

    def __post_init__(self):
        if any(s < 2 for s in self.shards) or len(set(self.shards)) != len(self.shards):
            raise FieldError(f"shards={self.shards}: distinct numbers of shards, each at least 2 (one shard is the "
                             f"ordinary target), e.g. [2, 4]; [] turns SISA off")
        if self.slices < 1 or self.lora_lr < 0:
            raise FieldError(f"slices={self.slices}, lora_lr={self.lora_lr}: at least 1 slice per shard, and a "
                             f"LoRA learning rate >= 0 (0: full weights)")


@dataclass
class DPSettings:
    """A target fine-tuned with DP-SGD (Abadi et al. 2016, through opacus; orchestration/guarantees.py) at each
    privacy budget in `epsilon`: per-example gradients clipped to `clip`, Gaussian noise from opacus's RDP
    accountant, Poisson-sampled batches of `batch_size` rows on average, the target's epochs. [] is off."""
    epsilon: list[float] = field(default_factory=list)
    delta: float = 0.0             # 0: 1 / n, n the rows fine-tuned on
    clip: float = 1.0              # per-example gradient norm bound
    batch_size: int = 16           # expected rows per batch (each row drawn with probability batch_size / n)
    lr: float = 0.0                # 0: the task's fine-tuning rate
    lora_lr: float = 0.0           # > 0: a LoRA adapter (lora_cfg) trained privately at this rate, merged after

    def __post_init__(self):
        if any(not e > 0 for e in self.epsilon) or len(set(self.epsilon)) != len(self.epsilon):
            raise FieldError(f"epsilon={self.epsilon}: distinct privacy budgets > 0, e.g. [1, 8, 64]; [] turns DP off")
        if not 0 <= self.delta < 1 or not self.clip > 0 or self.batch_size < 1 or self.lr < 0 or self.lora_lr < 0:
            raise FieldError(f"delta={self.delta}, clip={self.clip}, batch_size={self.batch_size}, lr={self.lr}, "
                             f"lora_lr={self.lora_lr}: expected 0 <= delta < 1 (0: 1/n), clip > 0, batch_size >= 1, "
                             f"learning rates >= 0 (0: the fine-tuning rate / full weights)")
