"""schedx's schedulers where users train: a Lightning Trainer, the transformers Trainer and accelerate
take them unchanged, and the LRs they apply are the LRs torch's schedulers give in the same set-up.

The frameworks are test extras (`make test` installs them, pinned in the Makefile); a framework that
is not installed skips its tests, saying so."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from schedx import lr_scheduler as schedx_lr

torch_lr = torch.optim.lr_scheduler
pytestmark = pytest.mark.filterwarnings("ignore")

STEPS_PER_EPOCH = 4
EPOCHS = 3


def dataset(n=STEPS_PER_EPOCH * 8):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    return x, x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]]) + 0.1 * torch.randn(n, 1, generator=g)


def small_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))


def two_group_sgd(model):
    """Two param groups with different LRs, as layer-wise set-ups have."""
    first, second = list(model[0].parameters()), list(model[2].parameters())
    return torch.optim.SGD([{"params": first, "lr": 0.05}, {"params": second, "lr": 0.02}], lr=0.05, momentum=0.9)


def lrs_of(optimizer):
    return [float(g["lr"]) for g in optimizer.param_groups]


# Schedulers as each framework would be handed them: (name, build(lib, optimizer)).
SCHEDULERS = {
    "OneCycleLR": lambda L, o: L.OneCycleLR(o, max_lr=[0.1, 0.04], total_steps=STEPS_PER_EPOCH * EPOCHS + 1),
    "warmup-cosine": lambda L, o: L.SequentialLR(
        o, [L.LinearLR(o, start_factor=0.1, total_iters=3), L.CosineAnnealingLR(o, T_max=10)], milestones=[3]
    ),
    "traced-lambda": lambda L, o: L.LambdaLR(o, lambda e: min(1.0, (e + 1) / 5) * 0.9**e),
}


# ---------------------------------------------------------------------------------------------------
# Lightning
# ---------------------------------------------------------------------------------------------------


def lightning_fit(tmp_path, configure_scheduler, callbacks=(), label="run"):
    """Trains with a Lightning Trainer whose module configures `configure_scheduler(optimizer)`;
    returns (the LRs after every optimizer step, the LRs the LearningRateMonitor logged, the trained
    parameters), and the types of the schedulers the Trainer stepped."""
    pl = pytest.importorskip("pytorch_lightning")
    x, y = dataset()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)

    class Regression(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = small_model()
            self.seen: list[list[float]] = []

        def training_step(self, batch, batch_idx):
            inputs, targets = batch
            return torch.nn.functional.mse_loss(self.net(inputs), targets)

        def on_train_batch_end(self, outputs, batch, batch_idx):
            self.seen.append(lrs_of(self.trainer.optimizers[0]))

        def validation_step(self, batch, batch_idx):
            inputs, targets = batch
            # A loss that stops improving, so ReduceLROnPlateau reduces.
            self.log("val_loss", torch.tensor(1.0 + 0.0 * self.current_epoch))

        def configure_optimizers(self):
            optimizer = two_group_sgd(self.net)
            return {"optimizer": optimizer, "lr_scheduler": configure_scheduler(optimizer)}

    module = Regression()
    logger = pl.loggers.CSVLogger(tmp_path / label, name="run")
    trainer = pl.Trainer(
        max_epochs=EPOCHS,
        accelerator="cpu",
        logger=logger,
        callbacks=[pl.callbacks.LearningRateMonitor(logging_interval="step"), *callbacks],
        log_every_n_steps=1,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, loader, loader)
    with open(logger.log_dir + "/metrics.csv") as f:
        logged = [{k: v for k, v in row.items() if k.startswith("lr-") and v} for row in csv.DictReader(f)]
    stepped = [type(config.scheduler) for config in trainer.lr_scheduler_configs]
    return (module.seen, [row for row in logged if row], [p.detach().clone() for p in module.parameters()]), stepped


def lightning_run(tmp_path, lib, scheduler_config):
    """lightning_fit with the scheduler `scheduler_config(lib, optimizer)` configures."""
    label = lib.__name__.split(".")[0]
    run, _ = lightning_fit(tmp_path, lambda optimizer: scheduler_config(lib, optimizer), label=label)
    return run


def assert_same_run(ours, theirs):
    seen, logged, params = ours
    torch_seen, torch_logged, torch_params = theirs
    assert seen == torch_seen
    assert logged == torch_logged and logged
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params))


@pytest.mark.parametrize("interval", ["step", "epoch"])
@pytest.mark.parametrize("name", SCHEDULERS)
def test_lightning_steps_a_schedx_scheduler_as_torchs(tmp_path, name, interval):
    def config(lib, optimizer):
        return {"scheduler": SCHEDULERS[name](lib, optimizer), "interval": interval}

    ours = lightning_run(tmp_path, schedx_lr, config)
    assert_same_run(ours, lightning_run(tmp_path, torch_lr, config))


def test_lightning_steps_reduce_on_plateau_with_the_monitored_metric(tmp_path):
    def config(lib, optimizer):
        scheduler = lib.ReduceLROnPlateau(optimizer, patience=0, factor=0.5)
        return {"scheduler": scheduler, "interval": "epoch", "monitor": "val_loss"}

    ours = lightning_run(tmp_path, schedx_lr, config)
    theirs = lightning_run(tmp_path, torch_lr, config)
    assert_same_run(ours, theirs)
    assert ours[0][-1] != ours[0][0]  # it did reduce


# ---------------------------------------------------------------------------------------------------
# transformers' Trainer
# ---------------------------------------------------------------------------------------------------


class DictRegression(torch.nn.Module):
    """A model as the transformers Trainer calls it: keyword inputs, a dict with the loss."""

    def __init__(self):
        super().__init__()
        self.net = small_model()

    def forward(self, inputs, labels):
        return {"loss": torch.nn.functional.mse_loss(self.net(inputs), labels)}


class PairDataset(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = dataset()

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"inputs": self.x[i], "labels": self.y[i]}


def hf_trainer_run(tmp_path, lib, name):
    transformers = pytest.importorskip("transformers")
    model = DictRegression()
    optimizer = two_group_sgd(model.net)
    scheduler = SCHEDULERS[name](lib, optimizer)
    seen = []

    class RecordLRs(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            seen.append(lrs_of(optimizer))

    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / lib.__name__.split(".")[0]),
        max_steps=STEPS_PER_EPOCH * EPOCHS,
        per_device_train_batch_size=8,
        use_cpu=True,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        seed=0,
        data_seed=0,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=PairDataset(), optimizers=(optimizer, scheduler),
        callbacks=[RecordLRs()],
    )
    trainer.train()
    return seen, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_the_transformers_trainer_steps_a_schedx_scheduler_as_torchs(tmp_path, name):
    seen, params = hf_trainer_run(tmp_path, schedx_lr, name)
    torch_seen, torch_params = hf_trainer_run(tmp_path, torch_lr, name)
    assert len(seen) == STEPS_PER_EPOCH * EPOCHS
    assert seen == torch_seen
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params))


# ---------------------------------------------------------------------------------------------------
# accelerate
# ---------------------------------------------------------------------------------------------------


def accelerate_run(tmp_path, lib, name, checkpoint_at=None):
    """Trains with accelerate's prepared model, optimizer and scheduler; optionally saves the state
    mid-run with `save_state` and continues from `load_state` into fresh objects."""
    accelerate = pytest.importorskip("accelerate")
    x, y = dataset()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)

    def prepared():
        accelerator = accelerate.Accelerator(cpu=True)
        model = small_model()
        optimizer = two_group_sgd(model)
        scheduler = SCHEDULERS[name](lib, optimizer)
        return accelerator, *accelerator.prepare(model, optimizer, scheduler, loader)

    accelerator, model, optimizer, scheduler, data = prepared()
    seen = []
    step = 0
    for _ in range(EPOCHS):
        for inputs, targets in data:
            loss = torch.nn.functional.mse_loss(model(inputs), targets)
            accelerator.backward(loss)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            seen.append(lrs_of(optimizer))
            step += 1
            if step == checkpoint_at:
                accelerator.save_state(str(tmp_path / "state"))
                accelerator, model, optimizer, scheduler, data = prepared()
                accelerator.load_state(str(tmp_path / "state"))
                assert lrs_of(optimizer) == seen[-1]
    return seen, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("name", SCHEDULERS)
def test_accelerates_prepared_scheduler_steps_as_torchs(tmp_path, name):
    seen, params = accelerate_run(tmp_path, schedx_lr, name)
    torch_seen, torch_params = accelerate_run(tmp_path, torch_lr, name)
    assert seen == torch_seen
    assert all(torch.equal(a, b) for a, b in zip(params, torch_params))


def test_accelerate_save_state_and_load_state_resume_the_same_trajectory(tmp_path):
    uninterrupted, params = accelerate_run(tmp_path, schedx_lr, "OneCycleLR")
    resumed, resumed_params = accelerate_run(tmp_path, schedx_lr, "OneCycleLR", checkpoint_at=5)
    assert resumed == uninterrupted
    assert all(torch.equal(a, b) for a, b in zip(params, resumed_params))
    assert not any(math.isnan(v) for row in resumed for v in row)
