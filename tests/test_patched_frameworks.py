"""The README's "Speed up a whole stack" recipes: with schedx.patch() or schedx.from_torch(), the
schedulers transformers' Trainer and get_scheduler, Lightning and accelerate build are schedx's, and
the LRs they apply and the parameters they train are the unpatched run's. And, at scale: every
scheduler type transformers' get_scheduler offers, at 1, 100 and 10,000 groups, steps identically
patched and unpatched.

The frameworks are test extras (pinned in the Makefile); a framework that is not installed skips its
tests."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import schedx
from test_frameworks import (
    EPOCHS,
    STEPS_PER_EPOCH,
    DictRegression,
    PairDataset,
    dataset,
    lightning_fit,
    lrs_of,
    small_model,
    two_group_sgd,
)
from twins import TORCH

pytestmark = pytest.mark.filterwarnings("ignore")

README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture(autouse=True)
def unpatched_after():
    yield
    schedx.unpatch()


def readme_recipes() -> list[str]:
    """The Python blocks of the README's "Speed up a whole stack" section, in order."""
    text = README.read_text()
    section = text[text.index("## Speed up a whole stack") :]
    section = section[: section.index("\n## ", 1)]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_transformers_script_runs_as_written(tmp_path):
    pytest.importorskip("transformers")
    script = tmp_path / "recipe.py"
    script.write_text(readme_recipes()[0])
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "torch.optim.lr_scheduler.LambdaLR -> schedx.lr_scheduler.LambdaLR"


def readme_lightning_callback():
    """The README's SchedxSchedulers callback, as the README defines it."""
    pytest.importorskip("pytorch_lightning")
    namespace: dict = {}
    exec(readme_recipes()[1], namespace)
    return namespace["SchedxSchedulers"]


# ---------------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------------

LIGHTNING_SCHEDULERS = {
    # Built through torch's module when configure_optimizers runs (patched or not).
    "warmup-cosine": lambda o: {
        "scheduler": torch.optim.lr_scheduler.SequentialLR(
            o,
            [torch.optim.lr_scheduler.LinearLR(o, start_factor=0.1, total_iters=3),
             torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=10)],
            milestones=[3],
        ),
        "interval": "step",
    },
    # Lightning steps it with the monitored metric: an isinstance check on torch's class.
    "plateau": lambda o: {
        "scheduler": torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=0, factor=0.5),
        "interval": "epoch",
        "monitor": "val_loss",
    },
}


def assert_same_training(ours, theirs):
    (seen, logged, params), (torch_seen, torch_logged, torch_params) = ours, theirs
    assert seen == torch_seen and len(seen) == STEPS_PER_EPOCH * EPOCHS
    assert logged == torch_logged and logged
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params, strict=True))


SCHEDX_TYPES = {"warmup-cosine": [schedx.SequentialLR], "plateau": [schedx.ReduceLROnPlateau]}


@pytest.mark.parametrize("scheduler", LIGHTNING_SCHEDULERS)
def test_lightning_with_the_readme_callback_trains_as_unpatched_with_schedxs_schedulers(tmp_path, scheduler):
    torch_run, torch_types = lightning_fit(tmp_path, LIGHTNING_SCHEDULERS[scheduler], label="torch")
    callback = readme_lightning_callback()()
    run, types = lightning_fit(tmp_path, LIGHTNING_SCHEDULERS[scheduler], [callback], label="callback")
    assert_same_training(run, torch_run)
    assert types == SCHEDX_TYPES[scheduler] and torch_types != types


@pytest.mark.parametrize("scheduler", LIGHTNING_SCHEDULERS)
def test_lightning_after_patch_trains_as_unpatched_with_schedxs_schedulers(tmp_path, scheduler):
    torch_run, _ = lightning_fit(tmp_path, LIGHTNING_SCHEDULERS[scheduler], label="torch")
    schedx.patch()
    run, types = lightning_fit(tmp_path, LIGHTNING_SCHEDULERS[scheduler], label="patched")
    assert_same_training(run, torch_run)
    assert types == SCHEDX_TYPES[scheduler]


# ---------------------------------------------------------------------------------------------------
# transformers' Trainer
# ---------------------------------------------------------------------------------------------------


def trainer_run(tmp_path, label, make_optimizers=None, **arguments):
    """Trains with the transformers Trainer; returns the LRs after every step, the trained
    parameters and the type of the scheduler it stepped."""
    transformers = pytest.importorskip("transformers")
    model = DictRegression()
    seen = []

    class RecordLRs(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, optimizer=None, **kwargs):
            seen.append(lrs_of(optimizer))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / label), max_steps=STEPS_PER_EPOCH * EPOCHS, per_device_train_batch_size=8,
        use_cpu=True, report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True,
        seed=0, data_seed=0, dataloader_num_workers=0, learning_rate=0.05, warmup_steps=3, **arguments,
    )  # fmt: skip
    optimizers = make_optimizers(model) if make_optimizers else (None, None)
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=PairDataset(), optimizers=optimizers, callbacks=[RecordLRs()]
    )
    trainer.train()
    return (seen, [p.detach().clone() for p in model.parameters()]), type(trainer.lr_scheduler)


def assert_same_steps(ours, theirs):
    (seen, params), (torch_seen, torch_params) = ours, theirs
    assert seen == torch_seen and len(seen) == STEPS_PER_EPOCH * EPOCHS
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params, strict=True))


@pytest.mark.parametrize("lr_scheduler_type", ["linear", "cosine"])
def test_the_trainer_after_patch_trains_as_unpatched_with_schedxs_lambda_lr(tmp_path, lr_scheduler_type):
    torch_run, torch_type = trainer_run(tmp_path, "torch", lr_scheduler_type=lr_scheduler_type)
    schedx.patch()
    run, scheduler_type = trainer_run(tmp_path, "patched", lr_scheduler_type=lr_scheduler_type)
    assert_same_steps(run, torch_run)
    assert (torch_type, scheduler_type) == (TORCH.LambdaLR, schedx.LambdaLR)


def test_the_trainer_with_a_converted_get_scheduler_trains_as_with_torchs(tmp_path):
    transformers = pytest.importorskip("transformers")

    def optimizers(convert):
        def make(model):
            optimizer = two_group_sgd(model.net)
            scheduler = transformers.get_scheduler(
                "cosine_with_restarts", optimizer, num_warmup_steps=3, num_training_steps=STEPS_PER_EPOCH * EPOCHS,
                scheduler_specific_kwargs={"num_cycles": 2},
            )  # fmt: skip
            return optimizer, convert(scheduler)

        return make

    torch_run, _ = trainer_run(tmp_path, "torch", optimizers(lambda s: s))
    run, scheduler_type = trainer_run(tmp_path, "converted", optimizers(schedx.from_torch))
    assert_same_steps(run, torch_run)
    assert scheduler_type is schedx.LambdaLR


# ---------------------------------------------------------------------------------------------------
# accelerate
# ---------------------------------------------------------------------------------------------------


def accelerate_run(convert=lambda scheduler: scheduler):
    """Trains with accelerate's prepared objects, the scheduler built through torch's module (and
    passed through `convert` before prepare); returns the LRs, the parameters and the type of the
    scheduler accelerate's wrapper steps."""
    accelerate = pytest.importorskip("accelerate")
    x, y = dataset()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    accelerator = accelerate.Accelerator(cpu=True)
    model = small_model()
    optimizer = two_group_sgd(model)
    scheduler = convert(torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[0.1, 0.04], total_steps=STEPS_PER_EPOCH * EPOCHS + 1
    ))  # fmt: skip
    model, optimizer, scheduler, data = accelerator.prepare(model, optimizer, scheduler, loader)
    seen = []
    for _ in range(EPOCHS):
        for inputs, targets in data:
            accelerator.backward(torch.nn.functional.mse_loss(model(inputs), targets))
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            seen.append(lrs_of(optimizer))
    return (seen, [p.detach().clone() for p in model.parameters()]), type(scheduler.scheduler)


def test_accelerate_after_patch_trains_as_unpatched_with_schedxs_scheduler():
    torch_run, torch_type = accelerate_run()
    schedx.patch()
    run, scheduler_type = accelerate_run()
    assert_same_steps(run, torch_run)
    assert (torch_type, scheduler_type) == (TORCH.OneCycleLR, schedx.OneCycleLR)


def test_accelerate_with_a_scheduler_converted_before_prepare_trains_as_with_torchs():
    torch_run, _ = accelerate_run()
    run, scheduler_type = accelerate_run(schedx.from_torch)
    assert_same_steps(run, torch_run)
    assert scheduler_type is schedx.OneCycleLR


# ---------------------------------------------------------------------------------------------------
# At scale: every scheduler type of transformers' get_scheduler, patched against unpatched
# ---------------------------------------------------------------------------------------------------

# get_scheduler's arguments per type, where its defaults do not do.
SPECIFIC_KWARGS = {
    "cosine_with_min_lr": {"min_lr_rate": 0.1},
    "cosine_warmup_with_min_lr": {"min_lr_rate": 0.1},
    "warmup_stable_decay": {"num_decay_steps": 3},
    "reduce_lr_on_plateau": {"patience": 1},
}
# Steps, warm-up steps and training steps per N: past the end of every schedule; few at 10,000.
PLANS = {1: (40, 5, 30), 100: (40, 5, 30), 10_000: (6, 2, 5)}
METRICS = [1.0, 0.9, 0.9, 0.9, 0.95, 0.8, 0.8, 0.8, 1.2, 0.5]


def many_group_optimizer(n):
    """SGD with n groups of distinct LRs. Groups after the first are appended as add_param_group
    completes them, without its check that no parameter repeats (quadratic: minutes at 10,000)."""
    lrs = [0.1 * (0.5 + i / (2 * n)) for i in range(n)]
    optimizer = torch.optim.SGD([{"params": [torch.zeros(1)], "lr": lrs[0]}], lr=0.1, momentum=0.9)
    for lr in lrs[1:]:
        optimizer.param_groups.append({**optimizer.defaults, "params": [torch.zeros(1)], "lr": lr})
    return optimizer


def scheduler_types():
    transformers = pytest.importorskip("transformers")
    return [t.value for t in transformers.SchedulerType]


def stepped(name, n):
    """get_scheduler(name) on n groups, stepped; its type and, after every step, the groups' LRs and
    get_last_lr(); its final state_dict()."""
    import transformers

    steps, warmup, training = PLANS[n]
    optimizer = many_group_optimizer(n)
    scheduler = transformers.get_scheduler(
        name, optimizer, num_warmup_steps=warmup, num_training_steps=training,
        scheduler_specific_kwargs=SPECIFIC_KWARGS.get(name),
    )  # fmt: skip
    takes_metric = name in ("reduce_lr_on_plateau", "greedy")
    optimizer.step()  # the usual order (no grads: it changes nothing), once: at 10,000 groups it is slow
    trace = []
    for step in range(steps):
        scheduler.step(METRICS[step % len(METRICS)]) if takes_metric else scheduler.step()
        trace.append((lrs_of(optimizer), scheduler.get_last_lr()))
    return type(scheduler), trace, scheduler.state_dict()


@pytest.mark.parametrize("n", list(PLANS))
def test_every_get_scheduler_type_steps_identically_patched(n):
    import transformers

    for name in scheduler_types():
        torch_type, torch_trace, torch_state = stepped(name, n)
        with schedx.patched():
            schedx_type, trace, state = stepped(name, n)
        assert trace == torch_trace, name
        assert state == torch_state, name
        if torch_type is transformers.GreedyLR:  # transformers' own class: nothing of torch's to patch
            assert schedx_type is torch_type
        else:
            assert schedx_type is getattr(schedx, torch_type.__name__), name
