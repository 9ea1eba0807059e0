"""Crash safety and concurrency of the store, with real processes.

A child uploads in a loop and prints each id once `upload_server` has returned; it is SIGKILLed at
random moments. After every kill the store must load and hold every id the child printed.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from simulator.certs import CertificateStore, LabPKI

CHILD = r"""
import sys
from pathlib import Path
from simulator.certs import CertificateStore
home, chain, key, prefix, count = sys.argv[1], Path(sys.argv[2]).read_bytes(), Path(sys.argv[3]).read_bytes(), \
    sys.argv[4], int(sys.argv[5])
store = CertificateStore(home, quota=100_000)
print("ready", flush=True)
for i in range(count):
    info = store.upload_server(f"{prefix}-{i}", chain, key)
    print(info.id, flush=True)
    if i % 3 == 2:
        store.rename(info.id, f"{prefix}-{i}-renamed")
        store.replace(info.id, chain, key)
"""


def _material(tmp_path: Path) -> tuple[Path, Path]:
    issued = LabPKI().server("localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(issued.chain_pem)
    key.write_bytes(issued.key_pem)
    return chain, key


def _child(home: Path, chain: Path, key: Path, prefix: str, count: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LBSIM_KEK", "LBSIM_KEK_FILE", "LBSIM_HOME")}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(home), str(chain), str(key), prefix, str(count)],
                            stdout=subprocess.PIPE, text=True, env=env)


def _check_store(home: Path, expected: set[str]) -> None:
    store = CertificateStore(home)
    ids = {info.id for info in store.list()}
    assert expected <= ids, f"lost uploads: {expected - ids}"
    for cert_id in ids:
        m = store.material(cert_id)
        assert m.key is not None and m.chain


def test_sigkill_at_random_moments_loses_no_returned_upload(tmp_path: Path) -> None:
    chain, key = _material(tmp_path)
    home = tmp_path / "home"
    rng = random.Random(os.environ.get("LBSIM_CRASH_SEED", time.time_ns()))
    returned: set[str] = set()
    for round_ in range(6):
        child = _child(home, chain, key, f"r{round_}", 10_000)
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "ready"
        returned.add(child.stdout.readline().strip())  # one upload done: the loop is running
        time.sleep(rng.uniform(0.0, 0.5))
        child.send_signal(signal.SIGKILL)
        out, _ = child.communicate()
        returned |= set(out.split())
        _check_store(home, returned)
    assert len(returned) >= 6
    # leftovers of the crashes are swept by the next write (the children may have uploaded past the default quota)
    store = CertificateStore(home, quota=100_000)
    store.upload_ca("after", LabPKI().ca_pem)
    assert not [p for p in store.dir.iterdir() if p.name.endswith(".tmp")]


def test_two_processes_uploading_at_once(tmp_path: Path) -> None:
    chain, key = _material(tmp_path)
    home = tmp_path / "home"  # no key file yet: both children race to create it
    children = [_child(home, chain, key, f"p{n}", 12) for n in range(2)]
    outputs = [c.communicate(timeout=60)[0] for c in children]
    assert [c.returncode for c in children] == [0, 0]
    ids = {line for out in outputs for line in out.split() if line != "ready"}
    assert len(ids) == 24
    _check_store(home, ids)
    store = CertificateStore(home)
    assert sorted(i.name for i in store.list() if i.name.endswith("renamed")) == sorted(
        f"p{n}-{i}-renamed" for n in range(2) for i in (2, 5, 8, 11))
