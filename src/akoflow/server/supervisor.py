"""The server's engine, kept alive: started with the server, replaced when it fails.

An engine that meets an error it cannot survive (its store failed mid-transaction, a bug left
its state unknown) stops and gives its runs back (see :mod:`akoflow.engine.loops`). A server
must not stall every later workflow for that: it starts a new engine on the same store after
a back-off and resumes the unfinished runs, exactly as a restarted server would (running
activities are adopted, nothing runs twice). While the store keeps failing, it keeps trying,
less and less often, and says so in its log. An engine stopped by a full disk under the state
dir is replaced once there is room again (probed, less and less often).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from akoflow.engine import Engine, WorkflowBusy
from akoflow.engine.loops import EngineFailure, StoreShortOfRoom
from akoflow.runtimes.backoff import Backoff
from akoflow.server.context import ServerContext
from akoflow.store.room import locked, short_of_room, wait_for_room

log = logging.getLogger(__name__)

RESTART_FIRST_DELAY = 1.0
RESTART_MAX_DELAY = 60.0


async def start_engine(ctx: ServerContext) -> int:
    """Start ``ctx.engine``, bring up the configured runtimes and resume unfinished runs;
    returns how many of those could not be resumed."""
    engine = ctx.engine
    await engine.start()
    engine.on_failure(lambda failure: _on_failure(ctx, engine, failure))
    try:
        await engine.register_configured_runtimes()
    except Exception as exc:  # a broken runtime configuration must not keep the API down
        if locked(exc) is None:
            log.exception("cannot register the configured runtimes")
        else:
            log.warning("cannot register the configured runtimes: %s", locked(exc))
    return await resume_all(ctx)


async def resume_all(ctx: ServerContext) -> int:
    """Attach every unfinished workflow; the number that could not be (an error, not a live
    owner elsewhere)."""
    ids = ctx.repo.unfinished_workflow_ids()
    if ids:
        log.info("resuming %d unfinished workflow(s): %s", len(ids), ids)
    failed = 0
    for wf_id in ids:
        if wf_id in ctx.engine.workflows:
            continue
        try:
            ctx.watch(await ctx.engine.attach(wf_id))
        except WorkflowBusy as exc:
            log.warning("not resuming workflow %s: %s", wf_id, exc)
        except EngineFailure:
            raise
        except Exception as exc:
            if locked(exc) is None:
                log.exception("cannot resume workflow %s", wf_id)
            else:
                log.warning("cannot resume workflow %s yet: %s", wf_id, locked(exc))
            failed += 1
    return failed


def _on_failure(ctx: ServerContext, engine: Engine, failure: EngineFailure) -> None:
    if ctx.engine is not engine or ctx.restarting is not None:
        return
    if isinstance(failure, StoreShortOfRoom):
        log.critical("%s; a new engine starts once there is room", failure)
    else:
        log.critical("%s; starting a new engine", failure)
    ctx.restarting = asyncio.get_running_loop().create_task(
        _restart(ctx, failure), name="akoflow-engine-restart"
    )


async def _restart(ctx: ServerContext, failure: EngineFailure) -> None:
    backoff = Backoff(RESTART_FIRST_DELAY, RESTART_MAX_DELAY)
    try:
        while True:
            await asyncio.sleep(backoff.next())
            if isinstance(failure, StoreShortOfRoom):
                await wait_for_room(failure.directory)
            old = ctx.engine
            try:
                await old.stop()
            except Exception:
                log.exception("stopping the failed engine failed")
            ctx.engine = Engine(ctx.repo, ctx.state_dir)
            try:
                unresumed = await start_engine(ctx)
            except Exception as exc:
                directory = Path(ctx.repo.path).parent
                if short_of_room(exc, directory):
                    failure = StoreShortOfRoom.stopped_by(exc, directory)
                    log.error("the new engine cannot start yet: no room (%s); waiting", exc)
                else:
                    log.exception("the new engine cannot start yet; trying again")
                continue
            if ctx.engine.failure is not None:
                failure = ctx.engine.failure  # it failed already: this loop takes it
            elif not unresumed:
                log.warning("a new engine took over; unfinished workflows resumed")
                return
    finally:
        ctx.restarting = None


__all__ = ["resume_all", "start_engine"]
