"""A worker process (`python -m simulator.runtime.worker`): one `Lab` given a seat, fed by worker 0.

Worker 0 (`simulator.runtime.workers.WorkerPool`) spawns it and writes its `WorkerInit`, then listener states,
one per line on stdin; it answers acks, its gauges and a fatal error, one JSON object per line on stdout. It
lives apart from `workers.py` so that the lab module, which imports the pool, is not imported back by the
module that defines it (no import circle).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from simulator.certs import CertificateStore
from simulator.runtime.gctune import freeze_startup
from simulator.runtime.lab import Lab
from simulator.runtime.loops import DEFAULT_EVENT_LOOP, loop_factory
from simulator.runtime.workers import (
    COUNTERS_PERIOD,
    RECORD_LIMIT,
    WorkerInit,
    _decode,
    apply_health,
    live_counters,
)

logger = logging.getLogger(__name__)

def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _serve() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader(limit=RECORD_LIMIT)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin.buffer)
    first = await stdin.readline()
    if not first:
        return
    init: WorkerInit = _decode(first.decode())
    for name, level in init.log_levels.items():
        logging.getLogger(name).setLevel(level)
    store = CertificateStore(init.store_home, kek=init.kek)
    lab = Lab(init.config, init.out_dir, store=store, seat=init.seat)
    try:
        await lab.start()
    except Exception as e:
        _emit({"fatal": f"{type(e).__name__}: {e}"})
        await lab.stop()
        return
    freeze_startup()  # a worker process is the lab's: full collections skip what it built to start
    _emit({"ready": os.getpid()})
    reporter = loop.create_task(_report_counters(lab))
    try:
        settling: set[asyncio.Task] = set()
        while line := await stdin.readline():  # the end of stdin is worker 0 stopping (or gone)
            msg = json.loads(line)
            if "settle" in msg:  # answered apart: listener states keep coming meanwhile
                task = loop.create_task(_settle(lab, msg["seq"], msg["settle"]))
                settling.add(task)
                task.add_done_callback(settling.discard)
                continue
            try:
                state = _decode(msg["state"])
                if state.get("kind") == "health":
                    apply_health(lab, state["key"], state["health"])
                elif state.get("kind") == "trust_store":
                    lab.mirror_trust_store(state)
                else:
                    await lab.mirror(state)
            except Exception as e:
                logger.exception("applying listener state")
                _emit({"ack": msg["seq"], "error": f"{type(e).__name__}: {e}"})
            else:
                _emit({"ack": msg["seq"]})
    finally:
        reporter.cancel()
        await lab.stop()


async def _settle(lab: Lab, seq: int, timeout: float) -> None:
    """Reply once no client connection is open here, with how many records this worker has logged, all of
    them sent down the pipe (a closed connection's record is written before it leaves `registry.clients`)."""
    await lab.settle_log(timeout)  # a worker's own lab has no workers: this waits for its clients alone
    if lab.connection_log:
        lab.connection_log.flush()  # the batch waiting for its timer: worker 0 waits for every line counted
    _emit({"ack": seq, "records": lab.connection_log.logged if lab.connection_log else 0})


async def _report_counters(lab: Lab) -> None:
    """Tell worker 0 this worker's gauges whenever they changed (it shows the lab's sums)."""
    sent: dict[str, Any] = {}
    while True:
        await asyncio.sleep(COUNTERS_PERIOD)
        counters = live_counters(lab)
        if counters != sent:
            _emit({"counters": counters})
            sent = counters


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s lbsim-worker %(name)s: %(message)s")
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: worker 0 stops us
    # The loop is chosen before the lab's config arrives on stdin: worker 0 names it on the command line.
    asyncio.run(_serve(), loop_factory=loop_factory(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_EVENT_LOOP))
    return 0


if __name__ == "__main__":
    sys.exit(main())
