"""Counter-based randomness of the training data (data/sampling.py): epoch orders, start positions, ranks."""

from __future__ import annotations

import torch

from data.sampling import EpochSampler, SampleKey, epoch_order


def keys(sampler: EpochSampler, epoch: int, start: int = 0) -> list[SampleKey]:
    """Return the keys the sampler yields for epoch from start on."""
    sampler.set_epoch(epoch, start)
    return list(sampler)


def test_an_epochs_order_is_a_permutation_drawn_from_seed_and_epoch_alone():
    torch.manual_seed(0)
    first = epoch_order(10, seed=3, epoch=2, shuffle=True)
    torch.manual_seed(1)  # torch's global generator plays no part
    assert epoch_order(10, seed=3, epoch=2, shuffle=True) == first
    assert sorted(first) == list(range(10)) and first != list(range(10))
    assert epoch_order(10, seed=3, epoch=3, shuffle=True) != first
    assert epoch_order(10, seed=4, epoch=2, shuffle=True) != first
    assert epoch_order(10, seed=3, epoch=2, shuffle=False) == list(range(10))


def test_a_sample_generator_depends_on_its_key_only():
    key = SampleKey(seed=3, epoch=2, rank=0, position=5, index=7)
    draws = torch.rand(4, generator=key.generator())
    assert torch.equal(torch.rand(4, generator=key.generator()), draws)
    for other in (key._replace(seed=4), key._replace(epoch=3), key._replace(rank=1), key._replace(position=6)):
        assert not torch.equal(torch.rand(4, generator=other.generator()), draws)
    # The dataset index is what the position holds, not a source of randomness.
    assert torch.equal(torch.rand(4, generator=key._replace(index=0).generator()), draws)


def test_an_epoch_started_at_a_position_yields_the_rest_of_the_same_epoch():
    sampler = EpochSampler(12, seed=5)
    whole = keys(sampler, 2)
    assert [k.position for k in whole] == list(range(12)) and len({k.index for k in whole}) == 12
    assert len(sampler) == 12
    rest = keys(sampler, 2, start=8)
    assert rest == whole[8:] and len(sampler) == 4
    assert keys(sampler, 2, start=12) == [] and len(sampler) == 0
    assert [k.index for k in keys(sampler, 3)] != [k.index for k in whole]  # every epoch its own order


def test_ranks_share_the_padded_epoch_like_a_distributed_sampler():
    ranks = [EpochSampler(7, seed=5, rank=r, world_size=2) for r in range(2)]
    shares = [keys(s, 1) for s in ranks]
    assert all(s.samples_per_epoch == 4 for s in ranks) and [len(s) for s in shares] == [4, 4]
    order = epoch_order(7, 5, 1, shuffle=True)
    padded = order + order[:1]
    assert [k.index for k in shares[0]] == padded[0::2] and [k.index for k in shares[1]] == padded[1::2]
    assert {k.index for share in shares for k in share} == set(range(7))
    assert all(k.rank == r and k.position == p for r, share in enumerate(shares) for p, k in enumerate(share))
    assert keys(ranks[1], 1, start=3) == shares[1][3:]
