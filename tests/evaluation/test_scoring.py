"""Scoring a test set (evaluation/scoring.py): running out of memory on an image is one line naming it."""

from __future__ import annotations

import pytest
import torch

from evaluation.scoring import infer
from util.errors import UserError


def test_out_of_memory_names_the_image_and_the_option():
    class Model:
        def __init__(self, error):
            self.error = error

        def set_input(self, data):
            pass

        def test(self, scored_only=False):
            raise self.error

    data = {"I": torch.zeros(1, 3, 2048, 1536), "I_path": ["photos/huge.jpg"]}
    with pytest.raises(UserError, match=r"photos/huge.jpg.*1536x2048 image \(GPU\).*--max_size.*--gpu_ids -1"):
        infer(Model(torch.OutOfMemoryError("CUDA out of memory")), data)
    # The CPU allocator's failure is a plain RuntimeError: the same message, without the CPU suggestion.
    cpu_error = RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not enough memory: "
                             "you tried to allocate 90000000000 bytes.")
    with pytest.raises(UserError, match=r"photos/huge.jpg.*\(CPU\).*--tile.*--max_size") as caught:
        infer(Model(cpu_error), data)
    assert "--gpu_ids" not in str(caught.value)
    with pytest.raises(RuntimeError, match="some other failure"):  # other errors keep their traceback
        infer(Model(RuntimeError("some other failure")), data)
