"""Exact per-connection TLS traffic metering for a memory-BIO `SSL.Connection` (mitmproxy's mode).

How bytes are counted and classified:

* `wire` is counted where the bytes cross the connection: `bio_write` (client -> LB) and `bio_read`
  (LB -> client). Those are the TCP payload bytes, exactly. `bio_read` is not wrapped (it is the
  listener's most frequent call, mostly finding nothing): the bytes it handed out are the bytes queued
  (below) minus those still in the memory BIO, settled whenever the meter is read (see `_settle`).
* Classification uses OpenSSL's own knowledge of every record. A message callback
  (`SSL_CTX_set_msg_callback`) reports each record header read or written (type, length) and, for
  encrypted TLS 1.3 records, the inner content type after decryption / before encryption. So a
  TLS 1.3 KeyUpdate, NewSessionTicket or alert is never mistaken for application data, and nothing is
  inferred from lengths or from cipher formulas. The callback (in C when it could be built, see
  `native.py`) keeps its counts in a C struct, `ConnectionMeter.c`.
* Phase: a record read or written before `do_handshake` succeeds is `handshake` (including TLS 1.3's
  encrypted handshake messages, a failed handshake's alerts and a mutual handshake's client
  Certificate/CertificateVerify). After it: change_cipher_spec/handshake records (NewSessionTicket,
  KeyUpdate, renegotiation) are `handshake`; alerts are `closure`; application-data records split into
  `payload` and `record_overhead`.
* `payload` is plaintext: client -> LB, what `recv` returned plus what OpenSSL holds decrypted but not
  yet returned (`pending()`); LB -> client, what `SSL_write` accepted. `record_overhead` is the rest of
  those application-data records (header, explicit nonce, tag, MAC, padding, TLS 1.3 inner type).
* Outbound records are produced synchronously inside an operation (`do_handshake`, `recv`, `send`, ...)
  and queued per operation; `bio_read` drains the queue in order (FIFO, so settling late gives the
  same split), so categories count bytes actually handed out for sending. A failed handshake's alert is held back in `pending_alert` (mitmproxy never
  sends it) and counted once it is handed out: by `bio_read`, or by `ConnectionMeter.sent_alert` after
  the caller wrote it itself.
* Bytes OpenSSL never reads (after a close_notify or a fatal error, or a record cut off by the
  disconnect) count as `handshake` before the handshake completed and as `closure` after it.

`wire == handshake + record_overhead + payload + closure` holds per direction by construction, at any
time; the tests check it against a client's raw socket counts.
"""

from __future__ import annotations

import socket
import threading
import weakref
import time
from typing import Any

from OpenSSL import SSL
from OpenSSL._util import ffi as _ffi
from OpenSSL._util import lib as _lib

from simulator.metering import native

CATEGORIES = ("handshake", "record_overhead", "payload", "closure")
DIRECTIONS = ("client_to_lb", "lb_to_client")

# Record-level classes (indices into 3-vectors); byte categories are 4-vectors in CATEGORIES order.
_HS, _APP, _CLO = 0, 1, 2
_SETTLE_QUEUE = 16  # queued operations before drains are settled (see ConnectionMeter._settle)
_WANT = (SSL.WantReadError, SSL.WantWriteError, SSL.WantX509LookupError)



def ssl_error_text(error: Exception) -> str:
    """An OpenSSL error as a reader wants it: `Error([('SSL routines', '', 'unsupported protocol')])` becomes
    "unsupported protocol", `SysCallError(-1, 'Unexpected EOF')` "Unexpected EOF"."""
    args = error.args
    if args and isinstance(args[0], list):
        reasons = [entry[-1] for entry in args[0] if isinstance(entry, tuple) and entry and entry[-1]]
        if reasons:
            return "; ".join(dict.fromkeys(reasons))
    if len(args) == 2 and isinstance(args[1], str):
        return args[1]
    return str(error) or type(error).__name__

class ConnectionMeter:
    """Live byte counters of one client connection; `to_dict()` is the connection-log `traffic` record."""

    __slots__ = (
        "c", "requests", "resumed", "tls_version", "cipher", "handshake_error", "started_at", "finished_at",
        "in_wire", "in_plain", "in_buffered",  # client -> LB
        "out_wire", "out_sent", "out_queue", "out_plain_acc", "out_held", "out_held_bytes", "out_unannounced",
        "out_produced", "out_left", "out_conn",  # LB -> client
    )

    def __init__(self) -> None:
        # The record bookkeeping the message callback keeps (a C struct: see native.py for every field).
        self.c = native.new_counters()
        self.requests = 0
        self.resumed: bool | None = None
        self.tls_version: str | None = None
        self.cipher: str | None = None
        self.handshake_error: str | None = None
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.in_wire = 0
        self.in_plain = 0             # plaintext returned by recv
        self.in_buffered = 0          # plaintext decrypted, not yet returned (SSL_pending)
        self.out_wire = 0
        self.out_sent = [0, 0, 0, 0]  # drained bytes per category
        # Per operation: [hs, overhead, payload, closure, total]. A list, not a deque: it holds few entries
        # (settled past _SETTLE_QUEUE), and an empty deque is 760 bytes of every held connection's memory.
        self.out_queue: list[list[int]] = []
        self.out_plain_acc = 0        # plaintext SSL_write accepted in the running operation
        self.out_held: list[list[int]] = []  # categories of out_held_bytes
        self.out_held_bytes = b""     # a failed handshake's alert: taken from OpenSSL, not handed out yet
        self.out_unannounced = 0      # drained bytes no record accounted for (should stay 0)
        # Drains are settled lazily (see `_settle`): bytes queued so far, bytes known to have left the BIO
        # (drained or held), and a weak reference to the MeteredConnection whose BIO is asked (None: the
        # caller reports drains itself with `_drained`).
        self.out_produced = 0
        self.out_left = 0
        self.out_conn: Any = None

    @property
    def handshake_complete(self) -> bool:
        return bool(self.c.handshake_complete)

    @handshake_complete.setter
    def handshake_complete(self, value: bool) -> None:
        self.c.handshake_complete = int(value)

    @property
    def alert_sent(self) -> tuple[int, int] | None:
        """(level, description) of the last alert OpenSSL wrote on this connection, or None."""
        alert = self.c.out_alert
        return (alert >> 8, alert & 0xFF) if alert else None

    # --- operation boundaries (from MeteredConnection) ----------------------------------------

    def _flush_out(self) -> None:
        """Queue what the last operation wrote, split by category, for `bio_read` to drain."""
        c = self.c
        if not c.out_dirty:
            return
        acc = c.out_acc
        hs, app, clo = acc[0], acc[1], acc[2]
        plain = self.out_plain_acc
        # Plaintext SSL_write accepted is in the application-data records it just wrote.
        total = hs + app + clo
        self.out_queue.append([hs, app - plain, plain, clo, total])
        self.out_produced += total
        acc[0] = acc[1] = acc[2] = 0
        self.out_plain_acc = 0
        c.out_last_cls = -1
        c.out_dirty = 0
        if len(self.out_queue) > _SETTLE_QUEUE:  # a long keep-alive connection: keep the queue short
            self._settle()

    def _settle(self, conn: Any = None) -> None:
        """Account what `bio_read` drained since the last call, from what OpenSSL still holds.

        `bio_read` is not wrapped (mitmproxy calls it five times per request, mostly to find nothing):
        everything OpenSSL writes is announced to the message callback and queued here, so the bytes that
        left the BIO are the bytes queued minus those still in it (`BIO_get_mem_data`). Draining is FIFO,
        so settling late gives the same split as settling at every drain.
        """
        if conn is None:
            ref = self.out_conn
            conn = ref() if ref is not None else None
            if conn is None:
                return
        if self.c.out_dirty:
            self._flush_out()
        left = self.out_produced - _lib.BIO_get_mem_data(conn._from_ssl, _ffi.NULL)
        if left > self.out_left:
            n = left - self.out_left
            self.out_left = left
            self._drained(n)

    @staticmethod
    def _take(queue: list[list[int]], n: int) -> tuple[list[int], int]:
        """Pop `n` bytes off the front of a queue of category vectors; return them and any shortfall."""
        got = [0, 0, 0, 0]
        while n and queue:
            entry = queue[0]
            for i in range(4):
                step = min(entry[i], n)
                if step:
                    entry[i] -= step
                    entry[4] -= step
                    got[i] += step
                    n -= step
            if not entry[4]:
                del queue[0]
        return got, n

    def _drained(self, n: int) -> None:
        """`n` bytes left the connection for the client."""
        self.out_wire += n
        queue = self.out_queue
        sent = self.out_sent
        # The usual case: whole operations' output (settled late, often several); `_take` only for a
        # partial one, which it splits the same way.
        while n and queue and 0 < queue[0][4] <= n:
            e = queue.pop(0)
            sent[0] += e[0]
            sent[1] += e[1]
            sent[2] += e[2]
            sent[3] += e[3]
            n -= e[4]
        if n:
            self._add_out(*self._take(queue, n))

    def _add_out(self, got: list[int], unannounced: int) -> None:
        for i in range(4):
            self.out_sent[i] += got[i]
        if unannounced:  # never seen in tests; counted by phase so the invariant still holds
            self.out_unannounced += unannounced
            self.out_sent[3 if self.handshake_complete else 0] += unannounced

    def _hold(self, n: int) -> None:
        """`n` queued bytes were drained into `pending_alert` instead of being sent."""
        self.out_left += n
        got, short = self._take(self.out_queue, n)
        got[0] += short
        self.out_held.append([*got, n])

    def _complete(self, conn: SSL.Connection) -> None:
        self.handshake_complete = True
        self.resumed = bool(_lib.SSL_session_reused(conn._ssl))  # type: ignore[attr-defined]
        self.tls_version = conn.get_protocol_version_name()
        self.cipher = conn.get_cipher_name()

    # --- public API ---------------------------------------------------------------------------

    def sent_alert(self, nbytes: int) -> None:
        """Report that the first `nbytes` of `MeteredConnection.pending_alert` were written to the client.

        Until then they are not counted: mitmproxy drops them when a handshake fails. (Draining them with
        `bio_read` instead counts them the same way, once.)
        """
        got, short = self._take(self.out_held, nbytes)
        self.out_held_bytes = self.out_held_bytes[nbytes:]
        self.out_wire += nbytes
        self._add_out(got, short)

    def received_unread(self, nbytes: int) -> None:
        """Count bytes that reached the listener but were never given to `bio_write`.

        mitmproxy discards what a client sends after its handshake failed or after the connection closed.
        Like other bytes OpenSSL never read, they are handshake before completion and closure after it.
        """
        self.in_wire += nbytes

    def finish(self) -> None:
        """Close the books: the client is gone. Idempotent; later I/O (if any) is still counted."""
        if self.finished_at is None:
            self.finished_at = time.time()

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    def inbound(self) -> dict[str, int]:
        """Client -> LB counters."""
        c = self.c
        in_done = c.in_done
        hs, app, clo = in_done[0], in_done[1], in_done[2]
        cur = c.in_cur_cls
        if cur >= 0:
            size = c.in_cur_size
            avail = max(0, min(size, self.in_wire - c.in_cur_start))
            if cur == _APP and not c.in_cur_ok and avail < size and self.finished_at is not None:
                cur = _CLO  # an application-data record cut off by the disconnect was never delivered
            if cur == _HS:
                hs += avail
            elif cur == _APP:
                app += avail
            else:
                clo += avail
        tail = self.in_wire - c.in_end  # bytes OpenSSL has not read a header of
        if tail > 0:
            if c.handshake_complete:
                clo += tail
            else:
                hs += tail
        payload = self.in_plain + self.in_buffered
        return {"wire": self.in_wire, "handshake": hs, "record_overhead": app - payload,
                "payload": payload, "closure": clo}

    def outbound(self) -> dict[str, int]:
        """LB -> client counters (bytes handed out by `bio_read`, or reported by `sent_alert`)."""
        self._settle()
        hs, ovh, pay, clo = self.out_sent
        return {"wire": self.out_wire, "handshake": hs, "record_overhead": ovh, "payload": pay,
                "closure": clo}

    def to_dict(self) -> dict[str, Any]:
        """The connection's `traffic` record (see docs/metering.md for every field)."""
        # Built once per connection at close: settle once (not again in `outbound`), literal dicts.
        self._settle()
        queue = self.out_queue
        c = self.c
        acc = c.out_acc
        unsent = len(self.out_held_bytes) + acc[0] + acc[1] + acc[2]
        if queue:
            unsent += sum(e[4] for e in queue)
        hs, ovh, pay, clo = self.out_sent
        return {
            "client_to_lb": self.inbound(),
            "lb_to_client": {"wire": self.out_wire, "handshake": hs, "record_overhead": ovh, "payload": pay,
                             "closure": clo},
            "handshake_complete": bool(c.handshake_complete),
            "resumed": self.resumed,
            "tls_version": self.tls_version,
            "cipher": self.cipher,
            "requests": self.requests,
            "records": {"client_to_lb": {"total": c.in_records, "application_data": c.in_app_records},
                        "lb_to_client": {"total": c.out_records, "application_data": c.out_app_records}},
            "unsent_bytes": unsent,
            "handshake_error": self.handshake_error,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }


# --- the OpenSSL message callback (native.py) ------------------------------------------------------


def callback_errors() -> int:
    """Exceptions swallowed in the Python message callback since start-up (tests require 0)."""
    return native.python_errors()


_on_message_fp = native.ssl_callback()  # C when it could be built, else Python (`native.KIND`)
_INSTALL = threading.Lock()
_RECV_DONE = _WANT + (SSL.ZeroReturnError,)
_ssl_bio_write = SSL.Connection.bio_write
_ssl_bio_read = SSL.Connection.bio_read
_ssl_recv = SSL.Connection.recv
_ssl_send = SSL.Connection.send
_ssl_sendall = SSL.Connection.sendall


class MeteredConnection(SSL.Connection):
    """A memory-BIO `SSL.Connection` that meters its traffic in `self.meter` (a `ConnectionMeter`).

    Drop-in for mitmproxy's `tls_start_client`: the caller still calls `set_accept_state()` and
    `set_app_data()`. Only memory-BIO connections are supported (that is how mitmproxy uses them).
    The context must not carry a message callback of its own (pyOpenSSL exposes none).
    """

    meter: ConnectionMeter

    def __init__(self, context: SSL.Context, socket: socket.socket | None = None) -> None:
        if socket is not None:
            raise TypeError("MeteredConnection meters memory-BIO connections only (socket must be None)")
        meter = self.meter = ConnectionMeter()
        meter.out_conn = weakref.ref(self)
        # SSL_new copies the context's message callback and its argument into the new SSL: set them for
        # this SSL only, so plain connections made from the same (shared, per-listener) context stay
        # untouched. The argument is the address of the meter's counters, which live as long as the meter,
        # which this connection holds: OpenSSL calls back only during this connection's operations.
        ctx = context._context
        arg = native.ssl_arg(meter.c)
        with _INSTALL:
            _lib.SSL_CTX_set_msg_callback(ctx, _on_message_fp)
            _lib.SSL_CTX_set_msg_callback_arg(ctx, arg)
            try:
                super().__init__(context, None)
            finally:
                _lib.SSL_CTX_set_msg_callback(ctx, _ffi.NULL)
                _lib.SSL_CTX_set_msg_callback_arg(ctx, _ffi.NULL)

    @property
    def pending_alert(self) -> bytes:
        """What OpenSSL queued for the client when the handshake failed (its alert), not handed out yet.

        mitmproxy never sends it. Send it either by writing these bytes and calling
        `meter.sent_alert(len(...))`, or by draining them with `bio_read` (counted as handed out).
        """
        return self.meter.out_held_bytes

    # wire bytes ---------------------------------------------------------------------------------

    # The wrappers call pyOpenSSL's methods directly (module-level `_ssl_*`), not through super(): they run
    # several times per request.

    def bio_write(self, buf: Any) -> int:
        n = _ssl_bio_write(self, buf)
        self.meter.in_wire += n
        return n

    def _bio_read_held(self, bufsiz: int) -> bytes:
        """`bio_read` while `pending_alert` holds bytes: they come first (nothing is written after them)."""
        meter = self.meter
        if meter.out_held_bytes:
            chunk = meter.out_held_bytes[:bufsiz]
            meter.sent_alert(len(chunk))
            return chunk
        del self.bio_read  # back to pyOpenSSL's, unwrapped
        return _ssl_bio_read(self, bufsiz)

    # operations that make OpenSSL read or write records --------------------------------------------

    def do_handshake(self) -> None:
        meter = self.meter
        try:
            super().do_handshake()
        except _WANT:
            meter._flush_out()
            raise
        except SSL.Error as e:
            meter._flush_out()
            meter.handshake_error = meter.handshake_error or ssl_error_text(e)
            self._hold_unsent()
            raise
        meter._flush_out()
        if not meter.handshake_complete:
            meter._complete(self)

    def _hold_unsent(self) -> None:
        """Move what OpenSSL queued for the client (its alert) into `pending_alert`, uncounted."""
        meter = self.meter
        meter._settle(self)  # what was drained before is sent, not held
        while True:
            try:
                chunk = _ssl_bio_read(self, 65535)
            except SSL.WantReadError:
                break
            meter._hold(len(chunk))
            meter.out_held_bytes += chunk
        if meter.out_held_bytes:
            self.bio_read = self._bio_read_held  # type: ignore[method-assign]

    def recv(self, bufsiz: int, flags: int | None = None) -> bytes:
        meter = self.meter
        try:
            data = _ssl_recv(self, bufsiz, flags)
        except _RECV_DONE:
            meter.in_buffered = 0
            if meter.c.out_dirty:
                meter._flush_out()
            raise
        except SSL.Error:
            meter.in_buffered = 0
            self._in_failed()
            meter._flush_out()
            raise
        if meter.c.out_dirty:  # e.g. a TLS 1.2 renegotiation answered inside SSL_read
            meter._flush_out()
        self._in_delivered(data, bufsiz, flags)
        return data

    read = recv

    def recv_into(self, buffer: Any, nbytes: int | None = None, flags: int | None = None) -> int:
        meter = self.meter
        try:
            n = super().recv_into(buffer, nbytes, flags)
        except _RECV_DONE:
            meter.in_buffered = 0
            meter._flush_out()
            raise
        except SSL.Error:
            meter.in_buffered = 0
            self._in_failed()
            meter._flush_out()
            raise
        meter._flush_out()
        limit = len(buffer) if nbytes is None else min(nbytes, len(buffer))
        self._in_delivered(memoryview(buffer)[:n], limit, flags)
        return n

    def _in_delivered(self, data: Any, bufsiz: int, flags: int | None) -> None:
        meter = self.meter
        meter.c.in_cur_ok = 1
        if flags is not None and flags & socket.MSG_PEEK:
            meter.in_buffered = self.pending()
            return
        meter.in_plain += len(data)
        # A short read emptied the record; only a full buffer can leave decrypted bytes behind.
        meter.in_buffered = self.pending() if len(data) >= bufsiz else 0

    def _in_failed(self) -> None:
        """recv failed: an application-data record that yielded nothing (bad MAC...) ended the connection."""
        c = self.meter.c
        if c.handshake_complete and c.in_cur_cls == _APP and not c.in_cur_ok:
            c.in_cur_cls = _CLO
            c.in_app_records -= 1

    # With a memory BIO, SSL_write never waits for the transport: it encrypts all of `buf` or fails
    # before accepting any of it, so the plaintext is what the call returns (0 when it raises).

    def send(self, buf: Any, flags: int = 0) -> int:
        return self._write(_ssl_send, buf, flags)

    write = send

    def sendall(self, buf: Any, flags: int = 0) -> int:
        return self._write(_ssl_sendall, buf, flags)

    def _write(self, ssl_write: Any, buf: Any, flags: int) -> int:
        """Queue the records an SSL_write wrote, with the `n` plaintext bytes it accepted among them."""
        meter = self.meter
        try:
            n = ssl_write(self, buf, flags)
        except BaseException:
            meter._flush_out()
            raise
        if n:
            meter.out_plain_acc += n
            meter.c.out_dirty = 1
        meter._flush_out()
        return n

    def shutdown(self) -> bool:
        try:
            return super().shutdown()
        finally:
            self.meter._flush_out()
