#!/usr/bin/env bash
# The authors' training command (docs/method.md §7) on GPU 0. Extra arguments are passed on to train.py after the
# authors' flags, and argparse keeps a flag's last value: `bash train.sh --gpu_ids -1` trains on the CPU.
python train.py --dataroot datasets/reflection --name IBCLN --model IBCLN --dataset_mode resize_natural_3 --no_flip --gpu_ids 0 --display_id -1 "$@"
