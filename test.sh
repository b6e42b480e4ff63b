#!/usr/bin/env bash
# The authors' test command (docs/method.md §7) on GPU 0. Extra arguments are passed on to test.py after the
# authors' flags, and argparse keeps a flag's last value: `bash test.sh --gpu_ids -1` tests on the CPU.
python test.py --dataroot datasets/reflection --name IBCLN --model IBCLN --dataset_mode resize_natural_3 --preprocess "" --no_flip --epoch final --gpu_ids 0 "$@"
