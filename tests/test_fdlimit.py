"""A lab raises its own open-file limit at start, and says so in its log when it cannot reach what it needs."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

from simulator.runtime.fdlimit import FLOOR

PROBE = """
import json, logging, resource, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
from simulator.runtime.fdlimit import raise_fd_limit
needed = int(sys.argv[1])
r = raise_fd_limit(needed, warn=sys.argv[2] == "warn")
print(json.dumps({"before": r.before, "soft": r.soft, "hard": r.hard, "enough": r.enough,
                  "now": resource.getrlimit(resource.RLIMIT_NOFILE)}))
"""


def probe(soft: int, needed: int, warn: bool = True, hard: int | None = None) -> tuple[dict, str]:
    hard = hard or resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, str(needed), "warn" if warn else "quiet"], capture_output=True, text=True, timeout=60, check=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard)),
        cwd=Path(__file__).resolve().parents[1])
    return json.loads(proc.stdout.splitlines()[-1]), proc.stderr


def test_the_soft_limit_is_raised_to_at_least_the_hard_limit() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    result, log = probe(256, 1_000)
    assert result["before"] == 256
    assert result["soft"] == result["now"][0] == result["now"][1] >= hard  # the whole hard limit, not just `needed`
    assert result["enough"] and "raised from 256" in log and "WARNING" not in log


def test_a_limit_below_what_is_needed_is_logged_with_the_fix() -> None:
    # More than the kernel lets any process open (fs.nr_open): not even root can reach it.
    needed = int(Path("/proc/sys/fs/nr_open").read_text()) + 1
    result, log = probe(256, needed)
    assert not result["enough"] and result["soft"] == result["hard"] > 256  # raised as far as it goes
    level = "WARNING" if result["soft"] < FLOOR else "INFO"  # only the 50,000 goal out of reach: no warning
    assert f"{level} open-file limit is" in log and f"ulimit -Hn {needed}" in log
    if result["hard"] > 2_048:  # a hard limit an ordinary load test would exhaust (lowering it needs no privilege)
        low, log = probe(256, needed, hard=2_048)
        assert low["soft"] == 2_048 and "WARNING open-file limit is 2048" in log
    quiet, log = probe(256, needed, warn=False)  # a worker process: raised as far, worker 0 warned already
    assert quiet["soft"] == result["soft"] and "open-file limit is" not in log


def test_a_started_lab_holds_the_raised_limit(lab) -> None:
    lab = lab.lab
    assert lab.fd_limit is not None and lab.fd_limit.soft == resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert lab.fd_limit.soft >= lab.fd_limit.before
