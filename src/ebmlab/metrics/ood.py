"""OOD scores of a JEM's logits: log p(x), max p(y|x) and the input-gradient norm."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ebmlab._validation import check_positive_int

if TYPE_CHECKING:
    from ebmlab.models.jem import JEM

OOD_SCORES = ("log_px", "max_py", "grad_norm")


def ood_scores(model: JEM, x: torch.Tensor, *, batch_size: int = 500) -> dict[str, torch.Tensor]:
    r"""Per-input OOD scores, higher meaning "more in-distribution".

    Notes
    -----
    ``log_px`` :math:`= \mathrm{LSE}_y f(x)[y] = \log p(x) + \log Z`;
    ``max_py`` :math:`= \max_y p(y|x)`; ``grad_norm``
    :math:`= -\lVert \nabla_x \log p(x) \rVert_2` (JEM's "approximate mass":
    typical inputs sit where the density is flat).

    References
    ----------
    Grathwohl, W. et al. (2020). ICLR, section 5.3 and Table 3.
    """
    check_positive_int("batch_size", batch_size)
    out: dict[str, list[torch.Tensor]] = {name: [] for name in OOD_SCORES}
    for chunk in x.split(batch_size):
        with torch.enable_grad():
            chunk = chunk.detach().requires_grad_(True)
            logits = model.logits(chunk)
            log_px = torch.logsumexp(logits, dim=1)
            (grad,) = torch.autograd.grad(log_px.sum(), chunk)
        out["log_px"].append(log_px.detach())
        out["max_py"].append(torch.softmax(logits.detach(), dim=1).max(dim=1).values)
        out["grad_norm"].append(-grad.flatten(1).norm(dim=1))
    return {name: torch.cat(values).cpu() for name, values in out.items()}
