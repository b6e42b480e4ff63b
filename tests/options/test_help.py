"""--help of train.py, test.py and evaluate.py lists every flag the run would accept: the model's and the dataset's
own too, whether they are chosen by default, on the command line or in a --config file."""

from __future__ import annotations

import pytest

from options.evaluate_options import EvaluateOptions
from options.test_options import TestOptions
from options.train_options import TrainOptions

DATASET = ["--dataset_size", "--natural_prob", "--sigma_min", "--sigma_max", "--t_sampling"]
MODEL = ["--channels_last", "--amp", "--fused_gates", "--no_zero_state_skip", "--compile"]
ONLY = {TrainOptions: ["--vgg_weights", "--real_pairs", "--no_natural"],
        TestOptions: ["--tile", "--tile_overlap", "--keep_size", "--align", "--max_size"],
        EvaluateOptions: ["--tile", "--tile_overlap", "--keep_size", "--align", "--max_size", "--sets", "--pred"]}


def help_text(options, args: list[str], capsys) -> str:
    """Return what `<command> args --help` prints (the parser is built in this process)."""
    with pytest.raises(SystemExit) as stopped:
        options.gather_options([*args, "--help"])
    assert stopped.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("options", [TrainOptions, TestOptions, EvaluateOptions])
@pytest.mark.parametrize("chosen", ["default", "command line", "config file"])
def test_help_lists_the_model_s_and_the_dataset_s_flags(options, chosen, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("model: IBCLN\ndataset_mode: resize_natural_3\n")
    args = {"default": [], "command line": ["--model", "IBCLN", "--dataset_mode", "resize_natural_3"],
            "config file": ["--config", str(config)]}[chosen]
    listed = help_text(options(), args, capsys).split()
    missing = [flag for flag in [*DATASET, *MODEL, *ONLY[options]] if flag not in listed]
    assert not missing


def test_training_help_leaves_out_test_py_s_size_flags(capsys):
    listed = help_text(TrainOptions(), [], capsys).split()
    assert {"--val_keep_size", "--val_align", "--val_max_size"} <= set(listed)
    assert not {"--keep_size", "--align", "--max_size", "--tile"} & set(listed)
