"""Bad input, faults and untrusted files: one-line errors, nothing lost, nothing executed."""

from __future__ import annotations

import os
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch
from conftest import build_tiny_dataset, run_script, skimage_photo, write_png

from models.networks import ConvLSTMGenerator

TRAIN_FLAGS = ["--model", "IBCLN", "--gpu_ids", "-1", "--display_id", "-1", "--vgg_weights", "random",
               "--dataset_size", "2", "--load_size", "36", "--crop_size", "32", "--num_threads", "0",
               "--niter", "1", "--seed", "3"]


def assert_one_line_error(proc, *needles: str) -> str:
    """Assert a non-zero exit with a single 'error: ...' line on stderr holding every needle; return it."""
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def save_random_generators(ckpt: Path, prefix: str = "final", seed: int = 0) -> None:
    """Write random-init G_T / G_R checkpoints (torch seeded with seed) as <prefix>_net_G_*.pth."""
    ckpt.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for name in ("G_T", "G_R"):
        torch.save(ConvLSTMGenerator().state_dict(), ckpt / f"{prefix}_net_{name}.pth")


def test_missing_dataroot(tmp_path):
    proc = run_script("test.py", "--dataroot", tmp_path / "nowhere", "--gpu_ids", "-1",
                      "--checkpoints_dir", tmp_path / "c")
    assert_one_line_error(proc, "nowhere", "not found")


@pytest.mark.parametrize("missing", ["trainA1", "trainA2"])
def test_missing_or_empty_training_folder(tmp_path, missing):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    for f in (root / missing).iterdir():
        f.unlink()
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS)
    assert_one_line_error(proc, missing, "no images")
    (root / missing).rmdir()
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS)
    assert_one_line_error(proc, missing, "not found", "must contain")


def test_missing_testB(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    proc = run_script("test.py", "--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c")
    assert_one_line_error(proc, "testB", "must contain")


def test_unpaired_natural_names(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", natural=2, n_test=0)
    os.rename(root / "natural_I" / "n1.png", root / "natural_I" / "other.png")
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *TRAIN_FLAGS)
    assert_one_line_error(proc, "n1.png", "other.png")


def test_undecodable_test_image_is_named_or_skipped(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=2)
    (root / "testB" / "broken.png").write_text("this is not a PNG")
    ckpt = tmp_path / "c"
    save_random_generators(ckpt / "exp")
    common = ["--dataroot", root, "--name", "exp", "--checkpoints_dir", ckpt, "--results_dir", tmp_path / "r",
              "--gpu_ids", "-1", "--epoch", "final"]
    assert_one_line_error(run_script("test.py", *common), "broken.png", "cannot be decoded")
    proc = run_script("test.py", *common, "--skip_bad_images")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "broken.png" in proc.stderr
    images = os.listdir(tmp_path / "r" / "exp" / "test_final" / "images")
    assert any(n.startswith("img0_") for n in images) and not any(n.startswith("broken") for n in images)


def test_image_smaller_than_4x4_at_test(tmp_path):
    root = tmp_path / "d"
    write_png(skimage_photo("astronaut", (3, 8)), root / "testB" / "tiny.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert_one_line_error(proc, "tiny.png", "4x4")


def test_missing_epoch_lists_the_epochs_present(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    save_random_generators(tmp_path / "c" / "exp", "5")
    save_random_generators(tmp_path / "c" / "exp", "latest")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--gpu_ids", "-1", "--epoch", "7")
    assert_one_line_error(proc, "7_net_G_T.pth", "5, latest")


def test_checkpoint_of_another_architecture_or_corrupt(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    ckpt = tmp_path / "c" / "exp"
    save_random_generators(ckpt)
    torch.save({"model.0.weight": torch.zeros(64, 3, 4, 4)}, ckpt / "final_net_G_T.pth")
    common = ["--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c", "--gpu_ids", "-1",
              "--epoch", "final", "--results_dir", tmp_path / "r"]
    assert_one_line_error(run_script("test.py", *common), "final_net_G_T.pth", "conv1.0.weight", "model.0.weight")
    data = (ckpt / "final_net_G_R.pth").read_bytes()
    (ckpt / "final_net_G_R.pth").write_bytes(data[: len(data) // 2])
    save_random_generators(ckpt, "other")
    torch.save(torch.load(ckpt / "other_net_G_T.pth"), ckpt / "final_net_G_T.pth")
    assert_one_line_error(run_script("test.py", *common), "final_net_G_R.pth")


class Payload:
    """Unpickling this runs a shell command: what a malicious checkpoint would do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_that_runs_code_is_refused(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_train=0, n_reflection=0, n_test=1)
    ckpt = tmp_path / "c" / "exp"
    save_random_generators(ckpt)
    marker = tmp_path / "pwned"
    state = torch.load(ckpt / "final_net_G_T.pth")
    state["conv1.0.bias"] = Payload(marker)
    torch.save(state, ckpt / "final_net_G_T.pth")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--gpu_ids", "-1", "--epoch", "final", "--results_dir", tmp_path / "r")
    assert_one_line_error(proc, "final_net_G_T.pth", "weights_only")
    assert not marker.exists()


def test_gpu_request_without_cuda(tmp_path):
    proc = run_script("test.py", "--dataroot", tmp_path, "--gpu_ids", "0", "--checkpoints_dir", tmp_path / "c",
                      cuda_visible=False)
    assert_one_line_error(proc, "--gpu_ids -1")


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags: list[str] = []
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs["src"])
        if tag == "a":
            self.hrefs.append(attrs["href"])


def test_odd_file_names_are_escaped_and_linked(tmp_path):
    root = tmp_path / "d"
    # A file name cannot hold '/', so the closing tag of the example becomes '<script>' again.
    names = ["with space", "naïve_日本", 'x"><script>alert(1)<script>', "a&b <img src=x onerror=alert(1)>"]
    for name in names:
        photo = skimage_photo("astronaut", (32, 36))
        write_png(photo, root / "testB" / f"{name}.png")
        write_png(photo, root / "testA1" / f"{name}.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final")
    assert proc.returncode == 0, proc.stderr[-3000:]
    web = tmp_path / "r" / "exp" / "test_final"
    page = (web / "index.html").read_text(encoding="utf-8")
    parser = _Links()
    parser.feed(page)
    assert "script" not in parser.tags
    assert "<script>" not in page
    assert len(parser.srcs) == 10 * len(names)
    for link in parser.srcs + [h for h in parser.hrefs if not h.startswith("#")]:  # "#image-k": in-page
        assert (web / unquote(link)).is_file(), link
    for name in names:
        assert (web / "images" / f"{name}_fake_Ts_03.png").is_file()
    assert len(re.findall(r"<tr>", page)) >= len(names) + 2  # metrics header, rows, mean


def test_nan_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    root = build_tiny_dataset(tmp_path / "d", n_test=0)
    ckpt = tmp_path / "c" / "exp"
    ckpt.mkdir(parents=True)
    torch.manual_seed(0)
    from models.networks import NLayerDiscriminator

    gen = ConvLSTMGenerator()
    broken = gen.state_dict()
    broken["output.0.bias"] = torch.full((3,), float("nan"))
    torch.save(broken, ckpt / "latest_net_G_T.pth")
    torch.save(ConvLSTMGenerator().state_dict(), ckpt / "latest_net_G_R.pth")
    torch.save(NLayerDiscriminator().state_dict(), ckpt / "latest_net_D.pth")
    before = {p.name: p.read_bytes() for p in ckpt.iterdir()}
    proc = run_script("train.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      *TRAIN_FLAGS, "--continue_train")
    line = assert_one_line_error(proc, "loss idt_T is nan", "epoch 1", "sample 2", "intact")
    assert "training stopped" in line
    after = {p.name: p.read_bytes() for p in ckpt.glob("*.pth")}
    assert after == before


@pytest.mark.parametrize("workers", ["0", "2"])
def test_undecodable_training_images_are_skipped_then_bounded(tmp_path, workers):
    """One warning per bad file and run (2 epochs: DataLoader workers are re-created for each), then the 10% limit."""
    root = build_tiny_dataset(tmp_path / "d", n_train=12, n_reflection=8, n_test=0)
    (root / "trainA1" / "t0.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    flags = [*TRAIN_FLAGS, "--dataset_size", "4", "--serial_batches", "--num_threads", workers, "--overwrite"]
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *flags, "--niter", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("skipping a training image") == 1 and "t0.png" in proc.stderr
    for name in ("t1.png", "t10.png", "t11.png"):  # sorted after t0: sample 0 meets all of them, whoever loads it
        (root / "trainA1" / name).write_text("not an image")
    proc = run_script("train.py", "--dataroot", root, "--checkpoints_dir", tmp_path / "c", *flags)
    assert_one_line_error(proc, "cannot be decoded", "more than 10%")


def test_max_size_downscales_large_test_inputs(tmp_path):
    root = tmp_path / "d"
    write_png(skimage_photo("astronaut", (90, 120)), root / "testB" / "big.png")
    save_random_generators(tmp_path / "c" / "exp")
    proc = run_script("test.py", "--dataroot", root, "--name", "exp", "--checkpoints_dir", tmp_path / "c",
                      "--results_dir", tmp_path / "r", "--gpu_ids", "-1", "--epoch", "final", "--max_size", "60")
    assert proc.returncode == 0, proc.stderr[-3000:]
    from PIL import Image

    with Image.open(tmp_path / "r" / "exp" / "test_final" / "images" / "big_fake_Ts_03.png") as img:
        assert img.size == (60, 44)  # 120x90 -> 60x45 -> multiple of 4


def test_out_of_memory_names_the_image_and_the_option():
    from evaluation.scoring import infer
    from util.errors import UserError

    class Model:
        def __init__(self, error):
            self.error = error

        def set_input(self, data):
            pass

        def test(self, scored_only=False):
            raise self.error

    data = {"I": torch.zeros(1, 3, 2048, 1536), "I_path": ["photos/huge.jpg"]}
    with pytest.raises(UserError, match=r"photos/huge.jpg.*1536x2048 image \(GPU\).*--max_size.*--gpu_ids -1"):
        infer(Model(torch.OutOfMemoryError("CUDA out of memory")), data)
    # The CPU allocator's failure is a plain RuntimeError: the same message, without the CPU suggestion.
    cpu_error = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                             "you tried to allocate 90000000000 bytes.")
    with pytest.raises(UserError, match=r"photos/huge.jpg.*\(CPU\).*--tile.*--max_size") as caught:
        infer(Model(cpu_error), data)
    assert "--gpu_ids" not in str(caught.value)
    with pytest.raises(RuntimeError, match="some other failure"):  # other errors keep their traceback
        infer(Model(RuntimeError("some other failure")), data)


@pytest.mark.parametrize("preprocess", ["crop", "scale_width_and_crop", "resize_and_crop"])
def test_training_photos_smaller_than_the_crop_are_upscaled(tmp_path, preprocess):
    """The documented choice: a photo smaller than --crop_size is enlarged (aspect kept) so the crop fits."""
    from conftest import parse_options

    from data.resize_natural_3_dataset import ResizeNatural3Dataset

    root = build_tiny_dataset(tmp_path / "d", n_train=2, n_reflection=2, n_test=0, train_size=(20, 30))
    opt = parse_options("train", ["--dataroot", root, "--gpu_ids", "-1", "--checkpoints_dir", tmp_path / "c",
                                  "--preprocess", preprocess, "--load_size", "24", "--crop_size", "48",
                                  "--num_threads", "0", "--seed", "1", "--vgg_weights", "random"])
    sample = ResizeNatural3Dataset(opt)[0]
    assert sample["T"].shape == (3, 48, 48) and sample["I"].shape == (3, 48, 48)
    assert sample["T2"].shape == (3, 24, 24)
