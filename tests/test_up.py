"""`lbsim up` as a user runs it: a subprocess, the printed curl commands pasted, then Ctrl-C."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from simulator.model.config import load_config

LBSIM = str(Path(sys.executable).with_name("lbsim"))


def test_lbsim_up_prints_working_curl_commands_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    proc = subprocess.Popen([LBSIM, "up", "--out", str(tmp_path / "out"), "--time-scale", "0.01"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: dict[str, str] = {}
    try:
        deadline = time.monotonic() + 60
        while "connection log" not in lines and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"lbsim up exited early: {proc.poll()}"
            key = line.split(":", 1)[0].strip()
            lines[key] = line.split(":", 1)[1].strip() if ":" in line else line
        for kind in ("one-way", "mutual"):
            command = shlex.split(lines[kind]) + ["-sS", "--max-time", "10"]
            out = subprocess.run(command, capture_output=True, text=True, timeout=20, cwd=tmp_path)
            assert out.returncode == 0, (kind, out.stderr)
            assert json.loads(out.stdout)["path"] == "/hello"
        # The console's URL is in the banner, and it shows the lab's listeners.
        page = urllib.request.urlopen(lines["console"] + "listeners", timeout=10).read().decode()
        assert all(name in page for name in ("aliyun-one-way", "tencent-mutual")) and 'data-status="running"' in page
        # The default lab is written out to copy and edit, and loads as it is.
        config = load_config(tmp_path / "out" / "lab.yaml")
        assert [l.name for l in config.listeners] == ["aliyun-one-way", "aliyun-mutual", "tencent-one-way", "tencent-mutual"]
    finally:
        proc.send_signal(signal.SIGINT)
        rest = proc.communicate(timeout=20)[0]
    assert proc.returncode == 0, rest
    log = (tmp_path / "out" / "connections.jsonl").read_text().splitlines()
    assert len(log) == 2 and {json.loads(l)["tls_verify_status"] for l in log} == {"Success"}
