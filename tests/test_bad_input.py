"""Bad input: schedx raises the same exception type as torch (or, where torch accepts the input,
behaves identically), never crashes, and a call that raises leaves the optimizer's param groups
exactly as before -- wherever torch does.  (Torch itself leaves groups half-updated in a few
failing calls -- e.g. ReduceLROnPlateau with a None lr in a later group, or any class writing
to a group whose "lr" key was deleted; there schedx must leave exactly what torch leaves.)

Exception *messages* are not compared in this file (types are); everything else is.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch

from twins import (
    ALL_NAMES,
    CANONICAL,
    EPOCH_NAMES,
    Sched,
    Sched,
    Twins,
    assert_same,
    param_group_values,
    snapshot_groups,
    value_diffs,
)

MISSING = "<key deleted>"

BAD_LRS = {
    "None": None,
    "str": "0.1",
    "list": [0.1],
    "bool": True,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "negative": -0.5,
    "2-element tensor": torch.tensor([0.1, 0.2]),
    "missing": MISSING,
}


def corrupt(group: dict, key: str, value):
    if value is MISSING:
        group.pop(key, None)
    else:
        group[key] = value.clone() if isinstance(value, torch.Tensor) else copy.deepcopy(value)


def failing_call_leaves_groups_like_torch(tw: Twins, fn, what: str):
    """Run fn on both twins: same exception type; if it raised and torch left the param groups
    untouched, schedx must leave them untouched too; then the full state comparison."""
    before = snapshot_groups(tw.b.opt)
    torch_before = snapshot_groups(tw.a.opt)
    oa, ob = tw.both(fn, what, check=False)
    ctx = tw.context(what)
    torch_untouched = not value_diffs(torch_before, param_group_values(tw.a.opt))
    if ob.exc is not None and torch_untouched:
        assert_same(
            before, param_group_values(tw.b.opt), "param_groups",
            ctx + f"\n  schedx raised {type(ob.exc).__name__} but changed the param groups "
            "(torch left them untouched)",
        )
    tw.check(ctx)
    return oa, ob


def _step(tw: Twins, metric=1.0):
    def fn(side):
        return side.sched.step(metric) if tw.spec.takes_metric else side.sched.step()

    return failing_call_leaves_groups_like_torch(tw, fn, "step()")


def _step_epoch(tw: Twins, epoch, metric=1.0):
    def fn(side):
        if tw.spec.takes_metric:
            return side.sched.step(metric, epoch)
        return side.sched.step(epoch)

    return failing_call_leaves_groups_like_torch(tw, fn, f"step(epoch={epoch!r})")


def _corrupt_both(tw: Twins, group: int, key: str, value):
    tw.do(lambda s: corrupt(s.opt.param_groups[group], key, value),
          f"param_groups[{group}][{key!r}] = {value!r}")


# ---------------------------------------------------------------------------------------------
# A bad "lr" in one group
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_LRS)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_step_with_a_bad_lr_in_one_group_behaves_like_torch(name, bad):
    tw = Twins(CANONICAL[name], n_groups=4, messages=False)
    tw.optimizer_step()
    tw.step(2)
    _corrupt_both(tw, 2, "lr", BAD_LRS[bad])
    for _ in range(3):
        _step(tw)
    if CANONICAL[name].accepts_epoch:
        _step_epoch(tw, 4)  # the closed-form path
        _step(tw)


@pytest.mark.parametrize("bad", BAD_LRS)
@pytest.mark.parametrize("name", ALL_NAMES)
def test_construction_with_a_bad_lr_in_one_group_behaves_like_torch(name, bad):
    tw = Twins(CANONICAL[name], n_groups=3, messages=False, build=False)
    _corrupt_both(tw, 1, "lr", BAD_LRS[bad])

    def build(side):
        side.sched = tw.spec.build(side.impl, side.opt)

    oa, ob = failing_call_leaves_groups_like_torch(tw, build, "construct")
    if oa.exc is None:
        tw.built = True
        tw.check()
        for _ in range(2):
            _step(tw)


# Keys that schedulers read from or write to param groups.
SCHEDULER_GROUP_KEYS = ["initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum",
                        "swa_lr", "momentum", "betas"]
BAD_VALUES = {"None": None, "str": "x", "list": [0.1], "missing": MISSING}


@pytest.mark.parametrize("kind", ["sgd", "adam"])
@pytest.mark.parametrize("name", ALL_NAMES)
def test_bad_scheduler_keys_in_param_groups_behave_like_torch(name, kind):
    """initial_lr / max_lr / min_lr / momentum / betas / swa_lr ... corrupted between steps."""
    failures = []
    probe = Twins(CANONICAL[name], kind=kind, n_groups=3)
    keys = [k for k in SCHEDULER_GROUP_KEYS if k in probe.a.opt.param_groups[1]]
    for key in keys:
        for label, value in BAD_VALUES.items():
            try:
                tw = Twins(CANONICAL[name], kind=kind, n_groups=3, messages=False)
                tw.optimizer_step()
                tw.step(2)
                _corrupt_both(tw, 1, key, value)
                for _ in range(2):
                    _step(tw)
            except AssertionError as e:
                failures.append((f"{key} = {label}", str(e)))
    assert not failures, (
        f"{len(failures)} failing cases: {[label for label, _ in failures]}\n\n"
        + "\n\n".join(f"[{label}] {e}" for label, e in failures[:4])
    )


# ---------------------------------------------------------------------------------------------
# Bad arguments to step()
# ---------------------------------------------------------------------------------------------

BAD_EPOCHS = {"str": "3", "list": [3], "nan": math.nan, "inf": math.inf, "huge": 10**30,
              "negative": -7, "float": 2.75}


@pytest.mark.parametrize("bad", BAD_EPOCHS)
@pytest.mark.parametrize("name", EPOCH_NAMES)
def test_bad_epoch_behaves_like_torch(name, bad):
    tw = Twins(CANONICAL[name], n_groups=3, messages=False)
    tw.optimizer_step()
    tw.step(2)
    _step_epoch(tw, BAD_EPOCHS[bad])
    for _ in range(2):
        _step(tw)


BAD_METRICS = {"None": None, "str": "abc", "numeric str": "0.5", "list": [1.0],
               "2-element tensor": torch.tensor([1.0, 2.0]), "nan": math.nan, "inf": math.inf}


@pytest.mark.parametrize("bad", BAD_METRICS)
def test_reduce_on_plateau_with_a_bad_metric_behaves_like_torch(bad):
    tw = Twins(Sched("ReduceLROnPlateau", patience=0), n_groups=3, messages=False)
    _step(tw, 1.0)
    _step(tw, BAD_METRICS[bad])
    _step(tw, 2.0)
    _step(tw, 3.0)


# ---------------------------------------------------------------------------------------------
# Malformed state dicts
# ---------------------------------------------------------------------------------------------

WRONG_VALUES = {"None": None, "str": "x", "-1": -1, "2.5": 2.5, "nan": math.nan, "[]": [],
                "{}": {}}


def _mutations(sd):
    """(label, mutate(sd)) for every key: deleted, or replaced by a wrong value; for composites
    also the keys of the first child's state dict."""
    paths = [(k,) for k in sd]
    if "_schedulers" in sd and sd["_schedulers"]:
        paths += [("_schedulers", 0, k) for k in sd["_schedulers"][0]]
    for path in paths:
        def container(d, path=path):
            for p in path[:-1]:
                d = d[p]
            return d

        yield f"del {path}", lambda d, path=path, c=container: c(d).pop(path[-1])
        for label, value in WRONG_VALUES.items():
            def put(d, path=path, c=container, value=value):
                c(d)[path[-1]] = copy.deepcopy(value)

            yield f"{path} = {label}", put


@pytest.mark.parametrize("name", ALL_NAMES)
def test_malformed_state_dict_behaves_like_torch(name):
    """Each key of torch's state dict deleted or given a wrong type, loaded into a fresh
    scheduler of each implementation, then stepped: same exception types, same state."""
    spec = CANONICAL[name]
    probe = Twins(spec, n_groups=3)
    probe.step(3)
    source = copy.deepcopy(probe.a.sched.state_dict())
    failures = []
    for label, mutate in _mutations(source):
        sd = copy.deepcopy(source)
        mutate(sd)
        try:
            tw = Twins(spec, n_groups=3, messages=False)
            tw.optimizer_step()
            tw.step(3)

            def load(side, sd=sd):
                side.sched.load_state_dict(copy.deepcopy(sd))

            failing_call_leaves_groups_like_torch(tw, load, f"load_state_dict(<{label}>)")
            for _ in range(3):
                _step(tw)
        except AssertionError as e:
            failures.append((label, str(e)))
    assert not failures, (
        f"{len(failures)} failing mutations: {[label for label, _ in failures]}\n\n"
        + "\n\n".join(f"[{label}] {e}" for label, e in failures[:4])
    )


@pytest.mark.parametrize("name", ALL_NAMES)
def test_loading_a_non_dict_state_behaves_like_torch(name):
    for bad in (None, [], "state", 3):
        tw = Twins(CANONICAL[name], n_groups=2, messages=False)
        tw.step(2)
        failing_call_leaves_groups_like_torch(
            tw, lambda side, bad=bad: side.sched.load_state_dict(bad), f"load_state_dict({bad!r})"
        )
        _step(tw)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "ChainedScheduler", "OneCycleLR"])
@pytest.mark.parametrize("last_epoch", [2**53 - 1, 2**53, 2**53 + 1, 2**63 - 1])
def test_a_step_count_at_or_beyond_2_to_53_is_counted_as_torch_counts(name, last_epoch):
    # Doubles cannot hold every int from 2**53 on: those steps are torch's own code, on Python ints.
    tw = Twins(CANONICAL[name], n_groups=2, messages=False)
    tw.step(2)

    def jump(side):
        for s in [side.sched, *getattr(side.sched, "_schedulers", [])]:
            s.last_epoch = last_epoch

    tw.do(jump, f"last_epoch = {last_epoch}")
    for _ in range(3):
        _step(tw)


@pytest.mark.parametrize("name", ["LambdaLR", "StepLR", "CosineAnnealingLR"])
def test_a_step_whose_epoch_increment_raises_leaves_the_get_lr_flag_as_torch_does(name):
    # Found by tests/test_fuzz.py: torch increments last_epoch inside the `with` that resets the flag.
    tw = Twins(CANONICAL[name], n_groups=2, messages=False)
    tw.step(2)
    tw.do(lambda s: s.sched.__dict__.update(last_epoch=None, _get_lr_called_within_step=None),
          "last_epoch = None; _get_lr_called_within_step = None")
    _step(tw)


def test_one_cycle_given_cycle_momentum_by_a_state_dict_raises_torchs_error():
    # Found by tests/test_fuzz.py: built without momentum cycling, then a state dict turns it on.
    spec = Sched("OneCycleLR", max_lr=1.0, total_steps=10, cycle_momentum=False)
    tw = Twins(spec, n_groups=1, messages=False)
    tw.step(1)
    state = copy.deepcopy(tw.a.sched.state_dict())
    state["cycle_momentum"] = "yes"
    failing_call_leaves_groups_like_torch(
        tw, lambda side: side.sched.load_state_dict(copy.deepcopy(state)), "load_state_dict"
    )
    _step(tw)


@pytest.mark.parametrize("name", ["ChainedScheduler", "SequentialLR"])
def test_a_composite_step_given_an_epoch_raises_torchs_type_error(name):
    """torch's composites' step() takes no argument (a SequentialLR child of a SequentialLR is given
    one by torch before 2.9, at its milestone): the TypeError names `step`, as torch's does."""
    tw = Twins(CANONICAL[name], n_groups=2)
    tw.step()
    tw.do(lambda side: side.sched.step(3), "step(3)")
    tw.step(2)
