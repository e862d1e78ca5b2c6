"""SGLD with a JEM's training settings: samples from the replay buffer and JEM-K refinement.

Functions of a model and its :class:`~ebmlab.training.jem.JEMConfig` (never of a
run folder); the chains are :func:`~ebmlab.training.jem.jem_sampler`'s, as in training.
"""

from __future__ import annotations

import torch

from ebmlab._validation import check_choice, check_nonnegative_int, check_positive_int
from ebmlab.models.jem import JEM
from ebmlab.samplers.base import run_chain
from ebmlab.training.jem import JEMConfig, jem_sampler

SAMPLE_STARTS = ("buffer", "noise")


def draw_samples(
    model: JEM,
    config: JEMConfig,
    buffer: torch.Tensor | None,
    *,
    n: int,
    n_steps: int,
    n_features: int,
    generator: torch.Generator,
    class_: int | None = None,
    start: str = "buffer",
) -> torch.Tensor:
    """``n`` chains of ``n_steps`` SGLD steps on :math:`E(x)` or :math:`E(x, y=class_)`, in [-1, 1].

    Chains start from random slots of the replay ``buffer`` (the class's block
    of a class-conditional one), or from U(-1, 1) when ``start="noise"`` or the
    run has no buffer (a classifier trained with ``p_x_weight = 0``). The step
    size, noise and clamping are ``config``'s; ``generator`` lives on the model's device.
    """
    check_choice("start", start, SAMPLE_STARTS)
    check_nonnegative_int("n_steps", n_steps)
    device = generator.device
    if start == "buffer" and buffer is not None:
        per_class = len(buffer) // model.n_classes if config.class_conditional else len(buffer)
        slots = torch.randint(per_class, (n,), generator=generator, device=device)
        if class_ is not None and config.class_conditional:
            slots = slots + class_ * per_class
        x0 = buffer[slots.to(buffer.device)].to(device)
    else:
        x0 = torch.rand((n, n_features), generator=generator, device=device) * 2 - 1
    y = None if class_ is None else torch.full((n,), class_, dtype=torch.long, device=device)
    sampler = jem_sampler(model, config, y)
    state, _, _ = run_chain(sampler, sampler.init(x0), n_steps, generator=generator)
    return state.x.detach()


def refined_logits(
    model: JEM,
    x: torch.Tensor,
    config: JEMConfig,
    *,
    n_steps: int,
    batch_size: int = 500,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    r"""Logits of inputs first moved ``n_steps`` SGLD steps toward higher :math:`\log p(x)`.

    The chains use ``config``'s step size, noise scale, clamping and sampling
    precision (:func:`~ebmlab.training.jem.jem_sampler`), as in training.

    Notes
    -----
    Each input starts a chain :math:`x_0 = x`,
    :math:`x_{t+1} = x_t - \alpha \nabla_x E(x_t) + \sigma \epsilon_t` with
    :math:`E(x) = -\mathrm{LSE}_y f(x)[y]`, and is classified as
    :math:`\arg\max_y f(x_K)[y]`: the "JEM-K" refinement, which pulls inputs
    off the data manifold (noise, perturbations) back toward regions the model
    assigns high density before classifying them.

    References
    ----------
    Grathwohl, W. et al. (2020). ICLR, section 5.4.
    """
    check_nonnegative_int("n_steps", n_steps)
    check_positive_int("batch_size", batch_size)
    sampler = jem_sampler(model, config)
    out = []
    for chunk in x.split(batch_size):
        state, _, _ = run_chain(sampler, sampler.init(chunk), n_steps, generator=generator)
        with torch.no_grad():
            out.append(model.logits(state.x.detach()))
    return torch.cat(out)
