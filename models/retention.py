"""Which checkpoints a run keeps besides 'latest', 'final' and 'best': the K best by validation score (--keep_best)
and the N last epoch checkpoints (--keep_last). docs/training.md#keeping-the-best-k-and-the-last-n says how.

--keep_best K: after each validation, the K best validated epochs so far (by the score 'best' follows, the mean
PSNR of the model's result; the earlier epoch on a tie) are kept as full checkpoints ``best_epoch<N>_*``
(networks, their EMA with --ema_decay, training state), listed with their scores, best first, in
``best_checkpoints.json`` (written atomically). The index is the truth: a best_epoch checkpoint it does not list
(one that dropped out, or one left by a crash between the save and the index) is removed.

--keep_last N: after the epoch checkpoint ``<E>`` is saved (--save_epoch_freq), the epoch checkpoints of epochs up
to E other than the N latest are removed. Later ones (left by a resume from an earlier epoch) stay until the run
passes them.

Nothing here touches 'latest', 'final', 'best' or iter_<n>, so the files a resume needs ('latest' and its
training state, which --continue_train auto reads) are never removed. The training loop and validation call these
on rank 0 only, while it holds the run's lock (util/run_lock.py).
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable

from util.errors import UserError
from util.files import atomic_write

from . import checkpoint

INDEX_NAME = "best_checkpoints.json"
BEST_EPOCH = re.compile(r"best_epoch(\d+)")


def best_prefix(epoch: int) -> str:
    """Return the prefix of the best-k checkpoint of an epoch, best_epoch<N>."""
    return f"best_epoch{epoch}"


def ranked(entries: Iterable[dict], key: str, keep: int) -> list[dict]:
    """Return the (at most) keep entries with the highest entry[key], best first, the earlier epoch first on a tie;
    an entry whose score is NaN (no image scored) is never kept."""
    scored = [entry for entry in entries if not math.isnan(entry[key])]
    return sorted(scored, key=lambda entry: (-entry[key], entry["epoch"]))[:keep]


def epochs_to_prune(epochs: Iterable[int], current: int, keep: int) -> list[int]:
    """Return the saved epochs --keep_last removes once epoch current is saved: those up to current except the keep
    latest (later epochs stay), in increasing order."""
    passed = sorted(epoch for epoch in epochs if epoch <= current)
    return passed[:-keep] if keep > 0 else []


def saved_epochs(folder: str) -> list[int]:
    """Return the epochs that have a plain epoch checkpoint (<N>_net_*.pth) in folder."""
    return [int(prefix) for prefix in checkpoint.available(folder) if prefix.isdigit()]


def prune_epochs(folder: str, current: int, keep: int) -> list[int]:
    """Remove the epoch checkpoints epochs_to_prune names from folder; return their epochs."""
    removed = epochs_to_prune(saved_epochs(folder), current, keep)
    for epoch in removed:
        checkpoint.delete(folder, epoch)
    return removed


class BestCheckpoints:
    """The keep best checkpoints of a run by validation score key: best_epoch<N>_* files and their JSON index."""

    def __init__(self, folder: str, key: str, keep: int):
        self.folder = folder
        self.key = key
        self.keep = keep
        self.path = os.path.join(folder, INDEX_NAME)
        self.entries: list[dict] = []  # {"epoch", "prefix", key}, best first

    def start(self) -> None:
        """Begin a new run's index: the checkpoints of an earlier run in the folder (--overwrite) are removed."""
        self.entries = []
        self._sync()
        if os.path.isfile(self.path):
            os.remove(self.path)

    def resume(self, epochs_done: int) -> list[int]:
        """Read the index back for a run resumed after epochs_done; return the epochs dropped from it.

        Entries of later epochs go (those epochs are trained and validated again, as val_log.csv's rows are),
        and so do those beyond --keep_best when it is now smaller; their files are removed.
        """
        entries = self._read()
        kept = ranked([entry for entry in entries if entry["epoch"] <= epochs_done], self.key, self.keep)
        self.entries = kept
        self._write()
        self._sync()
        return sorted({entry["epoch"] for entry in entries} - {entry["epoch"] for entry in kept})

    def offer(self, model, epoch: int, total_iters: int, score: float, extra: dict) -> bool:
        """Keep epoch's checkpoint if its score is among the keep best so far (saving it, dropping the one it
        displaces); return whether it was kept."""
        new = {"epoch": epoch, "prefix": best_prefix(epoch), self.key: float(score)}
        kept = ranked([entry for entry in self.entries if entry["epoch"] != epoch] + [new], self.key, self.keep)
        if new in kept:
            checkpoint.save(model, new["prefix"], epoch, total_iters, extra={**extra, self.key: float(score)})
        self.entries = kept
        self._write()
        self._sync()
        return new in kept

    def _read(self) -> list[dict]:
        """Return the entries of the index file ([] without one); an unreadable one is a UserError naming it."""
        if not os.path.isfile(self.path):
            return []
        try:
            with open(self.path, encoding="utf-8") as f:
                entries = json.load(f)["checkpoints"]
            return [{"epoch": int(e["epoch"]), "prefix": best_prefix(int(e["epoch"])), self.key: float(e[self.key])}
                    for e in entries]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"{self.path}: not a --keep_best index ({type(err).__name__}: {err}); remove it to "
                            "start the index afresh (its best_epoch checkpoints are then removed)") from None

    def _write(self) -> None:
        """Write the index atomically: the metric, K and the kept checkpoints with their scores, best first."""
        text = json.dumps({"metric": self.key, "keep_best": self.keep, "checkpoints": self.entries}, indent=2)
        atomic_write(self.path, lambda f: f.write((text + "\n").encode("utf-8")))

    def _sync(self) -> None:
        """Remove every best_epoch<N> checkpoint of the folder that the entries do not list."""
        listed = {entry["prefix"] for entry in self.entries}
        for prefix in checkpoint.available(self.folder):
            if BEST_EPOCH.fullmatch(prefix) and prefix not in listed:
                checkpoint.delete(self.folder, prefix)
