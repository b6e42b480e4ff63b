"""Dataset registry: ``--dataset_mode NAME`` loads data/<name>_dataset.py and its class <Name>Dataset.

To add a dataset ``foo``, create data/foo_dataset.py with a BaseDataset subclass called FooDataset
(underscores in the file name are ignored when matching the class name, case-insensitively).
"""

from __future__ import annotations

import argparse

from torch.utils.data import DataLoader, DistributedSampler

from util.registry import find_class

from .base_dataset import BaseDataset


def find_dataset_using_name(dataset_name: str) -> type[BaseDataset]:
    """Return the BaseDataset subclass registered under ``dataset_name``."""
    return find_class("data", "dataset", dataset_name, BaseDataset, "--dataset_mode")


def get_option_setter(dataset_name: str):
    """Return the dataset class's ``modify_commandline_options``."""
    return find_dataset_using_name(dataset_name).modify_commandline_options


def create_dataset(opt: argparse.Namespace) -> DataLoader:
    """Return a DataLoader over the dataset named by ``opt.dataset_mode`` (its ``.dataset`` is the dataset)."""
    dataset = find_dataset_using_name(opt.dataset_mode)(opt)
    print(f"dataset [{type(dataset).__name__}] of size {len(dataset)} was created")
    # Shuffling, the workers' seeds and (with --num_threads 0) every random draw of the dataset come from
    # torch's global generator, which --seed seeds and the training state saves and restores.
    sampler = None
    if getattr(opt, "distributed", False) and opt.is_train:
        # Each process gets its own share of the epoch; train.py calls sampler.set_epoch every epoch.
        sampler = DistributedSampler(dataset, shuffle=not opt.serial_batches, seed=opt.seed or 0)
    return DataLoader(
        dataset,
        batch_size=opt.batch_size,
        shuffle=(not opt.serial_batches) and sampler is None,
        sampler=sampler,
        num_workers=int(opt.num_threads),
        drop_last=False,
    )
