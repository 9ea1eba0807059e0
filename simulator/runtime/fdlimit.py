"""The open-file limit a lab needs: every client connection is a socket, and Linux's default soft limit
(1,024) would refuse the 1,025th with `EMFILE` long before memory runs out."""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

logger = logging.getLogger(__name__)
# The concurrency a lab process is built for (docs/performance.md, "Concurrency"): one descriptor per client
# connection, a few hundred for listening sockets, backend pools, logs and the API.
CONNECTIONS_GOAL = 50_000
NEEDED = CONNECTIONS_GOAL + 1_024
# Below this a lab under an ordinary load test runs out of descriptors: a warning at start. Between it and
# NEEDED only the 50,000-connection goal is out of reach: said in the log at INFO, not on every `lbsim run`.
FLOOR = 10_000


@dataclass(frozen=True)
class FdLimit:
    before: int
    soft: int
    hard: int
    needed: int

    @property
    def enough(self) -> bool:
        return self.soft >= self.needed


def raise_fd_limit(needed: int = NEEDED, warn: bool = True) -> FdLimit:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (and the hard limit to `needed` where the
    process may, e.g. as root); says so, with how to fix it, when the result stays below `needed`: a warning
    below FLOOR, else an info line (nothing if `warn` is False: a worker process inherits worker 0's limits,
    and worker 0 said it once)."""
    infinity = resource.RLIM_INFINITY
    before, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != infinity and hard < needed:
        try:  # only a privileged process (CAP_SYS_RESOURCE) may raise its hard limit; fs.nr_open caps it
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            hard = needed
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    target = hard if hard != infinity else max(needed, soft)  # "unlimited" is above fs.nr_open: refused
    if soft != infinity and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            logger.warning("could not raise the open-file limit from %d to %d: %s", soft, target, e)
    big = 1 << 62
    result = FdLimit(before, big if soft == infinity else soft, big if hard == infinity else hard, needed)
    if not result.enough and warn:
        logger.log(logging.WARNING if result.soft < min(needed, FLOOR) else logging.INFO, "open-file limit is %d (hard limit %d), below the %d this lab wants for %d concurrent "
                       "connections: at most about %d clients at once per process; raise the hard limit "
                       "(`ulimit -Hn %d` as root, or LimitNOFILE= in a systemd unit)",
                       result.soft, result.hard, needed, CONNECTIONS_GOAL, max(0, result.soft - 1_024), needed)
    elif soft != before:
        logger.info("open-file limit raised from %d to %d", before, result.soft)
    return result
