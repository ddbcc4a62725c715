"""How every fake's ``wait_*`` helper waits: on the Condition it notifies as it records."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


async def until(
    changed: asyncio.Condition,
    ready: Callable[[], bool],
    timeout: float,
    failure: Callable[[], str] | None = None,
) -> None:
    """Return once ``ready()`` holds; at ``timeout``, an ``AssertionError`` saying
    ``failure()`` (or the ``TimeoutError`` itself, without one)."""
    async with changed:
        try:
            await asyncio.wait_for(changed.wait_for(ready), timeout)
        except TimeoutError:
            if failure is None:
                raise
            raise AssertionError(failure()) from None
