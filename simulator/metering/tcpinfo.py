"""The kernel's byte counts of a TCP socket (Linux `TCP_INFO`), to check the meter's `wire` against.

`bytes_received` counts bytes received in sequence (RFC 4898 tcpEStatsAppHCThruOctetsReceived),
`bytes_acked` bytes sent and acknowledged by the peer (tcpEStatsAppHCThruOctetsAcked). Both count
sequence space, so a FIN adds one (and on the connecting side the SYN adds one to `bytes_acked`):
`payload_received` / `payload_acked` take those out. For the LB's (accepting) socket they equal
`client_to_lb.wire` and `lb_to_client.wire` once everything sent is acknowledged.
"""

from __future__ import annotations

import socket
import struct
import sys
import time
from dataclasses import dataclass

# struct tcp_info (include/uapi/linux/tcp.h) up to tcpi_bytes_retrans: 8 u8, 24 u32, 4 u64 (pacing rates,
# bytes_acked, bytes_received), 6 u32 (segs, notsent_bytes, min_rtt, data segs), 4 u64, 2 u32, 2 u64.
_LAYOUT = struct.Struct("=8B24I4Q6I4Q2I2Q")
_FIELDS = (
    "state ca_state retransmits probes backoff options wscale rate_flags "
    "rto ato snd_mss rcv_mss unacked sacked lost retrans fackets "
    "last_data_sent last_ack_sent last_data_recv last_ack_recv "
    "pmtu rcv_ssthresh rtt rttvar snd_ssthresh snd_cwnd advmss reordering rcv_rtt rcv_space total_retrans "
    "pacing_rate max_pacing_rate bytes_acked bytes_received "
    "segs_out segs_in notsent_bytes min_rtt data_segs_in data_segs_out "
    "delivery_rate busy_time rwnd_limited sndbuf_limited delivered delivered_ce bytes_sent bytes_retrans"
).split()
assert len(_FIELDS) == 50 and _LAYOUT.size == 216  # no padding: every u64 falls on an 8-byte offset
TCP_INFO = getattr(socket, "TCP_INFO", 11)
# Linux TCP states (include/net/tcp_states.h) in which the peer's FIN was received / ours acknowledged.
# CLOSE (7) after an orderly close means both; after a reset neither: read before the LB closes.
_PEER_FIN = {6, 7, 8, 9, 11}   # TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, CLOSING
_OUR_FIN_ACKED = {5, 6, 7}     # FIN_WAIT2, TIME_WAIT, CLOSE


@dataclass(frozen=True)
class TcpCounters:
    """The few `TCP_INFO` fields the meter is compared with."""

    state: int
    bytes_received: int
    bytes_acked: int
    bytes_sent: int | None   # includes retransmissions; None on kernels before 4.19
    unacked: int             # segments in flight
    notsent_bytes: int       # queued, not yet sent

    @property
    def payload_received(self) -> int:
        """Data bytes received (the peer's FIN taken out) of an accepted socket."""
        return self.bytes_received - (self.state in _PEER_FIN)

    @property
    def payload_acked(self) -> int:
        """Data bytes acknowledged (our FIN taken out) of an accepted socket."""
        return self.bytes_acked - (self.state in _OUR_FIN_ACKED)


def supported() -> bool:
    return sys.platform.startswith("linux")


def read(sock: socket.socket) -> TcpCounters:
    """Read the socket's counters (Linux only)."""
    raw = sock.getsockopt(socket.IPPROTO_TCP, TCP_INFO, _LAYOUT.size)
    if len(raw) < 136:  # bytes_received ends at offset 136 (Linux >= 4.1)
        raise OSError(f"TCP_INFO too short ({len(raw)} bytes): kernel lacks bytes_acked/bytes_received")
    values = dict(zip(_FIELDS, _LAYOUT.unpack(raw.ljust(_LAYOUT.size, b"\0"))))
    return TcpCounters(
        state=values["state"],
        bytes_received=values["bytes_received"],
        bytes_acked=values["bytes_acked"],
        bytes_sent=values["bytes_sent"] if len(raw) >= _LAYOUT.size else None,
        unacked=values["unacked"],
        notsent_bytes=values["notsent_bytes"],
    )


def read_settled(sock: socket.socket, timeout: float = 2.0) -> TcpCounters:
    """Read the counters once everything the socket sent is acknowledged (or the timeout passes)."""
    deadline = time.monotonic() + timeout
    while True:
        c = read(sock)
        if (c.unacked == 0 and c.notsent_bytes == 0) or time.monotonic() > deadline:
            return c
        time.sleep(0.002)
