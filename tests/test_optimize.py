"""A lab serving under -O drops mitmproxy's construction checks (simulator/runtime/optimize.py)."""

from __future__ import annotations

import hashlib
import inspect
import subprocess
import sys
import textwrap

# mitmproxy 12.2's Hook.__new__, StartHook.__new__ and CommandCompleted.__new__: each only refuses an abstract
# class or one that is not a dataclass (CommandCompleted's second check is an assert).
MITMPROXY_CONSTRUCTION_CHECKS = "43d9fa8dae07023d201649c10449f2170bd0e9db121876d62e554a722d9c42a6"


def test_mitmproxys_construction_checks_are_still_only_checks() -> None:
    # When this fails, mitmproxy changed one of these `__new__`s: if it still only checks, record the new
    # digest here; if it now does something a hook needs, drop_construction_checks must not replace it.
    from simulator.runtime.optimize import checked_construction

    source = "".join(inspect.getsource(vars(cls)["__new__"]) for cls in checked_construction())
    assert hashlib.sha256(source.encode()).hexdigest() == MITMPROXY_CONSTRUCTION_CHECKS, source


def run(code: str, *flags: str) -> str:
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          check=True, timeout=60).stdout


def test_without_the_checks_hooks_and_completions_are_built_as_before() -> None:
    out = run("""
        from mitmproxy import connection
        from mitmproxy.proxy import commands, events
        from mitmproxy.proxy.layers.tls import TlsStartClientHook
        from mitmproxy.proxy.server_hooks import ClientConnectedHook
        from simulator.runtime.optimize import drop_construction_checks
        try:
            commands.StartHook()
        except TypeError:
            pass
        else:
            raise AssertionError("mitmproxy built an abstract StartHook before its checks were dropped")
        drop_construction_checks()
        client = connection.Client(peername=("127.0.0.1", 1), sockname=("127.0.0.1", 2), timestamp_start=0.0)
        hook = ClientConnectedHook(client)
        done = events.HookCompleted(hook)
        start = TlsStartClientHook(None)
        assert type(hook) is ClientConnectedHook and hook.client is client and hook.blocking is True
        assert hook.args() == [client] and hook.name == "client_connected"
        assert type(done) is events.HookCompleted and done.command is hook and done.reply is None
        assert type(start) is TlsStartClientHook and start.data is None
        # What is given up: mitmproxy's own misuse is no longer refused (its code never builds one).
        assert type(commands.StartHook()) is commands.StartHook
        print("ok")
    """, "-O")
    assert out.strip() == "ok"


def test_a_lab_drops_them_only_when_it_serves_under_O(tmp_path) -> None:
    code = f"""
        import sys
        from mitmproxy import hooks
        from simulator.harness.running import start_lab
        before = "__new__" in vars(hooks.Hook) and vars(hooks.Hook)["__new__"]
        running = start_lab(out_dir={str(tmp_path)!r} + "/O" + str(sys.flags.optimize), time_scale=0.01)
        try:
            print(vars(hooks.Hook)["__new__"] is before)
        finally:
            running.stop()
    """
    assert run(code).strip() == "True"  # a lab in a process with debug checks (tests, notebooks) keeps them
    assert run(code, "-O").strip() == "False"
