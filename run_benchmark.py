"""Run an unlearning benchmark: config -> worlds -> per task: data -> models -> methods -> evaluate -> results.

    python run_benchmark.py [--fresh] [--debug] [experiment=<name>] [key=value ...]
    accelerate launch run_benchmark.py [...]

Run with --help for every option.
"""
from __future__ import annotations

import sys
import time

from unlearnbench import numerics

numerics.apply()     # before torch loads: the same CPU kernels on every machine (unlearnbench/numerics.py)

# torch and the other heavy libraries load when a stage first uses them (unlearnbench/heavy.py): --help and input
# errors answer without them
from evals.report import leaderboard, write_results
from methods import METHODS
from orchestration import worlds
from orchestration.benchmark import run_task
from orchestration.requests import run_requests
from orchestration.start import Started, World, arguments, cli_errors, start
from unlearnbench import environment
from unlearnbench.cache import atomic_write_text
from unlearnbench.config import available, dump_yaml, load_config, to_dict

HELP = """usage: python run_benchmark.py [--fresh] [--debug] [key=value ...]

Runs one experiment: per task, builds (or loads) the base, target and retain models, unlearns with each method,
evaluates every model with the task's metrics and writes config.yaml, results.json, per_item.json, results.csv,
leaderboard.md and plots/.

  experiment=<name>     configs/experiment/<name>.yaml (default: default). Available: {experiments}
  output_dir=<dir>      where results go (default: results/<experiment>); a folder holding results of a
                        different config is never overwritten
  methods=A,B           which method rows run. Registered: {methods}
  method_args.<M>.<k>=v a method's hyperparameter (its dataclass in methods/<M>.py), e.g.
                        method_args.NPO.beta=0.2; method_args.<M>.stop_after=k stops its run after k updates
                        of the schedule (chosen by tune.py from the unlearning curve; 0: at its end)
  unlearn.epochs=3      the unlearning schedule the methods share (batch_size, grad_accum, max_length, ...;
                        the learning rate is each method's: method_args.<M>.lr)
  lora=true lora_cfg.r=16
                        the methods through a LoRA adapter (rows <Method>+lora), its rank etc.
  extensions=a.py,..    your own methods, tasks and attacks: files that register them with @method, @task
                        or @attack (docs/extending.md)
  checkpoints.<Row>=<folder|hub id>
                        evaluate a model unlearned elsewhere as row <Row> of every task (a peft adapter
                        folder loads on its base); with methods= empty, an evaluation-only run
  robustness.relearn_steps=20 robustness.quant_bits=8,4
                        recovery attacks on every row, read against the retain model under the same
                        attack: relearning on part of the forget set, bitsandbytes quantization on load
                        (the default and wmdp experiments run them); robustness.attacks=<name> runs an
                        attack registered from a file, robustness.attack_args.<name>.<k>=v its settings
  probes=all|none|a,b   probe every row: the forget items in words no model trained on, in another format,
                        with added context or in an adversarial frame, each against the retain
                        model under the same probe, and the worst case: the highest recovery over the
                        plain question and the probes that discriminate, with the probe that attains it;
                        all,-reverse: all but reverse (the default leaves out the four that never
                        discriminate on its world; docs/probes.md); extensions=<file> adds @probe ones
  probe_seeds=first|all probe each method row's first seed's model (the default), or every seed's
  requests.folds=4 requests.mode=sequential|cumulative|both
                        the forget set as 4 requests, one after another (each from the previous
                        request's model) or growing (folds 1..k from the target), each scored against a
                        model retrained without the folds forgotten so far (experiment=requests)
  sisa.shards=2,4 sisa.slices=2
                        SISA rows (exact unlearning): per S, the target's rows in S shards by author or
                        species, one constituent each, their aggregate before and after the forget request
  dp.epsilon=1,8,64     DP rows: the base fine-tuned with DP-SGD (opacus) at each budget (experiment=guarantees)
  save_models=true      every row's model to <output_dir>/models/<row>/ (LoRA rows: the adapter;
                        save_models=merged: merged into full weights)
  model=<name|id|path>  configs/model/<name>.yaml ({models}), or any causal LM by hub id or local path
  model.target=<path>   use a given target checkpoint instead of fine-tuning one (model.retain likewise)
  model.replay=true     a pretrained model's fine-tuning also rehearses hand-written general QA that no
                        evaluated split asks (experiment=smollm2_tofu)
  task=<name>           configs/task/<name>.yaml ({tasks}); task.<key>=<value> sets one of its keys
  tasks=A,B             several tasks in one run (one leaderboard section each, plus a table across tasks);
                        tasks.<A>.<key>=<value> sets a key of task A
  seeds=<n> seed=<s>    run every method row from seeds s .. s+n-1: means, 95 % intervals and a mark
                        for rows not significantly different from the best (default experiment: 5)
  seed_models=true      seeds also fine-tune target and retain (seed s's rows: seed s's models)
  worlds=<k> first_world=<w>
                        replicate the whole pipeline in k independently drawn worlds (w .. w+k-1: each
                        its own synthetic world, base, target, retain and unlearning seeds): rows over
                        worlds, marks paired within worlds, how stable the ranking is (experiment=worlds)
  utility_floor=<f>     rows with utility below f x the retain model's are flagged (†), never best (0.9)
  tuned=<name|file>     method settings written by tune.py (configs/tuned/<name>.yaml); the default
                        experiment reads tuned/default; method_args.* on top are marked "set by hand"
  tuning.budget=6 tuning.grid.<M>.<k>=[...] tuning.curve_every=7
                        the tuning protocol's sweep (python tune.py; docs/tuning.md); curve_every: each run
                        also evaluated on the validation split every 7 updates, and when to stop chosen too
  log_with=tensorboard  accelerate's trackers (tensorboard, wandb, mlflow, ...: their packages are not in the
                        lock) receive every unlearning run's loss and tune.py's curves (<output_dir>/trackers)
  threads=<n>           torch CPU threads (default 0: OMP_NUM_THREADS, else usable CPUs / local processes)
  gradient_checkpointing=true
                        recompute activations in the backward pass: less memory, the same numbers
  cache_dir=<dir>       where trained models and finished units are cached (default: $UNLEARNBENCH_CACHE or
                        ~/.cache/unlearnbench); a rerun reuses them and a crashed run resumes
  privacy.population=N  the unlearning challenge's distributional score from N models a side (TOFU with a
                        holdout split; experiment=privacy); privacy.shadow_models=S adds LiRA with S shadows
                        (privacy.shadow_lora_lr=1e-3: through LoRA); members spread over accelerate's processes
  a.b.c=<value>         any other config key, e.g. unlearn.epochs=3, method_args.GradDiff.alpha=2,
                        task.synthetic.n_authors=60, lora=true; unknown keys and wrong types are errors
  --fresh               ignore cached units and rebuild every stage of this run
  --debug               show the traceback of an input error (or set UNLEARNBENCH_DEBUG=1)
  --help                this text

UNLEARNBENCH_NUMERICS=native (environment) turns off the reproducible CPU numerics: by default torch's and
MKL's kernels are pinned to AVX2 so that every x86 CPU computes the same numbers (unlearnbench/numerics.py).

The schema of every key is in unlearnbench/config.py (a task family's own keys in benchmarks/<task>.py); the
method hyperparameters in methods/<method>.py; every option explained: docs/options.md."""


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--help" in argv or "-h" in argv:
        print(HELP.format(experiments=", ".join(available("experiment")), methods=", ".join(sorted(METHODS)),
                          models=", ".join(available("model")), tasks=", ".join(available("task"))))
        return {}
    args, flags = arguments(argv, ("--fresh",))
    began = time.perf_counter()

    # 1-2. config, tasks and every world's data checked, then threads, devices and the cache (orchestration/start.py)
    cfg = load_config(args)
    run = start(cfg, fresh="--fresh" in flags)
    out = cfg.resolved_output_dir()
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", dump_yaml(cfg))

    # 3-5. per world and task: data, base -> target and retain, every method, metrics (orchestration/benchmark.py)
    done = worlds.summarize(cfg, [(w.index, run_tasks(w, run)) for w in run.worlds])
    records, datasets, per_item = done["records"], done["datasets"], done["per_item"]

    # 6. results files
    payload = {"experiment": cfg.name, "config": to_dict(cfg), "versions": environment.describe(),
               "runtime": {"torch_threads": run.threads, "processes": run.accelerator.num_processes,
                           "numerics": numerics.describe(), "timing": done["timing"],
                           "wall_seconds": time.perf_counter() - began},
               "datasets": datasets, "results": records, "per_item": per_item,
               **({"worlds": done["worlds"]} if done["worlds"] else {})}
    if run.accelerator.is_main_process:
        write_results(out, payload)
        print(leaderboard(records, datasets))
        print(f"\nresults written to {out}/")
    run.accelerator.end_training()          # closes the trackers' files, if any
    return payload


def run_tasks(world: World, run: Started) -> dict:
    """Every task of one world: {"records", "datasets", "per_item", "timing"} (timing: run_task's, per task)."""
    records, datasets, per_item, timing = [], {}, {}, {}
    for label, task in world.tasks.items():
        protocol = run_requests if world.cfg.requests.folds else run_task
        done = protocol(world.cfg, task, world.data[label], run.store, run.accelerator)
        records += done["records"]
        task_label = done["records"][0]["task"]
        datasets[task_label] = done["dataset"]
        per_item[task_label] = done["per_item"]
        if "timing" in done:
            timing[task_label] = done["timing"]
    return {"records": records, "datasets": datasets, "per_item": per_item, "timing": timing}


def cli(argv: list[str] | None = None) -> int:
    return cli_errors(main, list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(cli())
