"""The GPU utilisation sampler: its thread, its summary, and where it does not run."""

from __future__ import annotations

import itertools
import threading

import pytest
import torch

from training.gpu_usage import UtilisationSampler


def test_samples_until_the_block_ends_and_summarises_them() -> None:
    readings = itertools.cycle([0, 40, 60, 100])
    enough = threading.Event()
    seen: list[int] = []

    def read() -> int:
        value = next(readings)
        seen.append(value)
        if len(seen) >= 8:
            enough.set()
        return value

    with UtilisationSampler(read, interval=0.001) as sampler:
        assert enough.wait(10)
    after = len(seen)
    summary = sampler.summary()
    assert len(seen) == after  # the thread stopped with the block
    assert summary["gpu_util_samples"] == len(seen) >= 8
    assert summary["gpu_util_mean"] == pytest.approx(sum(seen) / len(seen), abs=0.05)
    busy = sum(value >= 50 for value in seen)
    assert summary["gpu_util_busy_pct"] == pytest.approx(100 * busy / len(seen), abs=0.05)


def test_not_sampled_off_cuda_and_bad_intervals_refused() -> None:
    assert UtilisationSampler.for_device(torch.device("cpu")) is None
    with pytest.raises(ValueError, match="interval must be > 0 seconds, got 0"):
        UtilisationSampler(lambda: 0, interval=0)
