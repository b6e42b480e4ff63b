"""Train IBCLN: python train.py --dataroot DIR --name NAME --model IBCLN --dataset_mode resize_natural_3 ...

The loop lives in training/loop.py; the flags in options/train_options.py and the model's and dataset's
modify_commandline_options.
"""

from options.base_options import run_cli
from options.train_options import TrainOptions
from training.loop import main

if __name__ == "__main__":
    run_cli(main, TrainOptions())
