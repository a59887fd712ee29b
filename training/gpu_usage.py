"""GPU utilisation sampled while a stage trains (CUDA only), for the run summary.

A daemon thread reads the card's utilisation (NVML's percentage of time a kernel ran, the
number ``nvidia-smi`` shows) every ``interval`` seconds. ``torch.cuda.utilization`` needs
the ``pynvml`` module (the ``nvidia-ml-py`` package); without it the summary says so once
and leaves the figures out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType

import torch

logger = logging.getLogger(__name__)

BUSY_PERCENT = 50
"""A sample at or above this utilisation counts as busy."""


class UtilisationSampler:
    """``with UtilisationSampler(read) as sampler: ...``, then :meth:`summary`.

    ``read`` returns the current utilisation in percent; :meth:`for_device` builds one for a
    torch device (``None`` off CUDA or without NVML).
    """

    def __init__(self, read: Callable[[], int], interval: float = 0.5) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval}")
        self._read, self._interval = read, interval
        self._samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpu-utilisation", daemon=True)

    @classmethod
    def for_device(cls, device: torch.device, interval: float = 0.5) -> UtilisationSampler | None:
        if device.type != "cuda":
            return None
        try:
            torch.cuda.utilization(device)
        except (ModuleNotFoundError, RuntimeError) as exc:
            logger.info("GPU utilisation not sampled: %s", exc)
            return None
        return cls(lambda: int(torch.cuda.utilization(device)), interval)

    def _run(self) -> None:
        while True:
            self._samples.append(int(self._read()))
            if self._stop.wait(self._interval):
                return

    def __enter__(self) -> UtilisationSampler:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()

    def summary(self) -> dict[str, float]:
        """Mean utilisation (%), share of busy samples (%), and the number of samples."""
        samples = self._samples
        if not samples:
            return {}
        busy = sum(value >= BUSY_PERCENT for value in samples)
        return {
            "gpu_util_mean": round(sum(samples) / len(samples), 1),
            "gpu_util_busy_pct": round(100 * busy / len(samples), 1),
            "gpu_util_samples": len(samples),
        }
