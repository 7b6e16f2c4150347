"""Membership attacks, LiRA and the distributional score (evals/privacy.py) against hand-computed values and
worked examples; the population machinery (orchestration/populations.py) end to end on the smoke world."""
import math
import zlib

import numpy as np
import pytest
import torch

from evals import privacy


def test_single_model_attacks_by_hand():
    logp = [-0.1, -2.0, -0.5, -4.0, -0.2]
    assert privacy.loss(logp) == pytest.approx(-6.8 / 5)
    assert privacy.zlib_ratio(logp, "abc") == pytest.approx((-6.8 / 5) / len(zlib.compress(b"abc")))
    # Min-K% with k = 0.4 of the 4 answer tokens (the last label, EOS, is not scored): the least likely, -4.0
    assert privacy.min_k(logp) == pytest.approx(-4.0)
    # an EOS the model finds very unlikely changes nothing: only the text's tokens count
    assert privacy.min_k(logp[:-1] + [-9.0]) == privacy.min_k(logp)
    assert privacy.min_k([-0.1, -2.0, -0.5, -4.0, -3.0, -0.2]) == pytest.approx(-3.5)    # 5 tokens: 2 lowest
    assert privacy.min_k([-1.0]) == -1.0                       # at least one token
    # Min-K%++: (logp - mu) / sigma per answer token (EOS not scored), then the lowest 40 %
    mu, sigma = [-1.0] * 5, [0.5, 1.0, 0.5, 2.0, 1.0]
    z = sorted([(-0.1 + 1) / 0.5, (-2.0 + 1) / 1.0, (-0.5 + 1) / 0.5, (-4.0 + 1) / 2.0])
    assert privacy.min_k_pp(logp, mu, sigma) == pytest.approx(z[0])
    assert privacy.min_k_pp(logp[:-1] + [-9.0], mu, sigma[:-1] + [0.01]) == privacy.min_k_pp(logp, mu, sigma)
    assert privacy.reference(logp, [-1.0] * 5) == pytest.approx(-6.8 / 5 + 1.0)


def test_memorization_by_hand():
    # argmax hits per label token; the last one is EOS and does not count
    assert privacy.exact_memorization([True, False, True, True, False]) == pytest.approx(3 / 4)
    # 1 - k / L: L = 4 answer tokens, matching from position 2 to the end -> k = 2
    assert privacy.extraction_strength([False, False, True, True, False]) == pytest.approx(0.5)
    assert privacy.extraction_strength([True, True, True, True, True]) == 1.0
    # not even the last answer token is the argmax: k = L, strength 0 (open-unlearning's loop would give 1/L)
    assert privacy.extraction_strength([True, True, True, False, True]) == 0.0
    assert privacy.extraction_strength([True, True, True, False, False]) == 0.0


def test_auc_tpr_and_priv_leak_by_hand():
    members, others = [0.9, 0.8, 0.3], [0.1, 0.4, 0.2]
    # 9 member/non-member pairs, one of them misordered (0.3 < 0.4)
    assert privacy.auc(members, others) == pytest.approx(8 / 9)
    assert privacy.auc(others, members) == pytest.approx(1 / 9)
    # FPR 0: the threshold above 0.4 keeps 2 of 3 members
    assert privacy.tpr_at_fpr(members, others, 0.01) == pytest.approx(2 / 3)
    assert privacy.tpr_at_fpr(members, others, 1 / 3) == pytest.approx(1.0)
    # PrivLeak in MUSE's orientation: a perfectly memorised forget set (AUC 1) against a retain model at 0.5 is
    # -100, the retain model itself 0, over-unlearning (the forget set looks less trained-on than unseen data) > 0
    assert privacy.priv_leak(1.0, 0.5) == pytest.approx(-100.0)
    assert privacy.priv_leak(0.75, 0.5) == pytest.approx(-50.0)
    assert privacy.priv_leak(0.5, 0.5) == 0.0
    assert privacy.priv_leak(0.3, 0.5) == pytest.approx(40.0)
    assert privacy.priv_leak(0.6, 0.6) == 0.0 and privacy.priv_leak(1.0, 0.6) == pytest.approx(-100.0)
    with pytest.raises(ValueError, match="undefined"):
        privacy.priv_leak(0.9, 1.0)
    with pytest.raises(ValueError, match="both forget and holdout"):
        privacy.auc([], others)


def test_logit_confidence_and_lira():
    assert privacy.logit_confidence([math.log(0.5)])[0] == pytest.approx(0.0, abs=1e-12)
    assert privacy.logit_confidence([-1.0])[0] == pytest.approx(-1.0 - math.log(1 - math.exp(-1.0)))
    rng = np.random.default_rng(0)
    n, shadows = 40, 16
    member = np.zeros((shadows, n), dtype=bool)
    for j in range(n):
        member[rng.choice(shadows, shadows // 2, replace=False), j] = True
    base = rng.normal(size=n)                        # per-example difficulty
    phi = base + 3.0 * member + rng.normal(scale=0.3, size=member.shape)
    target_in = np.arange(n) < n // 2                # the attacked model trained on the first half
    target = base + 3.0 * target_in + rng.normal(scale=0.3, size=n)
    online, offline = privacy.lira(target, phi, member)
    assert privacy.auc(online[target_in], online[~target_in]) > 0.95
    assert privacy.auc(offline[target_in], offline[~target_in]) > 0.95
    with pytest.raises(ValueError, match="in at least one shadow"):
        privacy.lira(target, phi, np.ones_like(member))


def test_epsilon_of_one_attack_worked_examples():
    # FPR 0.1, FNR 0.2: max(log(0.9 - d) - log 0.2, log(0.8 - d) - log 0.1) = log 8 (to d)
    assert privacy._eps(0.1, 0.2, 1e-5) == pytest.approx(math.log(0.8 - 1e-5) - math.log(0.1))
    assert privacy._eps(0.0, 0.0, 1e-5) == math.inf            # perfect attack
    assert privacy._eps(0.0, 0.3, 1e-5) is None                # exactly one rate 0: dropped
    assert privacy._eps(0.5, 0.5, 1e-5) == 0.0                 # a coin flip: clipped at 0


def test_bins_and_points():
    assert privacy.bins(512) == 13                              # the challenge's 13 bins at N = 512
    assert privacy.bins(9) == 5
    assert privacy.points(0.2, 512) == 1.0
    assert privacy.points(0.7, 512) == 0.5
    assert privacy.points(1.2, 512) == 0.25
    assert privacy.points(50.0, 9) == pytest.approx(2 / 2 ** 5)  # the open-ended last bin


def test_forgetting_score_at_both_ends():
    """Identical populations score near 1, perfectly separated ones the last bin; in between, in between."""
    rng = np.random.default_rng(0)
    n, examples = 16, 30
    same, _ = privacy.forgetting_score(rng.normal(size=(n, examples)), rng.normal(size=(n, examples)))
    apart, eps = privacy.forgetting_score(rng.normal(size=(n, examples)) + 20, rng.normal(size=(n, examples)))
    shifted, _ = privacy.forgetting_score(rng.normal(size=(n, examples)) + 1.5, rng.normal(size=(n, examples)))
    assert same >= 0.8
    assert apart == pytest.approx(2 / 2 ** privacy.bins(n)) and all(e == privacy.CAP for e in eps)
    assert apart < shifted < same
    with pytest.raises(ValueError, match="at least 4 models"):
        privacy.epsilon([1.0, 2.0], [1.0, 2.0, 3.0, 4.0])


@pytest.mark.pipeline
def test_populations_and_shadow_models_end_to_end(smoke_root, tmp_path):
    """privacy.population / privacy.shadow_models on the smoke world (its base, target and retain cached by
    tests/test_end_to_end.py): every population member and shadow model is a cached unit, the distributional and
    LiRA columns reach the results, and the untouched target scores below the independent retain population."""
    import run_benchmark
    args = ["experiment=smoke", "methods=GradAscent", "privacy.population=4", "privacy.shadow_models=2",
            f"cache_dir={smoke_root / 'cache'}"]
    rows = {r["model"]: r["metrics"] for r in run_benchmark.main(args + [f"output_dir={tmp_path / 'out'}"])["results"]}
    n_bins = privacy.bins(4)
    for row in ("target", "retain", "GradAscent"):
        m = rows[row]
        assert m["dist_models"] == 4 and m["lira_shadow_models"] == 2
        assert 2 / 2 ** n_bins <= m["dist_forgetting"] <= 1.0
        assert 0.0 <= m["lira_auc"] <= 1.0 and 0.0 <= m["lira_tpr_at_0.01"] <= 1.0
    assert rows["target"]["dist_forgetting"] < rows["retain"]["dist_forgetting"]
    assert rows["target"]["lira_auc"] > 0.9
    units = {p.parent.parent.name for p in (smoke_root / "cache").rglob("DONE")}
    assert {"finetuned", "eval", "row"} <= units
    # a rerun finds every member cached and gives the same numbers
    rerun = run_benchmark.main(args + [f"output_dir={tmp_path / 'again'}"])
    again = {r["model"]: r["metrics"] for r in rerun["results"]}
    assert again == rows


@pytest.mark.pipeline
def test_shadow_models_through_lora(smoke_root):
    """privacy.shadow_lora_lr: a shadow model trains a LoRA adapter, merged into the saved weights. Only the
    adapted projections move; embeddings and norms stay the base's. It is its own cached unit."""
    from accelerate import Accelerator
    from safetensors.torch import load_file

    from orchestration.pipeline import Pipeline, Recipe
    from unlearnbench.cache import UnitStore
    from unlearnbench.config import load_config
    from unlearnbench.tasks import build_task
    cfg = load_config(["experiment=smoke", "privacy.shadow_lora_lr=1e-2", f"cache_dir={smoke_root / 'cache'}"])
    label, section = next(iter(cfg.tasks.items()))
    task = build_task(label, section)
    pipe = Pipeline(cfg, task, task.load(cfg.resolved_cache_dir() / "tasks"), UnitStore(cfg.resolved_cache_dir()),
                    Accelerator())
    base, rows = pipe.base(), list(pipe.data.retain)[:8]
    lora = pipe.finetuned(base, "shadow", seed=7, recipe=Recipe(rows=rows, lora_lr=cfg.privacy.shadow_lora_lr))
    full = pipe.finetuned(base, "shadow", seed=7, recipe=Recipe(rows=rows))
    assert lora.path != full.path
    before, after = (load_file(f"{ref.path}/model.safetensors") for ref in (base, lora))
    assert after.keys() == before.keys()        # merged: a plain model, no adapter weights
    moved = {name for name in before if not torch.equal(before[name], after[name])}
    assert moved and all(any(m in name for m in cfg.lora_cfg.target_modules) for name in moved), moved
    assert not any("embed" in name or "norm" in name for name in moved)


def test_privacy_settings_fail_early():
    from unlearnbench.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="at least 4 models"):
        load_config(["experiment=smoke", "privacy.population=3"])
    with pytest.raises(ConfigError, match="at least 2"):
        load_config(["experiment=smoke", "privacy.shadow_models=1"])
    with pytest.raises(ConfigError, match="shadow_lora_lr"):
        load_config(["experiment=smoke", "privacy.shadow_lora_lr=-1"])
