"""The schedule families people use: transformers' schedule functions and timm's cosine, written as
their step functions and traced into schedules.
"""
from __future__ import annotations

import math

from ._expression import Schedule, base_lr, step
from ._primitives import _positive_steps
from ._tracer import _trace_paths, _traceable

# Written as the step functions of transformers' schedules (optimization.py), in the same operations
# and order, and traced: their values are those functions' values, bit for bit.


def _constant_with_warmup(current_step, *, num_warmup_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1.0, num_warmup_steps))
    return 1.0


def _linear_with_warmup(current_step, *, num_warmup_steps, num_training_steps):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))


def _cosine_with_warmup(current_step, *, num_warmup_steps, num_training_steps, num_cycles, min_lr_rate):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
    factor = factor * (1 - min_lr_rate) + min_lr_rate
    return max(0, factor)


def _cosine_with_hard_restarts(current_step, *, num_warmup_steps, num_training_steps, num_cycles):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    progress = float(current_step - num_warmup_steps) / float(max(1, num_training_steps - num_warmup_steps))
    if progress >= 1.0:
        return 0.0
    return max(0.0, 0.5 * (1.0 + math.cos(math.pi * ((float(num_cycles) * progress) % 1.0))))


def _polynomial_decay_with_warmup(current_step, *, num_warmup_steps, num_training_steps, lr_end, power, lr_init):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    elif current_step > num_training_steps:
        return lr_end / lr_init
    else:
        lr_range = lr_init - lr_end
        decay_steps = num_training_steps - num_warmup_steps
        pct_remaining = 1 - (current_step - num_warmup_steps) / decay_steps
        decay = lr_range * pct_remaining**power + lr_end
        return decay / lr_init


def _inverse_sqrt(current_step, *, num_warmup_steps, timescale):
    if current_step < num_warmup_steps:
        return float(current_step) / float(max(1, num_warmup_steps))
    shift = timescale - num_warmup_steps
    return 1.0 / math.sqrt((current_step + shift) / timescale)


def _warmup_stable_decay(
    current_step, *, num_warmup_steps, num_stable_steps, num_decay_steps, warmup_type, decay_type,
    min_lr_ratio, num_cycles,
):
    if current_step < num_warmup_steps:
        progress = float(current_step) / float(max(1, num_warmup_steps))
        if warmup_type == "linear":
            factor = progress
        elif warmup_type == "cosine":
            factor = 0.5 * (1.0 - math.cos(math.pi * progress))
        else:
            factor = 1.0 - math.sqrt(1.0 - progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    if current_step < num_warmup_steps + num_stable_steps:
        return 1.0
    if current_step < num_warmup_steps + num_stable_steps + num_decay_steps:
        progress = float(current_step - num_warmup_steps - num_stable_steps) / float(max(1, num_decay_steps))
        if decay_type == "linear":
            factor = 1.0 - progress
        elif decay_type == "cosine":
            factor = 0.5 * (1.0 + math.cos(math.pi * float(num_cycles) * 2.0 * progress))
        else:
            factor = 1.0 - math.sqrt(progress)
        factor = factor * (1.0 - min_lr_ratio) + min_lr_ratio
        return max(0.0, factor)
    return min_lr_ratio


def _family(fn, *args, **settings) -> Schedule:
    """A family's step function with these settings, traced (with `args` after the step)."""
    traced = _traceable(fn)[0]
    return _trace_paths(lambda: traced(step(), *args, **settings))


def _non_negative_int(value, name: str) -> None:
    if type(value) is not int or value < 0:
        raise ValueError(f"{name} must be a non-negative int, got {value!r}")


def constant_with_warmup(num_warmup_steps: int) -> Schedule:
    """transformers' get_constant_schedule_with_warmup: a linear rise over the warmup, then 1.

        value = step / max(1, num_warmup_steps)   for step < num_warmup_steps, else 1

    `num_warmup_steps` is a non-negative int (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.constant_with_warmup(10)
    >>> s(5), s(50)
    (0.5, 1.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(_constant_with_warmup, num_warmup_steps=num_warmup_steps)


def linear_with_warmup(num_warmup_steps: int, num_training_steps: int) -> Schedule:
    """transformers' get_linear_schedule_with_warmup: up over the warmup, then down to 0 linearly.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, (training - step) / max(1, training - warmup))    after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.linear_with_warmup(10, 110)
    >>> s(5), s(60), s(200)
    (0.5, 0.5, 0.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(_linear_with_warmup, num_warmup_steps=num_warmup_steps, num_training_steps=num_training_steps)


def cosine_with_warmup(num_warmup_steps: int, num_training_steps: int, num_cycles: float = 0.5) -> Schedule:
    """transformers' get_cosine_schedule_with_warmup: a linear warmup, then a cosine to 0.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, 0.5 * (1 + cos(pi * num_cycles * 2 * progress)))  after,
        progress = (step - warmup) / max(1, training - warmup)

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`). The default ``num_cycles=0.5`` is half a cosine, from 1 to 0; the cosine is
    Loshchilov & Hutter's (SGDR, ICLR 2017).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_warmup(10, 110)
    >>> s(5), s(60)
    (0.5, 0.5)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
        min_lr_rate=0.0,
    )


def cosine_with_hard_restarts(num_warmup_steps: int, num_training_steps: int, num_cycles: int = 1) -> Schedule:
    """transformers' get_cosine_with_hard_restarts_schedule_with_warmup: a linear warmup, then
    `num_cycles` half-cosines from 1 to 0, each restarting at 1 (SGDR's warm restarts, Loshchilov &
    Hutter, ICLR 2017), then 0.

        value = step / max(1, warmup)                                    for step < warmup
        value = max(0, 0.5 * (1 + cos(pi * ((num_cycles * progress) % 1))))   while progress < 1
        value = 0                                                        from progress = 1 on,
        progress = (step - warmup) / max(1, training - warmup)

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_hard_restarts(10, 110, num_cycles=2)
    >>> s(35), s(60), s(110)
    (0.5, 1.0, 0.0)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_hard_restarts,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
    )


def polynomial_decay_with_warmup(
    num_warmup_steps: int, num_training_steps: int, lr_init: float, lr_end: float = 1e-7, power: float = 1.0
) -> Schedule:
    """transformers' get_polynomial_decay_schedule_with_warmup; `lr_init` is the optimizer's default
    LR there (``optimizer.defaults["lr"]``), which must be larger than `lr_end` (ValueError otherwise).

        value = step / max(1, warmup)                                           for step < warmup
        value = ((lr_init - lr_end) * (1 - (step - warmup) / (training - warmup)) ** power
                 + lr_end) / lr_init                                            up to training
        value = lr_end / lr_init                                                after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise; training =
    `num_training_steps`).

    >>> from schedx import schedules as S
    >>> s = S.polynomial_decay_with_warmup(10, 110, lr_init=1e-3, lr_end=1e-5, power=2.0)
    >>> s(60), s(200)
    (0.2575, 0.01)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    if not lr_init > lr_end:
        raise ValueError(f"lr_end ({lr_end}) must be smaller than initial lr ({lr_init})")
    return _family(
        _polynomial_decay_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        lr_end=lr_end,
        power=power,
        lr_init=lr_init,
    )


def inverse_sqrt(num_warmup_steps: int, timescale: int | None = None) -> Schedule:
    """transformers' get_inverse_sqrt_schedule (timescale defaults to the warmup, or 10,000).

        value = step / max(1, warmup)                                     for step < warmup
        value = 1 / sqrt((step + timescale - warmup) / timescale)         after

    (warmup = `num_warmup_steps`, a non-negative int, ValueError otherwise). The inverse square root
    decay after a linear warmup is the Transformer's, Vaswani et al., "Attention Is All You Need" (2017).

    >>> from schedx import schedules as S
    >>> s = S.inverse_sqrt(100)
    >>> s(50), s(100), s(400)
    (0.5, 1.0, 0.5)
    """
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    if timescale is None:
        timescale = num_warmup_steps or 10_000
    return _family(_inverse_sqrt, num_warmup_steps=num_warmup_steps, timescale=timescale)


def warmup_stable_decay(
    num_warmup_steps: int,
    num_decay_steps: int,
    num_training_steps: int | None = None,
    num_stable_steps: int | None = None,
    warmup_type: str = "linear",
    decay_type: str = "cosine",
    min_lr_ratio: float = 0,
    num_cycles: float = 0.5,
) -> Schedule:
    """transformers' get_wsd_schedule: warmup, a plateau at 1, a decay to `min_lr_ratio`. Give
    `num_training_steps` (the plateau is what the warmup and decay leave) or `num_stable_steps`
    (exactly one: ValueError otherwise).

        warmup (step < W):      value = max(0, f_w(step / max(1, W)) * (1 - min_lr_ratio) + min_lr_ratio)
        stable (up to W + S):   value = 1
        decay (up to W + S + D): value = max(0, f_d(p) * (1 - min_lr_ratio) + min_lr_ratio),
                                p = (step - W - S) / max(1, D)
        after:                  value = min_lr_ratio

    with W, S, D the warmup, stable and decay steps; f_w(p) is p ("linear"), 0.5 * (1 - cos(pi * p))
    ("cosine") or 1 - sqrt(1 - p) ("1-sqrt"), and f_d(p) is 1 - p ("linear"),
    0.5 * (1 + cos(pi * num_cycles * 2 * p)) ("cosine") or 1 - sqrt(p) ("1-sqrt"); `warmup_type` and
    `decay_type` must be one of the three and `num_warmup_steps` a non-negative int (ValueError
    otherwise). The warmup-stable-decay schedule is from Hu et al., "MiniCPM" (2024).

    >>> from schedx import schedules as S
    >>> s = S.warmup_stable_decay(10, 20, num_training_steps=100)
    >>> s(5), s(50), s(90)
    (0.5, 1.0, 0.5)
    """
    if (num_training_steps is None) == (num_stable_steps is None):
        raise ValueError("give exactly one of num_training_steps and num_stable_steps")
    if num_stable_steps is None:
        num_stable_steps = num_training_steps - num_warmup_steps - num_decay_steps
    for name, kind in (("warmup_type", warmup_type), ("decay_type", decay_type)):
        if kind not in ("linear", "cosine", "1-sqrt"):
            raise ValueError(f"{name} must be linear, cosine or 1-sqrt, got {kind!r}")
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _warmup_stable_decay,
        num_warmup_steps=num_warmup_steps,
        num_stable_steps=num_stable_steps,
        num_decay_steps=num_decay_steps,
        warmup_type=warmup_type,
        decay_type=decay_type,
        min_lr_ratio=min_lr_ratio,
        num_cycles=num_cycles,
    )


def cosine_with_min_lr(
    num_warmup_steps: int,
    num_training_steps: int,
    num_cycles: float = 0.5,
    min_lr: float | None = None,
    min_lr_rate: float | None = None,
    lr_init: float | None = None,
) -> Schedule:
    """transformers' get_cosine_with_min_lr_schedule_with_warmup: the cosine ends at `min_lr_rate` of the
    initial LR (or at `min_lr`, given `lr_init`, the optimizer's default LR, as transformers divides).

        value = step / max(1, warmup)                                           for step < warmup
        value = max(0, c * (1 - min_lr_rate) + min_lr_rate)                     after,
        c = 0.5 * (1 + cos(pi * num_cycles * 2 * progress)),
        progress = (step - warmup) / max(1, training - warmup)

    Give exactly one of `min_lr` and `min_lr_rate`, and `lr_init` with `min_lr`; `num_warmup_steps` is
    a non-negative int (ValueError otherwise).

    >>> from schedx import schedules as S
    >>> s = S.cosine_with_min_lr(10, 110, min_lr_rate=0.1)
    >>> s(60), s(110)
    (0.55, 0.1)
    """
    if (min_lr is None) == (min_lr_rate is None):
        raise ValueError("give exactly one of min_lr and min_lr_rate")
    if min_lr is not None:
        if lr_init is None:
            raise ValueError("min_lr needs lr_init (the optimizer's default LR) to become a rate")
        min_lr_rate = min_lr / lr_init
    _non_negative_int(num_warmup_steps, "num_warmup_steps")
    return _family(
        _cosine_with_warmup,
        num_warmup_steps=num_warmup_steps,
        num_training_steps=num_training_steps,
        num_cycles=num_cycles,
        min_lr_rate=min_lr_rate,
    )


def _timm_cosine(
    t, base, *, t_initial, lr_min, cycle_mul, cycle_decay, cycle_limit, warmup_t, warmup_lr_init,
    warmup_prefix, k_decay,
):
    # timm's CosineLRScheduler._get_lr for one group whose base value is `base`.
    if t < warmup_t:
        return warmup_lr_init + t * ((base - warmup_lr_init) / warmup_t)
    if warmup_prefix:
        t = t - warmup_t
    if cycle_mul != 1:
        i = math.floor(math.log(1 - t / t_initial * (1 - cycle_mul), cycle_mul))
        t_i = cycle_mul**i * t_initial
        t_curr = t - (1 - cycle_mul**i) / (1 - cycle_mul) * t_initial
    else:
        i = t // t_initial
        t_i = t_initial
        t_curr = t - (t_initial * i)
    gamma = cycle_decay**i
    lr_max = base * gamma
    if i < cycle_limit:
        return lr_min + 0.5 * (lr_max - lr_min) * (1 + math.cos(math.pi * t_curr**k_decay / t_i**k_decay))
    return lr_min


def timm_cosine(
    t_initial: int,
    lr_min: float = 0.0,
    cycle_mul: float = 1.0,
    cycle_decay: float = 1.0,
    cycle_limit: int = 1,
    warmup_t: int = 0,
    warmup_lr_init: float = 0.0,
    warmup_prefix: bool = False,
    k_decay: float = 1.0,
) -> Schedule:
    """timm's CosineLRScheduler (without noise), per step: an absolute schedule (it mentions base_lr:
    `lr_min` and `warmup_lr_init` are LRs, each group's cosine starts from its initial LR).

        lr = warmup_lr_init + t * (base_lr - warmup_lr_init) / warmup_t              for t < warmup_t
        lr = lr_min + 0.5 * (base_lr * cycle_decay ** i - lr_min)
                    * (1 + cos(pi * t_curr ** k_decay / t_i ** k_decay))             for i < cycle_limit
        lr = lr_min                                                                  after

    where t is the step (less `warmup_t` with `warmup_prefix`), i the cycle it falls in, t_i that
    cycle's length (``t_initial * cycle_mul ** i``) and t_curr the steps into it. `t_initial` is a
    positive int and `lr_min` at least 0 (ValueError otherwise). Cosine annealing with warm restarts
    from Loshchilov & Hutter, "SGDR" (ICLR 2017), as timm's timm.scheduler.CosineLRScheduler runs it.

    >>> from schedx import schedules as S
    >>> s = S.timm_cosine(100, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-6)
    >>> s(0, base_lr=1e-3), s(50, base_lr=1e-3), s(100, base_lr=1e-3)
    (1e-06, 0.000505, 1e-05)
    """
    _positive_steps(t_initial, "t_initial")
    if lr_min < 0:
        raise ValueError(f"lr_min must be >= 0, got {lr_min}")
    settings = dict(
        t_initial=t_initial, lr_min=lr_min, cycle_mul=cycle_mul, cycle_decay=cycle_decay,
        cycle_limit=cycle_limit, warmup_t=warmup_t, warmup_lr_init=warmup_lr_init,
        warmup_prefix=warmup_prefix, k_decay=k_decay,
    )
    return _family(_timm_cosine, base_lr(), **settings)
