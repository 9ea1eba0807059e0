"""What the workers' shared session cache costs a handshake: the same context with it attached and without.

With `workers: N` every listener context stores new sessions in a `SharedSessionCache` through OpenSSL's
session callbacks (simulator/dataplane/resumption.py). Here both contexts (the same certificate, policy and
ticket keys; one attached to a cache) serve in-memory handshakes from a pyOpenSSL client in this one process,
in alternating rounds, so whatever else the machine does hits both alike. The figure is the CPU per
handshake, client and server together, so only the difference between the two is the cache's. It also
reports what the cache did: sessions stored and found, and what OpenSSL's own cache of the context holds.

    python -m simulator.tools.sessioncache                   # TLS 1.3: stateless tickets, nothing to store
    python -m simulator.tools.sessioncache --version 1.2     # TLS 1.2 without tickets: each session stored
    python -m simulator.tools.sessioncache --abrupt          # no close_notify: OpenSSL removes each session
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL

from simulator.certs import LabPKI
from simulator.dataplane.resumption import SharedSessionCache, derive_ticket_keys, openssl_sessions, set_ticket_keys
from simulator.output import run_parsed
from simulator.policies import resolve_policy
from simulator.policies.context import build_server_context
from simulator.policies.testing import handshake_in_memory

POLICY = ("aliyun-slb", "tls_cipher_policy_1_2_strict_with_1_3")


@dataclass
class CacheCost:
    version: str
    handshakes: int  # per context and round
    plain_us: list[float]  # CPU per handshake, each round, without the cache
    attached_us: list[float]  # ... with it
    stored: int
    found: int
    openssl_cached: int  # sessions in OpenSSL's own cache of the attached context at the end
    abrupt: bool = False  # the server sent no close_notify

    @property
    def difference_us(self) -> float:
        return statistics.median(self.attached_us) - statistics.median(self.plain_us)

    def lines(self) -> list[str]:
        return [
            f"TLS {self.version}{', no close_notify' if self.abrupt else ''}, {len(self.plain_us)} rounds of "
            f"{self.handshakes} in-memory handshakes per context (CPU of client and server together):",
            f"  without the shared cache: {statistics.median(self.plain_us):.1f} µs per handshake "
            f"({', '.join(f'{x:.0f}' for x in self.plain_us)})",
            f"  with it attached:         {statistics.median(self.attached_us):.1f} µs per handshake "
            f"({', '.join(f'{x:.0f}' for x in self.attached_us)})",
            f"  difference: {self.difference_us:+.1f} µs per handshake; sessions stored {self.stored:,}, found "
            f"{self.found:,}; OpenSSL's own cache of the attached context holds {self.openssl_cached:,}",
        ]


def handshake(server: SSL.Context, client: SSL.Context, abrupt: bool = False) -> SSL.Connection:
    """One handshake through memory BIOs, the client reading the tickets, then the server's close_notify as the
    listener sends when it closes. `abrupt`: none, as when a client leaves first without one; OpenSSL then
    removes the connection's session from the caches when it frees the connection."""
    s, c = SSL.Connection(server), SSL.Connection(client)
    s.set_accept_state()
    c.set_connect_state()
    handshake_in_memory(c, s)
    try:
        c.recv(1)  # takes the server's tickets, if any
    except SSL.Error:
        pass
    if not abrupt:
        s.shutdown()
    return c


def measure(version: str = "1.3", handshakes: int = 300, rounds: int = 8, abrupt: bool = False) -> CacheCost:
    """Alternate rounds of `handshakes` on each context (each order half the time)."""
    pki = LabPKI(key_type="rsa")
    issued = pki.server("localhost", "127.0.0.1")
    policy = resolve_policy(*POLICY)
    keys = derive_ticket_keys(b"lbsim sessioncache" * 2, b"listener")
    cache = SharedSessionCache.create(tempfile.mkdtemp(prefix="lbsim-sessioncache-"))

    def server(attached: bool) -> SSL.Context:
        ctx = build_server_context(policy, [issued.cert], load_pem_private_key(issued.key_pem, None),
                                   session_id_context=b"lbsim sessioncache")
        set_ticket_keys(ctx, keys)
        if attached:
            cache.attach(ctx, b"listener")
        return ctx

    client = SSL.Context(SSL.TLS_CLIENT_METHOD)
    protocol = SSL.TLS1_3_VERSION if version == "1.3" else SSL.TLS1_2_VERSION
    client.set_min_proto_version(protocol)
    client.set_max_proto_version(protocol)
    if version != "1.3":
        client.set_options(SSL.OP_NO_TICKET)  # resumption by session ID: what the shared cache is for
    contexts = {"plain": server(False), "attached": server(True)}
    try:
        for ctx in contexts.values():  # warm-up
            for _ in range(min(50, handshakes)):
                handshake(ctx, client, abrupt=abrupt)
        times: dict[str, list[float]] = {name: [] for name in contexts}
        for r in range(rounds):
            for name in (("plain", "attached") if r % 2 else ("attached", "plain")):
                start = time.process_time()
                for _ in range(handshakes):
                    handshake(contexts[name], client, abrupt=abrupt)
                times[name].append((time.process_time() - start) / handshakes * 1e6)
        return CacheCost(version, handshakes, times["plain"], times["attached"], cache.stored, cache.found,
                         openssl_sessions(contexts["attached"]), abrupt)
    finally:
        cache.close(unlink=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m simulator.tools.sessioncache", description=__doc__.splitlines()[0])
    p.add_argument("--version", choices=("1.2", "1.3"), default="1.3", help="TLS version (default 1.3)")
    p.add_argument("--handshakes", type=int, default=300, help="handshakes per context and round (default 300)")
    p.add_argument("--rounds", type=int, default=8, help="alternating rounds (default 8)")
    p.add_argument("--abrupt", action="store_true",
                   help="the server sends no close_notify (a client that left first): OpenSSL removes each session")
    p.set_defaults(func=lambda a: print("\n".join(measure(a.version, a.handshakes, a.rounds, a.abrupt).lines())))
    return run_parsed(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
