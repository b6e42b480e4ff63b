"""The EMA of the generators' weights (--ema_decay, models/ema.py): the update rule, when the model applies it,
checkpoints and exact resume, validation on it, and every entry point that loads it (--ema, ema=True)."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import REPO_ROOT, Runs, run_script
from PIL import Image

from models import IBCLNConfig, IBCLNModel
from models.ema import Averages, ema_step
from util.errors import UserError

GENERATORS = ("G_T", "G_R")
DECAY = 0.5


def small_model(decay: float = DECAY, **extra) -> IBCLNModel:
    """Return a training IBCLNModel with ngf/ndf 8 on the CPU, random VGG, the given EMA decay."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="--vgg_weights random")
        return IBCLNModel(IBCLNConfig(is_train=True, ngf=8, ndf=8, vgg_weights="random", ema_decay=decay, seed=0,
                                      **extra))


def batch(seed: int = 0) -> dict:
    """Return a training batch of two 32x32 synthetic mixtures, as resize_natural_3 gives them."""
    generator = torch.Generator().manual_seed(seed)
    t = torch.rand(2, 3, 32, 32, generator=generator)
    return {"I": (0.7 * t + 0.3 * torch.rand(2, 3, 32, 32, generator=generator)).clamp(0, 1), "T": t,
            "T2": torch.nn.functional.interpolate(t, scale_factor=0.5),
            "T4": torch.nn.functional.interpolate(t, scale_factor=0.25),
            "alpha": torch.tensor([0.8, 0.7]), "isNatural": torch.tensor([False, False])}


def weights(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return a copy of a network's state_dict."""
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def averages(model: IBCLNModel) -> dict[str, dict[str, torch.Tensor]]:
    """Return a copy of the model's EMA, by network."""
    return {name: {k: v.clone() for k, v in a.state.items()} for name, a in model.averages.items()}


# ----- the rule and the model -------------------------------------------------------------------------------


def test_ema_step_is_the_hand_computed_average():
    average, weight = torch.tensor([1.0, 2.0, -4.0]), torch.tensor([3.0, -2.0, 0.5])
    # 0.9 * a + 0.1 * w by hand: 0.9 + 0.3, 1.8 - 0.2, -3.6 + 0.05
    expected = torch.tensor([1.2, 1.6, -3.55])
    assert torch.allclose(ema_step(average, weight, 0.9), expected, rtol=0, atol=1e-6)
    assert torch.equal(average, torch.tensor([1.0, 2.0, -4.0]))  # a new tensor: the input is left alone
    ema_step(average, weight, 0.9, out=average)
    assert torch.allclose(average, expected, rtol=0, atol=1e-6)
    assert ema_step(torch.zeros(2), torch.ones(2, dtype=torch.float64), 0.75).dtype == torch.float32


def test_the_generators_have_no_buffers_so_the_average_is_their_whole_state_dict():
    model = small_model()
    for name in GENERATORS:
        net = model.nets()[name]
        assert not list(net.buffers())
        assert set(model.averages[name].state) == set(net.state_dict()) == {k for k, _ in net.named_parameters()}
    assert set(model.averages) == set(GENERATORS)  # D is not averaged


def test_each_optimiser_step_of_G_moves_the_average_by_the_rule():
    model = small_model()
    before = {name: weights(model.nets()[name]) for name in GENERATORS}
    assert all(torch.equal(model.averages[n].state[k], before[n][k]) for n in GENERATORS for k in before[n])
    expected = before
    for step in range(2):
        model.set_input(batch(step))
        model.optimize_parameters()
        now = {name: weights(model.nets()[name]) for name in GENERATORS}
        assert any(not torch.equal(now["G_T"][k], before["G_T"][k]) for k in now["G_T"])  # G did move
        expected = {n: {k: DECAY * expected[n][k] + (1 - DECAY) * now[n][k] for k in now[n]} for n in GENERATORS}
        for name in GENERATORS:
            for key, value in model.averages[name].state.items():
                assert torch.allclose(value, expected[name][key], rtol=0, atol=1e-6), (step, name, key)


def test_a_step_the_fp16_loss_scaler_skips_leaves_the_average_alone():
    model = small_model()
    model.scaler = torch.amp.GradScaler("cpu")  # fp16 AMP is CUDA-only; the CPU scaler skips steps alike
    model.scaler.scale(torch.ones(()))  # starts the scale, as backward_G's scaled loss does
    params = [p for name in GENERATORS for p in model.nets()[name].parameters()]
    start, start_average = weights(model.netG_T), averages(model)
    for p in params:
        p.grad = torch.full_like(p, float("inf"))
    model._step(model.optimizer_G)
    model.scaler.update()
    assert all(torch.equal(v, start[k]) for k, v in model.netG_T.state_dict().items())  # the step was skipped
    assert all(torch.equal(model.averages[n].state[k], start_average[n][k]) for n in GENERATORS
               for k in start_average[n])
    for p in params:
        p.grad = torch.full_like(p, 1e-3) * model.scaler.get_scale()
    model._step(model.optimizer_G)
    stepped = weights(model.netG_T)
    assert any(not torch.equal(stepped[k], start[k]) for k in stepped)
    for key, value in model.averages["G_T"].state.items():
        assert torch.allclose(value, DECAY * start_average["G_T"][key] + (1 - DECAY) * stepped[key], atol=1e-6)


def test_without_ema_decay_there_is_no_average_and_no_hook():
    model = small_model(decay=0.0)
    assert model.averages == {}
    assert not model.optimizer_G._optimizer_step_post_hooks
    assert IBCLNModel(IBCLNConfig(ngf=8)).averages == {}  # test phase


@pytest.mark.parametrize("decay", [1.0, -0.1, 2])
def test_a_decay_outside_0_1_is_a_one_line_error(decay):
    with pytest.raises(UserError, match=rf"ema_decay={decay}: expected 0 \(no EMA\) or a decay in \(0, 1\)"):
        IBCLNConfig(ema_decay=decay)


def test_averaged_weights_are_swapped_in_and_back_bit_for_bit():
    model = small_model()
    model.set_input(batch())
    model.optimize_parameters()
    own, average = weights(model.netG_R), averages(model)["G_R"]
    assert any(not torch.equal(own[k], average[k]) for k in own)
    with model.averaged_weights():
        assert all(torch.equal(v, average[k]) for k, v in model.netG_R.state_dict().items())
    assert all(torch.equal(v, own[k]) for k, v in model.netG_R.state_dict().items())
    assert all(torch.equal(v, average[k]) for k, v in model.averages["G_R"].state.items())


def test_channels_last_weights_are_averaged_and_saved_in_the_standard_layout():
    model = small_model(channels_last=True)
    conv = next(k for k, v in model.netG_T.state_dict().items() if v.dim() == 4)
    assert model.averages["G_T"].state[conv].is_contiguous(memory_format=torch.channels_last)
    assert model.averages["G_T"].state_dict()[conv].is_contiguous()
    assert isinstance(model.averages["G_T"], Averages)


# ----- training runs: checkpoints, exact resume, validation, entry points -----------------------------------


EMA = ("--ema_decay", "0.9")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Runs:
    """Return helpers.Runs with 'plain' (no EMA) and 'whole' (--ema_decay 0.9), both uninterrupted with --seed 3.

    The runs of tests/training/test_resume.py: 2 epochs of 12 samples at 32x32, validated.
    """
    runs = Runs(tmp_path_factory.mktemp("ema"))
    runs.train("plain", "--seed", "3", "--num_threads", "0")
    runs.train("whole", "--seed", "3", "--num_threads", "0", *EMA)
    return runs


def load(path: Path) -> dict:
    """Return a saved state_dict."""
    return torch.load(path, map_location="cpu", weights_only=True)


def val_rows(folder: Path) -> list[dict[str, str]]:
    """Return val_log.csv's rows."""
    with open(folder / "val_log.csv", newline="") as f:
        return list(csv.DictReader(f))


def same(a: dict, b: dict) -> bool:
    """Return True when two state_dicts are bit-identical."""
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_without_ema_no_file_and_with_it_the_same_training_weights(runs):
    plain, ema = runs.folder("plain"), runs.folder("whole")
    assert not list(plain.glob("*_ema.pth"))
    # latest, the epochs (--save_epoch_freq 1) and final all carry the EMA of both generators; D has none
    for prefix in ("latest", "1", "2", "final"):
        assert sorted(p.name for p in ema.glob(f"{prefix}_net_*_ema.pth")) == [f"{prefix}_net_G_R_ema.pth",
                                                                              f"{prefix}_net_G_T_ema.pth"]
    for net in ("G_T", "G_R", "D"):  # the EMA and its validation leave training alone, bit for bit
        assert same(load(plain / f"final_net_{net}.pth"), load(ema / f"final_net_{net}.pth")), net
    for net in GENERATORS:
        average, trained = load(ema / f"final_net_{net}_ema.pth"), load(ema / f"final_net_{net}.pth")
        assert average.keys() == trained.keys() and all(v.dtype == torch.float32 for v in average.values())
        assert not same(average, trained)


@pytest.mark.slow
def test_a_stop_mid_epoch_resumes_the_ema_bit_for_bit(runs):
    # Call 18 is the D step of step 9 (sample 6 of epoch 2): G has stepped, and its EMA with it.
    runs.train("stopped", "--seed", "3", "--num_threads", "2", *EMA, stop_at_call=18, expect=143)
    runs.train("stopped", "--seed", "3", "--num_threads", "0", *EMA, "--continue_train")
    for net in GENERATORS:
        for prefix in ("final", "2"):
            name = f"{prefix}_net_{net}_ema.pth"
            assert same(load(runs.folder("whole") / name), load(runs.folder("stopped") / name)), name
    assert [r["PSNR_T_3"] for r in val_rows(runs.folder("whole"))] == \
        [r["PSNR_T_3"] for r in val_rows(runs.folder("stopped"))]


@pytest.mark.slow
def test_resuming_a_run_saved_without_ema_starts_the_average_at_the_loaded_weights(runs, tmp_path):
    folder = runs.ckpt / "late"
    runs.train("late", "--seed", "3", "--num_threads", "0", "--niter_decay", "0")  # 1 epoch, no EMA
    out = runs.train("late", "--seed", "3", "--num_threads", "0", *EMA, "--continue_train", "--niter_decay", "1")
    assert f"note: no {folder / 'latest_net_G_T_ema.pth'} (saved without --ema_decay)" in out
    assert (folder / "final_net_G_T_ema.pth").is_file()


@pytest.mark.slow
def test_validation_scores_the_ema_as_test_py_ema_does(runs, tmp_path):
    row = val_rows(runs.folder("whole"))[0]  # epoch 1; the 1_ checkpoint
    means = {}
    for flags in ((), ("--ema",)):
        # --channels_last off as training ran: then test.py's numbers are validation's to the last bit
        proc = run_script("test.py", "--dataroot", runs.root, "--name", "whole", "--checkpoints_dir", runs.ckpt,
                          "--results_dir", tmp_path, "--gpu_ids", "-1", "--epoch", "1", "--ngf", "8",
                          "--channels_last", "off", *flags)
        assert proc.returncode == 0, proc.stderr[-3000:]
        folder = tmp_path / "whole" / ("test_1_ema" if flags else "test_1")
        with open(folder / "metrics.csv", newline="") as f:
            means[flags] = [r for r in csv.DictReader(f) if r["image"] == "mean"][0]
        assert ("(EMA weights)" in (folder / "index.html").read_text()) == bool(flags)
    columns = [c for c in row if c.startswith(("PSNR_", "SSIM_"))]
    assert [float(means[("--ema",)][c]) for c in columns] == [float(row[c]) for c in columns]
    # the training weights of the same checkpoint score differently: validation did not score them
    assert [float(means[()][c]) for c in columns] != [float(row[c]) for c in columns]


@pytest.mark.slow
def test_every_entry_point_loads_the_ema(runs, tmp_path):
    from models.api import load_ibcln

    folder = runs.folder("whole")
    image = np.asarray(Image.open(runs.root / "testB" / "img0.png").convert("RGB"))
    remover = load_ibcln(str(folder), device="cpu", epoch="final", ema=True)
    for net in GENERATORS:
        assert same({k: v.contiguous() for k, v in remover.model.nets()[net].state_dict().items()},
                    load(folder / f"final_net_{net}_ema.pth"))
    assert remover.weights[0].endswith("final_net_G_T_ema.pth")
    t_ema, _ = remover.remove_reflection(image)
    t_raw, _ = load_ibcln(str(folder), device="cpu", epoch="final").remove_reflection(image)
    assert not np.array_equal(t_ema, t_raw)

    hub = torch.hub.load(str(REPO_ROOT), "ibcln", source="local", weights=str(folder), device="cpu", ema=True)
    assert np.array_equal(hub.remove_reflection(image)[0], t_ema)

    out = tmp_path / "rr"
    proc = run_script("remove_reflection.py", str(runs.root / "testB" / "img0.png"), "--weights", str(folder),
                      "--device", "cpu", "--ema", "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "final_net_G_T_ema.pth" in proc.stdout
    assert np.array_equal(np.asarray(Image.open(out / "img0_T.png")), t_ema)

    test_args = ["--name", "whole", "--checkpoints_dir", str(runs.ckpt), "--results_dir", str(tmp_path),
                 "--gpu_ids", "-1", "--epoch", "final", "--ngf", "8", "--ema"]
    proc = run_script("test.py", "--dataroot", runs.root, *test_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_script("evaluate.py", "--sets", f"tiny={runs.root}", *test_args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "whole@final_ema" in proc.stdout
    tested = (tmp_path / "whole" / "test_final_ema" / "metrics.csv").read_text()
    evaluated = (tmp_path / "whole" / "eval_final_ema" / "tiny" / "metrics.csv").read_text()
    assert tested == evaluated


@pytest.mark.slow
def test_a_missing_ema_is_a_one_line_error_in_every_entry_point(runs, tmp_path):
    from models.api import load_ibcln

    folder = runs.folder("plain")
    missing = folder / "final_net_G_T_ema.pth"
    with pytest.raises(UserError, match="without --ema_decay") as err:
        load_ibcln(str(folder), device="cpu", ema=True)
    assert str(missing) in str(err.value) and "\n" not in str(err.value)
    common = ["--gpu_ids", "-1", "--name", "plain", "--checkpoints_dir", str(runs.ckpt), "--results_dir",
              str(tmp_path), "--epoch", "final", "--ngf", "8", "--ema"]
    for command in (["test.py", "--dataroot", str(runs.root), *common],
                    ["evaluate.py", "--sets", f"tiny={runs.root}", *common],
                    ["remove_reflection.py", str(runs.root / "testB"), "--weights", str(folder), "--device", "cpu",
                     "--ema", "--out", str(tmp_path / "rr")]):
        proc = run_script(*command)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, command[0] + proc.stderr[-2000:]
        assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0], command[0]
        assert "--ema_decay" in lines[0], command[0]


def test_evaluate_refuses_ema_with_predictions(tmp_path):
    from options.evaluate_options import EvaluateOptions

    with pytest.raises(UserError, match="--ema loads a checkpoint's EMA weights, --pred scores saved predictions"):
        EvaluateOptions().parse(["--sets", f"a={tmp_path}", "--pred", str(tmp_path), "--ema"], save=False)


@pytest.mark.slow
def test_under_torchrun_every_rank_keeps_the_same_ema(runs):
    out = runs.train("ddp", "--seed", "3", "--num_threads", "0", *EMA, torchrun=True)
    assert "largest weight difference from rank 0: 0, of the EMA: 0\n" in out
    assert (runs.folder("ddp") / "final_net_G_T_ema.pth").is_file()
