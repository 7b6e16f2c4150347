"""NPO with sharpness-aware minimisation on the forget loss (Fan et al. 2025, "Towards LLM Unlearning Resilient to
Relearning Attacks: A Sharpness-Aware Minimization Perspective and Beyond", ICML; OPTML-Group/Unlearn-Smooth):
the NPO forget loss's gradient is taken at the worst nearby weights theta + rho g / |g| (g its gradient at theta),
the retain NLL's at theta; a flatter forget minimum is meant to resist relearning."""
from __future__ import annotations

from dataclasses import dataclass

from methods import method
from methods.common import nll, sequence_logprob
from methods.npo import npo_loss
from unlearnbench.config import ConfigError
from unlearnbench.heavy import torch


@dataclass
class NPOSAMConfig:
    lr: float = 1e-5        # Unlearn-Smooth WMDP/configs/unlearn/wmdp/NPO+SAM.json
    beta: float = 0.1       # idem (NPO's)
    alpha: float = 1.0      # retain weight ("gamma" there)
    rho: float = 0.01       # perturbation radius: Unlearn-Smooth MUSE/baselines/unlearn.py (its WMDP config: 0.1)

    def __post_init__(self):
        if not self.rho >= 0:
            raise ConfigError(f"method_args.NPO_SAM.rho={self.rho}: expected a perturbation radius >= 0 (0: NPO "
                              f"and its retain term without the perturbation; a negative one would move the weights "
                              f"downhill, to a nearby minimum instead of the worst nearby point)")


def sam_gradient(params: list, loss_fn, rho: float):
    """(d loss / d theta at theta + rho g/|g|, loss there), g = d loss / d theta at theta; the weights are moved
    in place and moved back (as the reference does)."""
    found = torch.autograd.grad(loss_fn(), params, allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)]
    scale = rho / torch.stack([g.norm() for g in grads]).norm().clamp(min=1e-12)
    steps = [g * scale for g in grads]
    with torch.no_grad():
        for p, e in zip(params, steps):
            p.add_(e)
    try:
        perturbed = loss_fn()
        found = torch.autograd.grad(perturbed, params, allow_unused=True)
    finally:
        with torch.no_grad():
            for p, e in zip(params, steps):
                p.sub_(e)
    return [torch.zeros_like(p) if g is None else g for p, g in zip(params, found)], perturbed.detach()


@method("NPO_SAM", NPOSAMConfig, needs_ref=True)
def npo_sam(model, batch, ref, cfg: NPOSAMConfig):
    forget = batch["forget"]
    # the two forget passes run on the bare module: the one backward the trainer takes is the wrapper's
    core = model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
    ref_logp = ref.sequence_logprob(forget)

    def forget_loss():
        logits = core(input_ids=forget["input_ids"], attention_mask=forget["attention_mask"]).logits
        return npo_loss(sequence_logprob(logits, forget["labels"]), ref_logp, cfg.beta)
    params = [p for p in model.parameters() if p.requires_grad]
    grads, perturbed = sam_gradient(params, forget_loss, cfg.rho)
    retain = nll(model, batch["retain"])
    # a loss whose value is the perturbed forget loss + alpha retain, and whose gradient is grads + alpha d retain
    linear = sum((p * g).sum() for p, g in zip(params, grads))
    loss = linear - linear.detach() + perturbed + cfg.alpha * retain
    return loss, {"npo_perturbed": perturbed.item(), "retain_nll": retain.item()}
