"""Dataset registry: ``--dataset_mode NAME`` loads data/<name>_dataset.py and its class <Name>Dataset.

To add a dataset ``foo``, create data/foo_dataset.py with a BaseDataset subclass called FooDataset
(underscores in the file name are ignored when matching the class name, case-insensitively).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator

from torch.utils.data import DataLoader, DistributedSampler

from util.errors import UserError
from util.registry import find_class
from util.signals import exit_on_sigterm

from .base_dataset import BaseDataset


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
    """Return a DataLoader over the dataset named by ``opt.dataset_mode`` (its ``.dataset`` is the dataset)."""
    dataset = find_dataset_using_name(opt.dataset_mode)(opt)
    print(f"dataset [{type(dataset).__name__}] of size {len(dataset)} was created")
    # Shuffling, the workers' seeds and (with --num_threads 0) every random draw of the dataset come from
    # torch's global generator, which --seed seeds and the training state saves and restores.
    sampler = None
    if getattr(opt, "distributed", False) and opt.is_train:
        # Each process gets its own share of the epoch; train.py calls sampler.set_epoch every epoch.
        sampler = DistributedSampler(dataset, shuffle=not opt.serial_batches, seed=opt.seed or 0)
    return CheckedLoader(
        dataset,
        batch_size=opt.batch_size,
        shuffle=(not opt.serial_batches) and sampler is None,
        sampler=sampler,
        num_workers=int(opt.num_threads),
        drop_last=False,
        worker_init_fn=exit_on_sigterm,
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
