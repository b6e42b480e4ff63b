"""Training states (models/checkpoint.py): position in the epoch, seed, fp16 loss scaler, every rank's streams."""

from __future__ import annotations

import warnings

import pytest
import torch

from models import checkpoint
from options.model_config import create_model
from util import seeding


@pytest.fixture
def new_model(tmp_path, make_options, tiny_dataset):
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
