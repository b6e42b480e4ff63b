"""IBCLNModel (models/ibcln_model.py): one CPU training step end to end (losses, update order), batches to the
device."""

from __future__ import annotations

import argparse
import warnings

import pytest
import torch
from helpers import build_tiny_dataset, parse_options

from data import create_dataset
from models import IBCLNModel
from options.model_config import create_model

LOSS_NAMES = ["idt_T", "res", "MP", "G", "T", "idt_R", "R", "D"]


def _snapshot(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _changed(before: dict[str, torch.Tensor], net: torch.nn.Module) -> list[str]:
    return [k for k, v in net.state_dict().items() if not torch.equal(before[k], v)]


TRAIN_ARGS = ("--load_size", "72", "--crop_size", "64", "--batch_size", "2", "--dataset_size", "4", "--niter", "1",
              "--seed", "1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Two training iterations at 64x64 on the CPU; returns (model, snapshots before, per-step losses, events)."""
    root = tmp_path_factory.mktemp("train_step")
    dataroot = build_tiny_dataset(root / "data")
    opt = parse_options("train", ["--dataroot", dataroot, "--name", "step", "--model", "IBCLN", "--gpu_ids", "-1",
                                  "--checkpoints_dir", root / "ck", "--display_id", "-1", "--vgg_weights", "random",
                                  "--num_threads", "0", *TRAIN_ARGS])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        model = create_model(opt)
    model.setup()
    loader = create_dataset(opt)
    before = {name: _snapshot(net) for name, net in model.nets().items()}
    events: list[dict] = []
    iteration_start: dict[str, dict[str, torch.Tensor]] = {}
    original_g_step, original_d_step = model.optimizer_G.step, model.optimizer_D.step

    def g_step(*args, **kwargs):
        events.append({"step": "G",
                       "d_frozen": not any(p.requires_grad for p in model.netD.parameters()),
                       "d_grads_none": all(p.grad is None for p in model.netD.parameters()),
                       "d_unchanged": not _changed(iteration_start["D"], model.netD),
                       "g_grads": all(p.grad is not None for p in model.netG_T.parameters())})
        return original_g_step(*args, **kwargs)

    def d_step(*args, **kwargs):
        events.append({"step": "D",
                       "d_trainable": all(p.requires_grad for p in model.netD.parameters()),
                       "d_grads": all(p.grad is not None for p in model.netD.parameters()),
                       "g_updated": bool(_changed(iteration_start["G_T"], model.netG_T))})
        return original_d_step(*args, **kwargs)

    model.optimizer_G.step, model.optimizer_D.step = g_step, d_step
    model.train()
    losses = []
    for data in loader:
        assert data["I"].shape == (2, 3, 64, 64)
        iteration_start.update({name: _snapshot(net) for name, net in model.nets().items()})
        model.set_input(data)
        model.optimize_parameters()
        losses.append(model.get_current_losses())
    assert len(losses) == 2
    return model, before, losses, events


def test_two_training_iterations_update_every_network(trained):
    model, before, _, _ = trained
    # G_R's half- and quarter-scale heads feed no loss (only G_T's do), so they alone may stay unchanged.
    unused = {"G_R": {f"outframe{k}.0.{p}" for k in (1, 2) for p in ("weight", "bias")}}
    for name in ("G_T", "G_R", "D"):
        changed = set(_changed(before[name], model.nets()[name]))
        expected = set(before[name]) - unused.get(name, set())
        assert expected <= changed, f"net{name}: unchanged {sorted(expected - changed)}"


def test_loss_names_and_their_relations(trained):
    model, _, losses, _ = trained
    assert model.loss_names == LOSS_NAMES
    for step in losses:
        assert list(step) == LOSS_NAMES
        assert all(torch.isfinite(torch.tensor(v)) for v in step.values())
        assert step["T"] == pytest.approx(step["idt_T"] + step["res"] + step["MP"] + step["G"], rel=1e-5)
        assert step["R"] == step["idt_R"]
        # Synthetic samples only (no real pairs in the folder): the residual and R terms are active.
        assert step["res"] > 0 and step["idt_R"] > 0 and step["idt_T"] > 0 and step["MP"] > 0
        assert step["G"] > 0 and step["D"] > 0


def test_g_step_before_d_step_with_d_frozen(trained):
    _, _, _, events = trained
    assert [e["step"] for e in events] == ["G", "D", "G", "D"]
    g_events = [e for e in events if e["step"] == "G"]
    d_events = [e for e in events if e["step"] == "D"]
    assert all(e["d_frozen"] and e["d_unchanged"] and e["g_grads"] for e in g_events)
    assert g_events[0]["d_grads_none"]  # backward_G of the first step put no gradient into D
    assert all(e["d_trainable"] and e["d_grads"] and e["g_updated"] for e in d_events)


def test_backward_g_leaves_discriminator_without_gradients(trained):
    model = trained[0]
    model.optimizer_G.zero_grad(set_to_none=True)
    model.optimizer_D.zero_grad(set_to_none=True)
    model.forward()
    model.set_requires_grad(model.netD, False)
    model.backward_G()
    assert all(p.grad is None for p in model.netD.parameters())
    assert all(p.grad is not None for p in model.netG_T.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.netG_R.parameters())
    # L_adv = 0.01 * MSE(D(T_3), 1), the generators' adversarial term.
    with torch.no_grad():
        d_out = model.netD(model.fake_Ts[-1])
    assert model.loss_G.item() == pytest.approx(0.01 * ((d_out - 1) ** 2).mean().item(), rel=1e-5)
    model.set_requires_grad(model.netD, True)
    model.compute_loss_D()
    model.loss_D.backward()
    assert all(p.grad is not None for p in model.netD.parameters())


def test_batches_are_pinned_for_a_gpu_and_copied_without_blocking(tmp_path, monkeypatch):
    root = build_tiny_dataset(tmp_path / "data", n_test=0)
    opt = parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "ck",
                                  "--num_threads", "0", *TRAIN_ARGS])
    opt.gpu_ids = [0]
    assert create_dataset(opt).pin_memory is True  # page-locked batches for the GPU (never iterated here)
    opt.gpu_ids = []
    loader = create_dataset(opt)
    assert loader.pin_memory is False  # the CPU: nothing to pin for
    batch = next(iter(loader))
    copies = []
    original = torch.Tensor.to

    def to(self, *args, **kwargs):
        copies.append(kwargs.get("non_blocking", False))
        return original(self, *args, **kwargs)

    model = argparse.Namespace(device=torch.device("cpu"), channels_last=False)
    model._to_device = lambda x: IBCLNModel._to_device(model, x)
    monkeypatch.setattr(torch.Tensor, "to", to)
    IBCLNModel.set_input(model, batch)
    assert len(copies) == 6 and all(copies)  # I, T, T2, T4, alpha, isNatural
