"""Config files (options/config_file.py): --config FILE.yaml for train.py, test.py and evaluate.py, the config a
training run saves (checkpoints/<name>/config.yaml), and the files under configs/."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest
import yaml
from helpers import REPO_ROOT, assert_same_weights, build_tiny_dataset, run_script

import data
from options import config_file
from options.evaluate_options import EvaluateOptions
from options.test_options import TestOptions
from options.train_options import CONFIG_NAME, TrainOptions, record_config, run_config
from util.errors import UserError

CONFIGS = sorted((REPO_ROOT / "configs").glob("*.yaml"))
# The first line of each file under configs/ says which command reads it.
COMMANDS = {"train.py": TrainOptions, "test.py": TestOptions}


def write(folder: Path, text: str, name: str = "run.yaml") -> str:
    """Write a config file and return its path."""
    path = folder / name
    path.write_text(text)
    return str(path)


def train(*args: str) -> argparse.Namespace:
    """Return train.py's options gathered from args (no checks, nothing written)."""
    return TrainOptions().gather_options(list(args))


def error(options_class, *args: str) -> str:
    """Return the UserError that gathering args raises, asserting it is one line."""
    with pytest.raises(UserError) as info:
        options_class().gather_options(list(args))
    message = str(info.value)
    assert "\n" not in message
    return message


# ----- reading a file -------------------------------------------------------------------------------------------


def test_a_file_sets_flags_by_name_and_the_command_line_overrides_it(tmp_path):
    path = write(tmp_path, "dataroot: data/x\nname: from_file\ncrop_size: 64\nlr: 2e-4\nno_flip: true\n"
                           "display_id: -1\n")
    opt = train("--config", path, "--crop_size", "32", "--display_id", "2")
    assert opt.dataroot == "data/x" and opt.name == "from_file"  # --dataroot is no longer required
    assert opt.crop_size == 32 and opt.display_id == 2  # the command line wins
    assert opt.lr == 0.0002 and opt.no_flip is True and opt.config == path
    assert train("--dataroot", "d").config == ""  # without --config nothing changes


def test_bool_flags_take_true_or_false_only(tmp_path):
    assert train("--config", write(tmp_path, "dataroot: d\nno_flip: true\n")).no_flip is True
    assert train("--config", write(tmp_path, "dataroot: d\nno_flip: false\n")).no_flip is False
    # test.py flips nothing by default: a file can say otherwise, which the command line cannot.
    assert TestOptions().gather_options(["--config", write(tmp_path, "dataroot: d\nno_flip: false\n")]).no_flip is False
    for value in ("1", "'yes'", "[true]"):
        path = write(tmp_path, f"dataroot: d\nno_flip: {value}\n")
        assert f"{path}: no_flip: expected true or false" in error(TrainOptions, "--config", path)


def test_lists_for_flags_of_several_values_and_for_comma_separated_ones(tmp_path):
    assert train("--config", write(tmp_path, "dataroot: d\ngpu_ids: [0, 1]\n")).gpu_ids == "0,1"
    assert train("--config", write(tmp_path, "dataroot: d\ngpu_ids: -1\n")).gpu_ids == "-1"
    assert train("--config", write(tmp_path, "dataroot: d\nreal_pairs: [a, b]\n")).real_pairs == "a,b"
    opt = EvaluateOptions().gather_options(["--config", write(tmp_path, "sets: [x=a, y=b]\nname: [r1, r2]\n"
                                                                        "epoch: [5, final]\n")])
    assert opt.sets == ["x=a", "y=b"] and opt.names == ["r1", "r2"] and opt.epochs == ["5", "final"]
    assert EvaluateOptions().gather_options(["--config", write(tmp_path, "sets: x=a\n")]).sets == ["x=a"]
    path = write(tmp_path, "dataroot: d\ncrop_size: [64, 32]\n")
    assert f"{path}: crop_size: expected one value, found a list" in error(TrainOptions, "--config", path)
    path = write(tmp_path, "sets: []\n")
    assert f"{path}: sets: expected one value or more" in error(EvaluateOptions, "--config", path)
    path = write(tmp_path, "sets: [x=a, [y]]\n")
    assert f"{path}: sets: expected a number or a text, found [y]" in error(EvaluateOptions, "--config", path)


def test_choices_are_checked_and_a_flag_with_an_optional_value_takes_true_for_the_flag_alone(tmp_path):
    path = write(tmp_path, "dataroot: d\npsnr: average\n")
    assert error(TrainOptions, "--config", path) == f"{path}: psnr: 'average' is not one of bandwise, pooled"
    assert train("--config", write(tmp_path, "dataroot: d\namp: true\n")).amp == "auto"  # = --amp alone
    assert train("--config", write(tmp_path, "dataroot: d\namp: bf16\n")).amp == "bf16"
    assert train("--config", write(tmp_path, "dataroot: d\nchannels_last: 'off'\n")).channels_last == "off"
    path = write(tmp_path, "dataroot: d\nchannels_last: off\n")  # YAML reads an unquoted off as false
    assert "channels_last: expected a value, found false" in error(TrainOptions, "--config", path)
    assert "quote them" in error(TrainOptions, "--config", path)
    assert train("--config", write(tmp_path, "dataroot: d\ncontinue_train: auto\n")).continue_train == "auto"
    assert train("--config", write(tmp_path, "dataroot: d\ncontinue_train: true\n")).continue_train is True
    assert train("--config", write(tmp_path, "dataroot: d\ncontinue_train: false\n")).continue_train is False
    path = write(tmp_path, "dataroot: d\ncontinue_train: now\n")
    assert "continue_train: 'now': --continue_train takes no value or 'auto'" in error(TrainOptions, "--config", path)


def test_a_value_of_the_wrong_type_is_one_line_naming_the_key_and_the_file(tmp_path):
    path = write(tmp_path, "dataroot: d\ncrop_size: abc\n")
    assert error(TrainOptions, "--config", path) == f"{path}: crop_size: invalid int value 'abc'"
    path = write(tmp_path, "dataroot: d\ncrop_size: 64.5\n")
    assert error(TrainOptions, "--config", path) == f"{path}: crop_size: invalid int value '64.5'"
    path = write(tmp_path, "dataroot: d\nname: yes\n")
    assert f"{path}: name: expected a value, found true" in error(TrainOptions, "--config", path)
    path = write(tmp_path, "dataroot: d\ncrop_size:\n")
    assert f"{path}: crop_size: no value" in error(TrainOptions, "--config", path)
    path = write(tmp_path, "dataroot: d\nlr: {a: 1}\n")
    assert f"{path}: lr: expected a number or a text, found {{a: 1}}" in error(TrainOptions, "--config", path)
    assert train("--config", write(tmp_path, "dataroot: d\nseed: null\n")).seed is None  # a default of None
    assert train("--config", write(tmp_path, "dataroot: d\nseed: 7\n")).seed == 7


def test_an_unknown_key_is_one_line_naming_it_the_file_and_the_closest_flags(tmp_path):
    path = write(tmp_path, "dataroot: d\ncrop_sise: 64\n")
    message = error(TrainOptions, "--config", path)
    assert message.startswith(f"{path}: unknown key 'crop_sise': not a flag of ")
    assert "with --model ibcln --dataset_mode resize_natural_3; did you mean crop_size" in message
    path = write(tmp_path, "dataroot: d\n--crop_size: 64\n")
    assert "write 'crop_size:' without the dashes" in error(TrainOptions, "--config", path)
    path = write(tmp_path, "dataroot: d\nconfig: other.yaml\n")
    assert error(TrainOptions, "--config", path) == f"{path}: 'config' cannot be set in a config file"
    path = write(tmp_path, "dataroot: d\nvgg_weights: random\n")  # a training flag of the model
    assert f"{path}: unknown key 'vgg_weights'" in error(TestOptions, "--config", path)


def test_bad_yaml_names_the_file_and_the_line(tmp_path):
    path = write(tmp_path, "dataroot: d\ncrop_size: 64\n  niter: [\n")
    assert re.fullmatch(re.escape(path) + r", line 3: not valid YAML \(.+\)", error(TrainOptions, "--config", path))
    path = write(tmp_path, "- dataroot\n- d\n")
    assert error(TrainOptions, "--config", path) == (f"{path}: expected 'flag: value' lines (a YAML mapping), "
                                                      "found a list")
    path = write(tmp_path, "1: 2\n")
    assert error(TrainOptions, "--config", path) == f"{path}: 1 is not a flag name"
    missing = str(tmp_path / "none.yaml")
    assert error(TrainOptions, "--config", missing).startswith(f"--config {missing}: cannot be read")
    assert train("--config", write(tmp_path, "# comments only\n"), "--dataroot", "d").dataroot == "d"


def test_the_model_and_dataset_flags_can_be_set(tmp_path):
    path = write(tmp_path, "dataroot: d\nvgg_weights: random\nfused_gates: true\ndataset_size: 8\n"
                           "natural_prob: 0.5\nsigma_max: 4\nt_sampling: uniform\n")
    opt = train("--config", path, "--sigma_max", "4.5")
    assert (opt.vgg_weights, opt.fused_gates, opt.dataset_size, opt.natural_prob) == ("random", True, 8, 0.5)
    assert opt.sigma_max == 4.5 and opt.t_sampling == "uniform"
    opt = TestOptions().gather_options(["--config", write(tmp_path, "dataroot: d\ntile: 256\ntile_overlap: 64\n")])
    assert (opt.tile, opt.tile_overlap) == (256, 64)


def test_model_and_dataset_mode_in_the_file_pick_which_flags_apply(tmp_path, monkeypatch):
    real_setter = data.get_option_setter

    def setter(name: str):
        if name != "fake":
            return real_setter(name)

        def add(parser, is_train):
            parser.add_argument("--fake_flag", type=int, default=0)
            return parser
        return add

    monkeypatch.setattr(data, "get_option_setter", setter)
    path = write(tmp_path, "dataroot: d\ndataset_mode: fake\nfake_flag: 3\n")
    assert train("--config", path).fake_flag == 3
    # --dataset_mode on the command line wins: the file's flag of the fake dataset is then unknown.
    assert f"{path}: unknown key 'fake_flag'" in error(TrainOptions, "--config", path, "--dataset_mode",
                                                       "resize_natural_3")
    path = write(tmp_path, "dataroot: d\nmodel: pix2pix\n")
    with pytest.raises(SystemExit):  # the file's model is looked up, as --model's is
        train("--config", path)


def test_help_lists_config_and_the_flags_of_the_model_and_dataset(capsys):
    with pytest.raises(SystemExit) as info:
        train("--help")
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--config FILE.yaml", "--vgg_weights", "--dataset_size", "--natural_prob", "--niter"):
        assert flag in out
    assert "built-in ones, not the file's" in " ".join(out.split())


# ----- the saved config -----------------------------------------------------------------------------------------


def test_the_saved_config_reads_back_to_the_run_s_options(make_options, tmp_path, kernel_flags):
    user = write(tmp_path, "crop_size: 48\nno_flip: true\n", "user.yaml")
    opt = make_options("train", "--dataroot", str(tmp_path), "--name", "run", "--suffix", "s{crop_size}",
                       "--config", user, "--seed", "11", "--max_dataset_size", "inf", "--continue_train",
                       "auto", "--overwrite")
    values = run_config(opt)
    assert not {"config", "continue_train", "overwrite", "help"} & set(values)
    assert values["name"] == "run_s48" and values["suffix"] == "" and values["gpu_ids"] == "-1"
    path = str(tmp_path / CONFIG_NAME)
    config_file.write(path, values, "a header")
    assert Path(path).read_text().startswith("# a header\n")
    again = train("--config", path)
    assert {key: getattr(again, key) for key in values} == values
    assert again.continue_train is False and again.overwrite is False


def test_a_new_run_writes_its_config_and_a_resumed_one_keeps_it_and_says_what_differs(make_options, tmp_path,
                                                                                       capsys, kernel_flags):
    args = ("--dataroot", str(tmp_path), "--name", "run", "--seed", "5")
    opt = make_options("train", *args, "--niter", "3")
    record_config(opt)
    path = tmp_path / "checkpoints" / "run" / CONFIG_NAME
    text = path.read_text()
    assert f"--config {path} --name NEW_NAME" in text and yaml.safe_load(text)["niter"] == 3
    resumed = make_options("train", *args, "--niter", "6", "--continue_train", "--epoch", "2", "--lr", "0.0001")
    record_config(resumed)
    assert path.read_text() == text
    note = capsys.readouterr().out
    assert f"note: {path} keeps the options the run was started with; this start differs in " in note
    assert "niter 3 -> 6" in note and "lr 0.0002 -> 0.0001" in note and "epoch" not in note.split("differs")[1]
    record_config(make_options("train", *args, "--niter", "3", "--continue_train"))
    assert "note" not in capsys.readouterr().out  # the same options: nothing to say


# ----- the files under configs/ ---------------------------------------------------------------------------------


def command_of(path: Path) -> str:
    """Return the command a file under configs/ is for, from its first line '# <command> config: ...'."""
    first = path.read_text().splitlines()[0]
    match = re.fullmatch(r"# (\S+) config: .+", first)
    assert match and match.group(1) in COMMANDS, f"{path.name}: first line {first!r}"
    return match.group(1)


def places(options, tmp_path: Path) -> list[str]:
    """Return flags that put a parsed run's folders under tmp_path (checkpoints; results for test.py)."""
    return ["--checkpoints_dir", str(tmp_path / "ck")] + ([] if options.is_train else
                                                          ["--results_dir", str(tmp_path / "results")])


def parse_shipped(path: Path, tmp_path: Path) -> argparse.Namespace:
    """Return the options of a file under configs/ parsed by its command's parser, on the CPU."""
    options = COMMANDS[command_of(path)]()
    return options.parse(["--config", str(path), "--gpu_ids", "-1", *places(options, tmp_path)], save=False)


def test_configs_has_the_promised_files():
    assert {path.name for path in CONFIGS} >= {"paper.yaml", "paper_test.yaml", "finetune.yaml", "demo.yaml",
                                               "cpu_smoke.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=[path.name for path in CONFIGS])
def test_every_file_under_configs_parses_with_its_command(path, tmp_path, kernel_flags):
    opt = parse_shipped(path, tmp_path)
    assert opt.config == str(path)
    keys = yaml.safe_load(path.read_text())
    assert all(key in vars(opt) for key in keys)


def authors_command(script: str) -> list[str]:
    """Return the flags of the authors' command in train.sh or test.sh, on the CPU."""
    line = next(line for line in (REPO_ROOT / script).read_text().splitlines() if line.startswith("python "))
    args = shlex.split(line)[2:-1]  # python <driver> ... "$@"
    args[args.index("--gpu_ids") + 1] = "-1"
    return args


@pytest.mark.parametrize(("config", "script"), [("paper.yaml", "train.sh"), ("paper_test.yaml", "test.sh")])
def test_the_paper_configs_are_the_authors_commands(config, script, tmp_path, kernel_flags):
    options = COMMANDS[command_of(REPO_ROOT / "configs" / config)]
    from_file = vars(parse_shipped(REPO_ROOT / "configs" / config, tmp_path))
    from_command = vars(options().parse([*authors_command(script), *places(options, tmp_path)], save=False))
    assert from_file.pop("config") and not from_command.pop("config")
    assert from_file == from_command


def test_the_demo_config_is_the_demo_s_training_command(tmp_path, kernel_flags):
    """demo.sh's training: configs/demo.yaml plus what depends on the machine (the run its figures measured)."""
    demo = (REPO_ROOT / "demo.sh").read_text()
    assert 'train.py --config "$CONFIG" --gpu_ids "$gpu_ids" --vgg_weights "$vgg" --overwrite' in demo
    assert "CONFIG=configs/demo.yaml\nNAME=reflection_demo\nDATA=datasets/$NAME\n" in demo
    machine = ["--gpu_ids", "-1", "--vgg_weights", "random", "--overwrite", "--checkpoints_dir", str(tmp_path / "ck")]
    from_file = vars(TrainOptions().parse(["--config", "configs/demo.yaml", *machine], save=False))
    command = ("--dataroot datasets/reflection_demo --name reflection_demo --model IBCLN --dataset_mode "
               "resize_natural_3 --display_id -1 --seed 1 --num_threads 0 --batch_size 2 --load_size 80 --crop_size 64 "
               "--dataset_size 120 --niter 2 --niter_decay 2 --print_freq 20 --save_epoch_freq 100 "
               "--val_dataroot datasets/reflection_demo")
    from_command = vars(TrainOptions().parse([*shlex.split(command), *machine], save=False))
    assert from_file.pop("config") == "configs/demo.yaml" and from_command.pop("config") == ""
    assert from_file == from_command


# ----- runs -----------------------------------------------------------------------------------------------------

RUN = {"model": "IBCLN", "gpu_ids": -1, "display_id": -1, "vgg_weights": "random", "ngf": 8, "ndf": 8,
       "dataset_size": 4, "batch_size": 2, "load_size": 36, "crop_size": 32, "num_threads": 0, "niter": 1,
       "niter_decay": 1, "lr": 0.0003, "no_flip": True, "natural_prob": 0.5, "print_freq": 2, "save_epoch_freq": 0}


def as_flags(values: dict) -> list[str]:
    """Return values as command-line flags (true = the flag alone)."""
    flags: list[str] = []
    for key, value in values.items():
        flags += [f"--{key}"] if value is True else [f"--{key}", str(value)]
    return flags


def run_train(*args: str) -> str:
    """Run train.py to the end and return its stdout."""
    proc = run_script("train.py", *args, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def saved_config(folder: Path) -> dict:
    """Return a run's config.yaml, without its name."""
    values = yaml.safe_load((folder / CONFIG_NAME).read_text())
    values.pop("name")
    return values


@pytest.mark.slow
def test_a_config_file_run_and_a_command_line_run_train_the_same_weights(tmp_path):
    root = build_tiny_dataset(tmp_path / "data", natural=2)
    ck = tmp_path / "checkpoints"
    common = {"dataroot": str(root), "checkpoints_dir": str(ck), "seed": 5, **RUN}
    path = write(tmp_path, yaml.safe_dump({**common, "name": "overridden"}))
    run_train("--config", path, "--name", "from_file")
    run_train(*as_flags(common), "--name", "from_flags")
    assert_same_weights(ck / "from_file", ck / "from_flags")
    assert saved_config(ck / "from_file") == saved_config(ck / "from_flags")


@pytest.mark.slow
def test_the_saved_config_repeats_an_unseeded_run(tmp_path):
    root = build_tiny_dataset(tmp_path / "data", natural=2)
    ck = tmp_path / "checkpoints"
    out = run_train("--dataroot", str(root), "--checkpoints_dir", str(ck), "--name", "first", *as_flags(RUN))
    seed = int(re.search(r"^seed: (\d+) \(drawn at random", out, flags=re.MULTILINE).group(1))
    assert yaml.safe_load((ck / "first" / CONFIG_NAME).read_text())["seed"] == seed
    run_train("--config", str(ck / "first" / CONFIG_NAME), "--name", "again")
    assert_same_weights(ck / "first", ck / "again")
    assert saved_config(ck / "first") == saved_config(ck / "again")
