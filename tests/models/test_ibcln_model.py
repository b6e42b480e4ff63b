"""Tests for IBCLNModel: one CPU training step end to end (losses, update order) and checkpoint save/load."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from data import create_dataset
from models import IBCLNConfig, IBCLNModel, checkpoint, networks
from models.networks import ConvLSTMGenerator, NLayerDiscriminator, VGGFeatures
from options.model_config import create_model
from util.errors import UserError

DATA = Path(__file__).parent / "data"
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
    from conftest import build_tiny_dataset, parse_options

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


# ----- checkpoints ---------------------------------------------------------------------------------------------

@pytest.fixture
def test_model_factory(tmp_path):
    """Return f(seed): a test-phase IBCLN model (G_T, G_R) with checkpoints in tmp_path/checkpoints/ck."""
    def factory(seed: int):
        torch.manual_seed(seed)
        return IBCLNModel(IBCLNConfig(checkpoints_dir=str(tmp_path / "checkpoints"), name="ck"))

    return factory


@pytest.fixture(scope="module")
def train_model_pair(tmp_path_factory):
    """Two differently initialised training-phase models (G_T, G_R, D) sharing one checkpoint folder."""
    root = tmp_path_factory.mktemp("ckpt_train")
    models = []
    with pytest.MonkeyPatch.context() as patch:
        # The perceptual-loss network plays no part in checkpoints: a stub saves building a VGG19 twice.
        patch.setattr(networks, "load_vgg_features", lambda _source: VGGFeatures(nn.Sequential(*[nn.Identity()] * 7)))
        for seed in (1, 2):
            torch.manual_seed(seed)
            models.append(IBCLNModel(IBCLNConfig(is_train=True, checkpoints_dir=str(root), name="pair")))
    return models


def test_save_load_round_trip_all_networks(train_model_pair):
    source, target = train_model_pair
    assert source.model_names == ["G_T", "G_R", "D"]
    for name in source.model_names:  # differently initialised, so the round trip has something to prove
        first_weight = next(iter(source.nets()[name].state_dict()))
        assert not torch.equal(source.nets()[name].state_dict()[first_weight],
                               target.nets()[name].state_dict()[first_weight])
    checkpoint.save_networks(source, 7)
    checkpoint.load_networks(target, "7")
    for name in source.model_names:
        src, dst = source.nets()[name].state_dict(), target.nets()[name].state_dict()
        assert list(src) == list(dst)
        for key in src:
            assert torch.equal(src[key], dst[key]), f"{name}: {key}"


def test_saved_files_are_plain_state_dicts(train_model_pair):
    source, _ = train_model_pair
    checkpoint.save_networks(source, "final")
    gen_keys = [k for k, _ in json.loads((DATA / "generator_keys.json").read_text())]
    disc_keys = [k for k, _ in json.loads((DATA / "discriminator_keys.json").read_text())]
    for name, keys in (("G_T", gen_keys), ("G_R", gen_keys), ("D", disc_keys)):
        path = Path(source.save_dir) / f"final_net_{name}.pth"
        assert path.is_file()
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
        assert list(state) == keys
        assert not any(k.startswith("module.") for k in state)
        assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in state.values())
        # Loadable into a bare network of the architecture, with strict key checking.
        net = ConvLSTMGenerator() if name != "D" else NLayerDiscriminator()
        net.load_state_dict(state, strict=True)


def test_module_prefixed_state_dict_loads(test_model_factory):
    source = test_model_factory(seed=3)
    target = test_model_factory(seed=4)
    Path(target.save_dir).mkdir(parents=True, exist_ok=True)
    for name, net in source.nets().items():
        torch.save({"module." + k: v for k, v in net.state_dict().items()},
                   checkpoint.network_path(target.save_dir, "dp", name))
    checkpoint.load_networks(target, "dp")
    for name in ("G_T", "G_R"):
        for key, value in source.nets()[name].state_dict().items():
            assert torch.equal(value, target.nets()[name].state_dict()[key])


def test_missing_epoch_lists_present_checkpoints(test_model_factory):
    model = test_model_factory(seed=5)
    checkpoint.save_networks(model, 3)
    checkpoint.save_networks(model, "latest")
    with pytest.raises(UserError) as err:
        checkpoint.load_networks(model, "9")
    message = str(err.value)
    assert "9_net_G_T.pth" in message
    assert "3" in message.split("present")[-1] and "latest" in message.split("present")[-1]


def test_missing_epoch_in_empty_folder(test_model_factory):
    model = test_model_factory(seed=5)
    with pytest.raises(UserError, match="none"):
        checkpoint.load_networks(model, "final")


def test_wrong_architecture_names_file_and_keys(test_model_factory):
    model = test_model_factory(seed=6)
    folder = Path(model.save_dir)
    folder.mkdir(parents=True, exist_ok=True)
    # A generator with other widths (ngf 32) as G_T: shape mismatch.
    torch.save(ConvLSTMGenerator(ngf=32).state_dict(), folder / "narrow_net_G_T.pth")
    with pytest.raises(UserError) as err:
        checkpoint.load_networks(model, "narrow")
    message = str(err.value)
    assert str(folder / "narrow_net_G_T.pth") in message
    assert "conv1.0.weight" in message and "shape mismatch" in message
    # A discriminator's weights as G_T: missing and unexpected keys.
    torch.save(ConvLSTMGenerator().state_dict(), folder / "disc_net_G_R.pth")
    torch.save(NLayerDiscriminator().state_dict(), folder / "disc_net_G_T.pth")
    with pytest.raises(UserError) as err:
        checkpoint.load_networks(model, "disc")
    message = str(err.value)
    assert "disc_net_G_T.pth" in message and "conv1.0.weight" in message and "model.0.weight" in message


def test_non_state_dict_checkpoint_is_user_error(test_model_factory):
    model = test_model_factory(seed=7)
    folder = Path(model.save_dir)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "junk_net_G_T.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="junk_net_G_T.pth"):
        checkpoint.load_networks(model, "junk")


def test_batches_are_pinned_for_a_gpu_and_copied_without_blocking(tmp_path, monkeypatch):
    from conftest import build_tiny_dataset, parse_options

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
