#!/usr/bin/env bash
# The authors' test command (docs/method.md §7) on GPU 0; for the CPU replace --gpu_ids 0 with --gpu_ids -1.
python test.py --dataroot datasets/reflection --name IBCLN --model IBCLN --dataset_mode resize_natural_3 --preprocess "" --no_flip --epoch final --gpu_ids 0
