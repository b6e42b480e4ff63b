"""Checkpoints (models/checkpoint.py): the network files (names, plain state dicts, errors, nothing executed) and
the training states (position in the epoch, seed, fp16 loss scaler, every rank's streams, --continue_train auto)."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest
import torch
from helpers import FIXTURES, identity_vgg

from models import IBCLNConfig, IBCLNModel, checkpoint, networks
from models.networks import ConvLSTMGenerator, NLayerDiscriminator
from options.model_config import create_model
from util import seeding
from util.errors import UserError

# ----- network files: names, format, errors ------------------------------------------------------------------

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
        patch.setattr(networks, "load_vgg_features", identity_vgg)
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
    gen_keys = [k for k, _ in json.loads((FIXTURES / "generator_keys.json").read_text())]
    disc_keys = [k for k, _ in json.loads((FIXTURES / "discriminator_keys.json").read_text())]
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
    assert "9_net_G_T.pth" in message and "\n" not in message
    assert "3" in message.split("present")[-1] and "latest" in message.split("present")[-1]
    assert message.endswith(": 3, latest")  # the epochs first, then the named checkpoints


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
    checkpoint.save_networks(model, "cut")  # a real checkpoint, cut short as by a full disk
    data = (folder / "cut_net_G_R.pth").read_bytes()
    (folder / "cut_net_G_R.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cut_net_G_R.pth"):
        checkpoint.load_networks(model, "cut")


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused(test_model_factory, tmp_path):
    model = test_model_factory(seed=8)
    checkpoint.save_networks(model, "final")
    marker = tmp_path / "pwned"
    path = checkpoint.network_path(model.save_dir, "final", "G_T")
    state = torch.load(path)
    state["conv1.0.bias"] = Payload(marker)
    torch.save(state, path)
    with pytest.raises(UserError, match="final_net_G_T.pth.*weights_only") as err:
        checkpoint.load_networks(model, "final")
    assert "\n" not in str(err.value)
    assert not marker.exists()


# ----- training states ---------------------------------------------------------------------------------------

def test_continue_train_auto_resumes_only_a_saved_training_state(make_options, tiny_dataset):
    opt = make_options("train", "--dataroot", tiny_dataset, "--name", "auto", "--continue_train", "auto")
    assert opt.continue_train == "auto" and checkpoint.auto_resume(opt) is False  # a first start
    folder = Path(opt.checkpoints_dir) / "auto"
    folder.mkdir(parents=True)
    (folder / "3_net_G_T.pth").write_bytes(b"")
    with pytest.raises(UserError, match=r"holds checkpoints \(3\) but no .*latest_train_state\.pth"):
        checkpoint.auto_resume(opt)
    opt.overwrite = True
    assert checkpoint.auto_resume(opt) is False
    (folder / "latest_train_state.pth").write_bytes(b"")
    assert checkpoint.auto_resume(opt) is True


@pytest.fixture
def new_model(tmp_path, make_options, tiny_dataset, no_perceptual_net):
    """Return f(*args): (a small IBCLN training model on the CPU, set up, checkpoints under tmp_path; its options)."""
    def factory(*args: str):
        opt = make_options("train", "--dataroot", str(tiny_dataset), "--name", "ck", "--ngf", "8", "--ndf", "8",
                           "--seed", "3", *args)
        opt.rank, opt.world_size = 0, 1  # what util.distributed.setup sets without torchrun
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="--vgg_weights random")
            model = create_model(opt)
        checkpoint.load_for_run(model, opt)
        model.setup(opt.verbose)
        return model, opt

    return factory


def test_the_fp16_loss_scale_survives_a_resume(new_model):
    model, _ = new_model()
    model.scaler = torch.amp.GradScaler("cpu")  # fp16 training creates one for CUDA (models/ibcln_model.py)
    model.scaler.load_state_dict({"scale": 1024.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                                  "growth_interval": 2000, "_growth_tracker": 7})
    checkpoint.save(model, "latest", 1, 8)
    resumed, _ = new_model("--continue_train")
    resumed.scaler = torch.amp.GradScaler("cpu")
    assert resumed.scaler.get_scale() == 65536.0
    checkpoint.load_training_state(resumed, "latest")
    assert resumed.scaler.state_dict() == model.scaler.state_dict()


def test_a_mid_epoch_state_resumes_at_its_position_with_the_runs_seed(new_model, capsys):
    model, _ = new_model()
    model.seed = 12345  # e.g. drawn at random for a run without --seed
    meter = {"total": torch.tensor([1.0, 2.0]), "steps": 3}
    checkpoint.save_all_ranks(model, "latest", checkpoint.Progress(1, 4, 12, meter))
    resumed, opt = new_model("--continue_train")
    progress = checkpoint.resume(resumed, opt)
    assert (progress.epochs_done, progress.position, progress.total_iters) == (1, 4, 12)
    assert torch.equal(progress.meter["total"], meter["total"]) and progress.meter["steps"] == 3
    assert opt.epoch_count == 2 and checkpoint.saved_seed(opt) == 12345
    assert "resuming at sample 4 of epoch 2 (12 samples seen)" in capsys.readouterr().out


def test_every_rank_restores_its_own_random_state(new_model, capsys):
    model, _ = new_model()
    ranks = []
    for rank in range(2):
        seeding.seed_everything(100, rank)
        ranks.append(checkpoint.rank_state({"total": None, "steps": rank}))
    checkpoint.save(model, "latest", 1, 8, ranks=ranks)
    for rank in range(2):
        resumed, _ = new_model("--continue_train")
        counters = checkpoint.load_training_state(resumed, "latest", rank=rank, world_size=2)
        assert torch.equal(torch.get_rng_state(), ranks[rank]["rng_torch"]) and counters["meter"]["steps"] == rank
    # Saved by 2 processes, resumed by 3: rank 1 has no state of its own and reseeds from rank 0's, with a note.
    resumed, _ = new_model("--continue_train")
    assert checkpoint.load_training_state(resumed, "latest", rank=1, world_size=3)["meter"] is None
    assert not torch.equal(torch.get_rng_state(), ranks[0]["rng_torch"])
    notes = checkpoint.load_training_state(resumed, "latest", rank=0, world_size=3)["notes"]
    assert any("saved by 2 process(es), this run has 3" in note for note in notes)
