"""Dataset registry: ``--dataset_mode NAME`` loads data/<name>_dataset.py and its class <Name>Dataset.

To add a dataset ``foo``, create data/foo_dataset.py with a BaseDataset subclass called FooDataset
(underscores in the file name are ignored when matching the class name, case-insensitively).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from util import seeding
from util.errors import UserError
from util.registry import find_class
from util.signals import data_worker_signals

from .base_dataset import BaseDataset
from .sampling import EpochSampler


def find_dataset_using_name(dataset_name: str) -> type[BaseDataset]:
    """Return the BaseDataset subclass registered under ``dataset_name``."""
    return find_class("data", "dataset", dataset_name, BaseDataset, "--dataset_mode")


def get_option_setter(dataset_name: str):
    """Return the dataset class's ``modify_commandline_options``."""
    return find_dataset_using_name(dataset_name).modify_commandline_options


def open_test_set(opt: argparse.Namespace) -> BaseDataset:
    """Return the dataset named by ``opt.dataset_mode`` in test mode over ``opt.dataroot`` (no loader)."""
    dataset = find_dataset_using_name(opt.dataset_mode)(argparse.Namespace(**{**vars(opt), "is_train": False}))
    print(f"dataset [{type(dataset).__name__}] of size {len(dataset)} was created")
    return dataset


def create_dataset(opt: argparse.Namespace) -> DataLoader:
    """Return the training DataLoader over the dataset named by ``opt.dataset_mode`` (``.dataset`` is the dataset).

    Its sampler is an EpochSampler (data/sampling.py): it yields SampleKeys, from which the dataset draws
    every random choice of a sample, so the samples depend on --seed, the epoch, the position and the
    process's rank, never on --num_threads. The training loop sets the epoch and start position
    (loader.sampler.set_epoch). Without --seed (not through train.py) a seed is drawn here.
    """
    dataset = find_dataset_using_name(opt.dataset_mode)(opt)
    print(f"dataset [{type(dataset).__name__}] of size {len(dataset)} was created")
    distributed = getattr(opt, "distributed", False)
    sampler = EpochSampler(len(dataset), opt.seed if opt.seed is not None else seeding.draw_seed(),
                           shuffle=not opt.serial_batches, rank=opt.rank if distributed else 0,
                           world_size=opt.world_size if distributed else 1)
    return CheckedLoader(
        dataset,
        batch_size=opt.batch_size,
        sampler=sampler,
        num_workers=int(opt.num_threads),
        drop_last=False,
        worker_init_fn=data_worker_signals,
        # Page-locked batches, so that the model's copies to the GPU (non_blocking) overlap with compute.
        pin_memory=bool(opt.gpu_ids),
        # A private generator for the workers' base seed: the DataLoader would otherwise draw it from torch's
        # global generator at every iter(), and a resumed run, which starts one more iteration than the
        # uninterrupted run did, would then draw other dropout masks. The workers draw nothing from it.
        generator=torch.Generator(),
    )


class CheckedLoader(DataLoader):
    """A DataLoader whose batches report bad training files to the dataset, and whose worker errors stay one line.

    A batch's "bad_files" entry (files a worker or the main process could not use for it) is removed and
    handed to ``dataset.note_bad_files`` in the main process, which warns once per file and run and applies
    the 10% limit. A UserError raised in a worker is re-raised by torch with the worker's whole traceback
    as its message; it is re-raised here with the original one-line message.
    """

    def __iter__(self) -> Iterator:
        """Yield the batches of one epoch (see the class docstring)."""
        note = getattr(self.dataset, "note_bad_files", None)
        try:
            for batch in super().__iter__():
                if isinstance(batch, dict) and "bad_files" in batch:
                    reports = batch.pop("bad_files")
                    if note is not None:
                        note(list(reports))
                yield batch
        except UserError as err:
            raise UserError(worker_message(str(err))) from None


def worker_message(message: str) -> str:
    """Return the original message of a UserError re-raised from a DataLoader worker (message itself otherwise)."""
    if not message.startswith("Caught UserError in DataLoader worker"):
        return message
    found = re.findall(r"^(?:[\w.]+\.)?UserError: (.*)$", message, flags=re.MULTILINE)
    return found[-1] if found else message.splitlines()[0]
