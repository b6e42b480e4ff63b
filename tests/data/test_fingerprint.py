"""Test-set fingerprints (data/fingerprint.py): the sorted digests of the pairs, blind to names and order."""

from __future__ import annotations

import hashlib
from pathlib import Path

from data.fingerprint import fingerprint, pair_digest


def test_fingerprint_is_the_sorted_pair_digests_and_ignores_names_and_order(tmp_path: Path) -> None:
    files = {}
    for name, content in (("i1", b"input one"), ("g1", b"truth one"), ("i2", b"input two"), ("g2", b"truth two")):
        files[name] = tmp_path / name
        files[name].write_bytes(content)
    sha = [hashlib.sha256(c).hexdigest() for c in (b"input one", b"truth one", b"input two", b"truth two")]
    lines = sorted([f"{sha[0]} {sha[1]}", f"{sha[2]} {sha[3]}"])
    expected = hashlib.sha256("".join(line + "\n" for line in lines).encode()).hexdigest()[:12]
    digests = [pair_digest(str(files["i1"]), str(files["g1"])), pair_digest(str(files["i2"]), str(files["g2"]))]
    assert fingerprint(digests) == fingerprint(digests[::-1]) == expected
    swapped = [pair_digest(str(files["i1"]), str(files["g2"])), pair_digest(str(files["i2"]), str(files["g1"]))]
    assert fingerprint(swapped) != expected  # the same files paired otherwise are another test set
    files["g2"].write_bytes(b"truth twO")
    assert fingerprint([digests[0], pair_digest(str(files["i2"]), str(files["g2"]))]) != expected
