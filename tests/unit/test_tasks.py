"""akoflow.tasks.cancel_and_wait: a stop cancels again a task that lost its cancel."""

from __future__ import annotations

import asyncio
import logging

import pytest

from akoflow.tasks import cancel_and_wait


async def _loses_one_cancel(cancels: list[int]) -> None:
    """A loop whose first cancel is swallowed, as 3.11's wait_for does with one that arrives
    as its inner call completes: it goes on sleeping as if never asked."""
    while True:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancels.append(1)
            if len(cancels) > 1:
                raise


def test_a_task_that_lost_its_cancel_is_cancelled_again_until_it_ends() -> None:
    async def main() -> list[int]:
        cancels: list[int] = []
        task = asyncio.create_task(_loses_one_cancel(cancels))
        await asyncio.sleep(0)
        await asyncio.wait_for(cancel_and_wait([task]), 30)
        assert task.cancelled()
        return cancels

    assert asyncio.run(main()) == [1, 1]


def test_a_task_that_never_stops_is_left_with_an_error_after_the_rounds(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def main() -> bool:
        stubborn = asyncio.Event()

        async def never_stops() -> None:
            while not stubborn.is_set():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    continue

        task = asyncio.create_task(never_stops(), name="stubborn")
        await asyncio.sleep(0)
        await cancel_and_wait([task], rounds=2)
        running = not task.done()
        stubborn.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return running

    with caplog.at_level(logging.ERROR, logger="akoflow.tasks"):
        assert asyncio.run(main())
    assert "task stubborn did not stop when cancelled" in caplog.text


def test_done_and_empty_are_no_wait() -> None:
    async def main() -> None:
        done = asyncio.create_task(asyncio.sleep(0))
        await done
        await asyncio.wait_for(cancel_and_wait([done]), 1)
        await asyncio.wait_for(cancel_and_wait([]), 1)

    asyncio.run(main())
