"""The DPO objective (Rafailov et al. 2023) each value policy is trained with:

L = -log sigmoid(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))]);
at initialisation (pi = ref) every margin is 0 and L = ln 2.
"""

from __future__ import annotations

from typing import Any


def dpo_loss(policy_chosen: Any, policy_rejected: Any, ref_chosen: Any, ref_rejected: Any, beta: float = 0.1, label_smoothing: float = 0.0) -> tuple[Any, Any]:
    """Sigmoid DPO loss per pair (with optional conservative label smoothing) and the implicit reward margin."""
    import torch.nn.functional as F

    logits = beta * ((policy_chosen - ref_chosen) - (policy_rejected - ref_rejected))
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return loss, logits
