"""Threads stepping one scheduler while others change its optimizer and state never crash it.

Every point where a step can run Python code (csrc/families/, csrc/py/: a finalizer, the garbage collector,
a user's key or callable) is also a point where another thread can take the GIL, so a race is the
re-entry of tests/test_reentry.py made random: two threads step one scheduler while two others add and
delete param groups, set `group["lr"]` to floats, ints and tensors, load state dicts into the
optimizer and the scheduler and keep the `_last_lr` lists a step gave, and a fifth makes cyclic garbage whose finalizers let other threads run
(so that the collector, started by an allocation in the middle of a step, hands the GIL over there),
with the interpreter switching threads as often as it can. The run passes
when nothing crashes and every exception raised is one torch's own schedulers raise in the same race
(RACE_ERRORS). Run under `make sanitize` (AddressSanitizer), a stray read or write past a list's end or
of a freed object is reported even where it does not crash.
"""
from __future__ import annotations

import gc
import random
import sys
import threading
import time
import warnings

import pytest
import torch

import schedx.lr_scheduler as schedx_lr
from test_reentry import BUILDERS, make_optimizer, step

# What a step raises when the groups or the state change under it, as torch's own code raises it
# (measured in this race: torch's schedulers raised ValueError and KeyError, schedx's these and the
# others below, from torch's own code or schedx's tensor mode): ValueError (zip(..., strict=True) over lists of different lengths, a state dict with
# another group count, OneCycleLR stepped past total_steps after a state dict rewound it), KeyError (a
# new group without "initial_lr", "max_lr" or "swa_lr"; a state dict without an attribute), IndexError
# (torch's ReduceLROnPlateau._reduce_lr, min_lrs shorter than the groups), RuntimeError (tensor
# arithmetic on rows of different lengths when a tensor LR moves schedx to tensor mode while a group is
# added, and schedx's "changed while a scheduler step was writing them"), ZeroDivisionError (torch's
# CosineAnnealingLR.get_lr when last_epoch moves between its branch for a zero denominator and its
# division: seen once, under AddressSanitizer).
RACE_ERRORS = (IndexError, KeyError, ValueError, RuntimeError, ZeroDivisionError)
SECONDS_PER_CLASS = 0.12


_LOGGED: list = []


def _mutate(opt, sched, saved_opt, saved_sched, rng: random.Random) -> None:
    groups = opt.param_groups
    choice = rng.randrange(8)
    if choice == 0:
        opt.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.05})
    elif choice == 1 and len(groups) > 1:
        del groups[rng.randrange(len(groups))]
    elif choice == 2:
        groups[rng.randrange(len(groups))]["lr"] = rng.random()
    elif choice == 3:
        groups[rng.randrange(len(groups))]["lr"] = rng.randrange(1, 3)
    elif choice == 4:
        groups[rng.randrange(len(groups))]["lr"] = torch.tensor(rng.random())
    elif choice == 5:
        opt.load_state_dict(saved_opt)
    elif choice == 6:
        sched.load_state_dict(saved_sched)
    else:
        # Logging keeps the lists a step gave (the next step then builds new ones, not refills them).
        _LOGGED[:] = [sched.get_last_lr(), *(c.get_last_lr() for c in getattr(sched, "_schedulers", ()))]


class _CyclicGarbage:
    """Garbage only the cyclic collector frees: its finalizer then runs inside whichever allocation
    started the collection (a step's new list, say) and lets other threads run (sleep(0) releases the
    GIL), as a tensor's deallocation or any finalizer that waits can."""

    def __init__(self):
        self.me = self

    def __del__(self):
        time.sleep(0)


def _make_garbage() -> None:
    for _ in range(50):
        _CyclicGarbage()


def _loop(stop: threading.Event, errors: list, action) -> None:
    while not stop.is_set():
        try:
            action()
        except RACE_ERRORS:
            pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            errors.append(e)
            return


def _race(L, name: str, seed: int) -> list:
    opt = make_optimizer()
    sched = BUILDERS[name](L, opt)
    step(sched)
    step(sched)
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    rng = random.Random(seed)
    stop = threading.Event()
    errors: list = []
    actions = [lambda: step(sched, rng.random())] * 2 + [
        lambda: _mutate(opt, sched, saved_opt, saved_sched, rng)
    ] * 2 + [_make_garbage]
    threads = [threading.Thread(target=_loop, args=(stop, errors, a)) for a in actions]
    for t in threads:
        t.start()
    time.sleep(SECONDS_PER_CLASS)
    stop.set()
    for t in threads:
        t.join()
    return errors


@pytest.fixture
def frequent_switches():
    """Threads switched as often as the interpreter can, and the cyclic collector run every 50
    allocations of tracked objects, so that its finalizers run inside the engine's allocations."""
    interval, thresholds = sys.getswitchinterval(), gc.get_threshold()
    sys.setswitchinterval(1e-6)
    gc.set_threshold(50)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        gc.set_threshold(*thresholds)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_threads_stepping_and_mutating_raise_only_torchs_race_errors(name, frequent_switches):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errors = _race(schedx_lr, name, seed=len(name))
    assert errors == []

