"""The meter's OpenSSL message callback, in C when a C compiler is at hand, else in Python.

OpenSSL calls the message callback for every record header and handshake message: about 25 times per
TLS 1.2 connection and 36 per TLS 1.3 one. From C into Python through cffi each call costs about 1.8 µs
before it does anything, which made up about half of what metering cost a listener per new connection
(docs/metering.md, Cost). The C version does the same bookkeeping without leaving C. It needs no OpenSSL
header or symbol (the `SSL *` is never looked at), so it is built with the machine's `cc` from the source
below on first use, cached by the source's hash, and loaded with cffi in ABI mode (no Python headers).

The library also holds an info callback that does nothing (`quiet_info_callback`), which a metered listener
connection sets in place of its context's (simulator.dataplane.addons.tls).

Both versions write the same `struct lbsim_counters`, which `ConnectionMeter` reads; `LBSIM_NATIVE=0`
forces the Python version, and so does a machine without a compiler (the meter then counts the same bytes
at a higher CPU cost).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import cffi
from OpenSSL._util import ffi as _ssl_ffi

# Per connection: record bookkeeping that the callback updates and ConnectionMeter reads. Classes are
# indices: 0 handshake, 1 application data, 2 closure.
STRUCT = """
struct lbsim_counters {
    int64_t in_done[3];      /* bytes of records OpenSSL has moved past, per class */
    int64_t in_end;          /* stream offset where the last announced record ends */
    int64_t in_cur_start;    /* the last announced record (it may still be incomplete) */
    int64_t in_cur_size;
    int64_t in_records;
    int64_t in_app_records;
    int64_t out_acc[3];      /* records written by the running operation, per class */
    int64_t out_last_size;
    int64_t out_records;
    int64_t out_app_records;
    int32_t in_cur_cls;      /* -1: none yet */
    int32_t in_cur_ok;       /* it decrypted (inner type seen) or yielded plaintext */
    int32_t out_last_cls;
    int32_t out_dirty;       /* out_acc holds something to queue */
    int32_t handshake_complete;
    int32_t out_alert;       /* the last alert written: level << 8 | description; 0: none */
};
"""

# The same logic as `_python_callback` below: keep the two in step (the tests run both).
SOURCE = "#include <stdint.h>\n#include <stddef.h>\n" + STRUCT + r"""
enum { HS = 0, APP = 1, CLO = 2 };

/* Class of a record after the handshake, from its (inner) content type. */
static int post_handshake_class(int type) {
    return type == 23 ? APP : (type == 22 || type == 20) ? HS : CLO;
}

void lbsim_on_message(int write_p, int version, int content_type, const void *buf, size_t len,
                      void *ssl, void *arg) {
    struct lbsim_counters *m = arg;
    const unsigned char *p = buf;
    (void)version; (void)ssl;
    if (m == NULL) return;
    if (content_type == 256) {                     /* SSL3_RT_HEADER: the 5 header bytes of a record */
        if (len != 5) return;
        int64_t size = ((int64_t)p[3] << 8 | p[4]) + 5;
        int cls = m->handshake_complete ? post_handshake_class(p[0]) : HS;
        if (write_p) {
            m->out_acc[cls] += size;
            m->out_dirty = 1;
            m->out_last_size = size;
            m->out_last_cls = cls;
            m->out_records++;
            if (cls == APP) m->out_app_records++;
        } else {
            if (m->in_cur_cls >= 0) m->in_done[m->in_cur_cls] += m->in_cur_size;
            m->in_cur_start = m->in_end;
            m->in_cur_size = size;
            m->in_end += size;
            m->in_cur_cls = cls;
            m->in_cur_ok = 0;
            m->in_records++;
            if (cls == APP) m->in_app_records++;
        }
    } else if (content_type == 21 && len == 2) {   /* SSL3_RT_ALERT: an alert's two bytes, in plaintext */
        if (write_p) m->out_alert = p[0] << 8 | p[1];
    } else if (content_type == 257 && len == 1) {  /* SSL3_RT_INNER_CONTENT_TYPE: TLS 1.3 */
        int inner = p[0];
        if (write_p) {
            if (m->out_last_cls == APP && inner != 23) {
                int cls = post_handshake_class(inner);
                m->out_acc[APP] -= m->out_last_size;
                m->out_acc[cls] += m->out_last_size;
                m->out_last_cls = cls;
                m->out_app_records--;
            }
        } else {
            m->in_cur_ok = 1;
            if (m->in_cur_cls == APP && inner != 23) {
                m->in_cur_cls = post_handshake_class(inner);
                m->in_app_records--;
            }
        }
    }
}

/* An info callback that does nothing: set on an SSL, it stands in for its context's (see quiet_info_callback). */
void lbsim_no_info(const void *ssl, int where, int ret) {
    (void)ssl; (void)where; (void)ret;
}
"""

_SSL_SIGNATURE = "void(*)(int, int, int, const void *, size_t, SSL *, void *)"  # pyOpenSSL's view of it

ffi = cffi.FFI()
ffi.cdef(STRUCT + "void lbsim_on_message(int, int, int, const void *, size_t, void *, void *);"
         "void lbsim_no_info(const void *, int, int);")
_INFO_SIGNATURE = "void(*)(const SSL *, int, int)"

_APP, _HANDSHAKE, _CCS = 23, 22, 20
_python_errors = 0


def _post_handshake_class(content_type: int) -> int:
    return 1 if content_type == _APP else 0 if content_type in (_HANDSHAKE, _CCS) else 2


def _count_error(exc_type: Any, exc: Any, tb: Any) -> None:
    """Never let a metering bug raise into OpenSSL's state machine; count it instead. (Wire counts stay
    exact regardless: a missed record event only moves its bytes to the unread-bytes rule.)"""
    global _python_errors
    _python_errors += 1


@ffi.callback("void(int, int, int, const unsigned char *, size_t, void *, struct lbsim_counters *)",
              onerror=_count_error)
def _python_callback(write_p: int, version: int, content_type: int, p: Any, length: int, ssl: Any,
                     m: Any) -> None:
    if m == ffi.NULL:
        return
    if content_type == 256:
        if length != 5:
            return
        size = (p[3] << 8 | p[4]) + 5
        cls = _post_handshake_class(p[0]) if m.handshake_complete else 0
        if write_p:
            m.out_acc[cls] += size
            m.out_dirty = 1
            m.out_last_size = size
            m.out_last_cls = cls
            m.out_records += 1
            if cls == 1:
                m.out_app_records += 1
        else:
            if m.in_cur_cls >= 0:
                m.in_done[m.in_cur_cls] += m.in_cur_size
            m.in_cur_start = m.in_end
            m.in_cur_size = size
            m.in_end += size
            m.in_cur_cls = cls
            m.in_cur_ok = 0
            m.in_records += 1
            if cls == 1:
                m.in_app_records += 1
    elif content_type == 21 and length == 2:
        if write_p:
            m.out_alert = p[0] << 8 | p[1]
    elif content_type == 257 and length == 1:
        inner = p[0]
        if write_p:
            if m.out_last_cls == 1 and inner != _APP:
                cls = _post_handshake_class(inner)
                m.out_acc[1] -= m.out_last_size
                m.out_acc[cls] += m.out_last_size
                m.out_last_cls = cls
                m.out_app_records -= 1
        else:
            m.in_cur_ok = 1
            if m.in_cur_cls == 1 and inner != _APP:
                m.in_cur_cls = _post_handshake_class(inner)
                m.in_app_records -= 1


def python_errors() -> int:
    """Exceptions swallowed in the Python callback since start-up (tests require 0)."""
    return _python_errors


def _cache_dirs() -> list[Path]:
    dirs = [Path(__file__).with_name("_build")]
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    dirs += [Path(cache) / "lbsim", Path(tempfile.gettempdir()) / f"lbsim-{os.getuid()}"]
    return dirs


def build(cc: str = "cc") -> Path | None:
    """The compiled callback library: cached by the source's hash, built with `cc` when missing; None when
    it cannot be built (no compiler, no writable cache directory)."""
    name = f"lbsim_msg_callback-{hashlib.sha256(SOURCE.encode()).hexdigest()[:16]}.so"
    for directory in _cache_dirs():
        target = directory / name
        if target.exists():
            return target
    for directory in _cache_dirs():
        try:
            directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=directory) as tmp:
                src, out = Path(tmp) / "msg_callback.c", Path(tmp) / name
                src.write_text(SOURCE)
                done = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(out), str(src)],
                                      capture_output=True, text=True, timeout=60)
                if done.returncode != 0:
                    return None  # the compiler refused: another directory will not change that
                os.replace(out, directory / name)  # atomic: parallel labs may build at once
            return directory / name
        except OSError:  # no compiler, or this directory is not writable: try the next one
            continue
    return None


@ffi.callback("void(const void *, int, int)")
def _python_no_info(ssl: Any, where: int, ret: int) -> None:
    pass


def _load() -> tuple[Any, Any, str]:
    """(the loaded library or None, the callback, its kind)."""
    if os.environ.get("LBSIM_NATIVE", "1") != "0":
        path = build()
        if path is not None:
            try:
                lib = ffi.dlopen(str(path))
                return lib, lib.lbsim_on_message, "c"
            except OSError:
                pass
    return None, _python_callback, "python"


# The library stays referenced for the life of the process: OpenSSL holds raw pointers into it.
_library, _callback, KIND = _load()


def _by_kind(kind: str | None) -> Any:
    """The callback of `kind` ("c" or "python"; None: the one loaded, `KIND`)."""
    if kind == "python":
        return _python_callback
    if kind == "c" and KIND != "c":
        raise RuntimeError("the C callback is not built on this machine")
    return _callback


def ssl_callback(kind: str | None = None) -> Any:
    """The callback as pyOpenSSL's `SSL_CTX_set_msg_callback` takes it (`kind`: see `_by_kind`)."""
    return _ssl_ffi.cast(_SSL_SIGNATURE, int(ffi.cast("uintptr_t", _by_kind(kind))))


def quiet_info_callback() -> Any:
    """An info callback that does nothing, as `SSL_set_info_callback` takes it (in C when built).

    OpenSSL calls an SSL's info callback, or else its context's, at every state of a handshake: about 15
    times a connection. Set on one SSL, this one keeps the context's (a call into Python each time) away."""
    fn = _library.lbsim_no_info if _library is not None else _python_no_info
    return _ssl_ffi.cast(_INFO_SIGNATURE, int(ffi.cast("uintptr_t", fn)))


def available() -> list[str]:
    """The callbacks this machine has: "python" always, "c" first when it could be built."""
    return ["c", "python"] if KIND == "c" else ["python"]


def call(kind: str, write_p: int, content_type: int, data: bytes, counters: Any) -> None:
    """Call a callback as OpenSSL would (for tests of the bookkeeping on its own)."""
    _by_kind(kind)(write_p, 0x0303, content_type, ffi.from_buffer("unsigned char[]", data), len(data), ffi.NULL, counters)


def new_counters() -> Any:
    """A zeroed `struct lbsim_counters` (owned by the returned cdata: keep it as long as the SSL lives)."""
    m = ffi.new("struct lbsim_counters *")
    m.in_cur_cls = m.out_last_cls = -1
    return m


def ssl_arg(counters: Any) -> Any:
    """The counters' address as the callback argument pyOpenSSL's binding takes (`void *`)."""
    return _ssl_ffi.cast("void *", int(ffi.cast("uintptr_t", counters)))
