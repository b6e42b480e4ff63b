"""Fingerprints of test sets: which files were scored, so that two labs can tell they scored the same data.

A scored pair is digested as the SHA-256 of its input file's bytes and of its ground-truth file's bytes; a
set's fingerprint is the first 12 hex digits of the SHA-256 of its pairs' digests, sorted. Names and folders
do not enter it (they do not change a score): the same files copied to another folder, listed in another
order, renamed or in another layout give the same fingerprint, while one changed byte, or an input paired
with another ground truth, gives another.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

DIGITS = 12
CHUNK = 1 << 20


def file_sha256(path: str) -> str:
    """Return the SHA-256 of the file's bytes in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def pair_digest(input_path: str, gt_path: str) -> str:
    """Return '<SHA-256 of the input> <SHA-256 of the ground truth>': one scored pair's part of a fingerprint."""
    return f"{file_sha256(input_path)} {file_sha256(gt_path)}"


def fingerprint(digests: Iterable[str]) -> str:
    """Return the first 12 hex digits of the SHA-256 over the sorted pair digests, one per line."""
    text = "".join(f"{line}\n" for line in sorted(digests))
    return hashlib.sha256(text.encode("ascii")).hexdigest()[:DIGITS]


def describe(count: int, value: str) -> str:
    """Return '<count> pair(s), fingerprint <value>' as tables and pages show it."""
    return f"{count} pair{'' if count == 1 else 's'}, fingerprint {value}"
