#!/usr/bin/env bash
# The authors' training command (docs/method.md §7) on GPU 0; for the CPU replace --gpu_ids 0 with --gpu_ids -1.
python train.py --dataroot datasets/reflection --name IBCLN --model IBCLN --dataset_mode resize_natural_3 --no_flip --gpu_ids 0 --display_id -1
