"""Upstream's sampling module (``skywalking.sampling``). Sampling here is part of the tracing core: with
``sample_n_per_3_secs`` > 0 at most N new traces start per 3-second window (traces continued from a caller are
always kept) and no thread is needed, so ``init`` and ``init_async`` do nothing and ``sampling_service`` reports
the core's state."""

from __future__ import annotations

from typing import Any

from skywalking.trace.tracer import TRACER


class SamplingService:
    """A view of the core's sampling: ``sampling_service.limit`` and ``try_sampling()`` as upstream's."""

    @property
    def limit(self) -> int:
        return TRACER.sample_limit

    def try_sampling(self) -> bool:
        """Whether one more new trace may start now (counts it)."""
        return TRACER.sample_root()

    def force_sampled(self) -> None:
        """Upstream counted a trace kept regardless; continued traces are always kept here."""


sampling_service = SamplingService()


def init(force: bool = False) -> None:
    """Upstream started its window-reset thread here; not needed (see the module docstring)."""


async def init_async(async_event: Any = None) -> None:
    """Upstream's asyncio variant of ``init``; not needed either."""
