"""TLS resumption across worker processes: shared session-ticket keys and a shared session-ID cache.

One process has one OpenSSL context per listener version, and both ways of resuming live in it: the
session-ticket keys (random per context) and the session cache (in its memory). With `workers: N` a client
that reconnects lands on any worker, so both must be shared, as nginx shares them between its workers
(`ssl_session_ticket_key`, `ssl_session_cache shared:`):

* **Ticket keys**: `SSL_CTX_set_tlsext_ticket_keys`, from a lab secret (`derive_ticket_keys`).
* **Session-ID cache**: `SharedSessionCache`, a fixed table of slots in a shared memory file that every
  worker maps, and the only session cache a worker's context keeps (OpenSSL's own is off, as in nginx
  with only a `shared:` cache); OpenSSL's external-cache callbacks store each new session (DER) in it
  and look sessions up there. Sessions expire as in OpenSSL (it checks a session's time and timeout
  whatever cache it came from); a full table overwrites older slots, like nginx's.

  A TLS 1.3 session behind a stateless ticket is never looked up by its ID, yet OpenSSL hands each one
  to the new-session callback (two per connection, one per ticket) and, with a remove callback set, would
  keep each in its own cache until it expires. Storing them cost a worker about 35 µs per ticket, and its
  own cache up to 20,480 sessions, which one process never paid (docs/performance.md, "Round fifteen"):
  they are skipped, unless the context's TLS 1.3 tickets are stateful (`SSL_OP_NO_TICKET`, early data).
  The two callbacks that run on every connection (new and remove) are cffi callbacks for that reason.

Neither pyOpenSSL nor cryptography's bindings expose `SSL_CTX_ctrl` or the session-cache callbacks, and the
OpenSSL that pyOpenSSL drives is linked statically into cryptography's `_rust` extension, where they are
local symbols. So we read their addresses from the extension's ELF symbol table, check that the code
mapped in memory is the code in the file, and call them through ctypes (the callbacks are handed over by
address); the keys are read back to prove
the call did what it says. Anything unexpected (another platform, a stripped build) raises
`ResumptionUnavailable` instead of guessing.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import mmap
import os
import struct
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from OpenSSL import SSL

from simulator.errors import LbsimError

TICKET_KEYS_LENGTH = 80  # name (16) + HMAC secret (32) + AES key (32), OpenSSL 1.1.1 and 3.x
_SSL_CTRL_SESS_NUMBER = 20
_SSL_CTRL_GET_TLSEXT_TICKET_KEYS = 58
_SSL_CTRL_SET_TLSEXT_TICKET_KEYS = 59
_STT_FUNC = 2


logger = logging.getLogger(__name__)


class ResumptionUnavailable(LbsimError):
    def __init__(self, message: str):
        super().__init__("ResumptionUnavailable", message, field="workers",
                         hint="multi-worker listeners share TLS sessions across processes; use workers: 1")


def derive_ticket_keys(secret: bytes, label: bytes) -> bytes:
    """80 bytes of ticket keys for `label` (a listener configuration) under a lab-wide `secret`."""
    return HKDF(hashes.SHA256(), TICKET_KEYS_LENGTH, salt=None, info=b"lbsim session tickets|" + label).derive(secret)


def set_ticket_keys(context: SSL.Context, keys: bytes) -> None:
    """Make `context` encrypt and decrypt session tickets (TLS 1.2 and 1.3) with `keys` (80 bytes)."""
    if len(keys) != TICKET_KEYS_LENGTH:
        raise ValueError(f"ticket keys are {TICKET_KEYS_LENGTH} bytes, got {len(keys)}")
    ctrl = _ssl_ctx_ctrl()
    ctx = _pointer(context._context)  # type: ignore[attr-defined]
    buf = ctypes.create_string_buffer(keys, TICKET_KEYS_LENGTH)
    if ctrl(ctx, _SSL_CTRL_SET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LENGTH, buf) != 1:
        SSL._lib.ERR_clear_error()  # type: ignore[attr-defined]  # or pyOpenSSL reports it on the next call
        raise ResumptionUnavailable("OpenSSL refused the session-ticket keys")
    if get_ticket_keys(context) != keys:
        raise ResumptionUnavailable("OpenSSL did not keep the session-ticket keys it was given")


def get_ticket_keys(context: SSL.Context) -> bytes:
    ctrl = _ssl_ctx_ctrl()
    ctx = _pointer(context._context)  # type: ignore[attr-defined]
    out = ctypes.create_string_buffer(TICKET_KEYS_LENGTH)
    if ctrl(ctx, _SSL_CTRL_GET_TLSEXT_TICKET_KEYS, TICKET_KEYS_LENGTH, out) != 1:
        SSL._lib.ERR_clear_error()  # type: ignore[attr-defined]
        raise ResumptionUnavailable("OpenSSL would not report the session-ticket keys")
    return out.raw


def openssl_sessions(context: SSL.Context) -> int:
    """Sessions in OpenSSL's own cache of `context` (`SSL_CTX_sess_number`)."""
    return int(_ssl_ctx_ctrl()(_pointer(context._context), _SSL_CTRL_SESS_NUMBER, 0, None))  # type: ignore[attr-defined]


def _pointer(cdata: Any) -> int:
    return int(SSL._ffi.cast("uintptr_t", cdata))  # type: ignore[attr-defined]


def available() -> bool:
    """Whether this process can share ticket keys and sessions."""
    try:
        _ssl_ctx_ctrl()
        _session_functions()
    except ResumptionUnavailable:
        return False
    return True


# ---- the shared session-ID cache -------------------------------------------------------------------------

_GET_CB = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ubyte), ctypes.c_int,
                           ctypes.POINTER(ctypes.c_int))


@functools.cache
def _session_functions() -> dict[str, Any]:
    return {
        "set_new": openssl_function("SSL_CTX_sess_set_new_cb", None, ctypes.c_void_p, ctypes.c_void_p),
        "set_get": openssl_function("SSL_CTX_sess_set_get_cb", None, ctypes.c_void_p, _GET_CB),
        "set_remove": openssl_function("SSL_CTX_sess_set_remove_cb", None, ctypes.c_void_p, ctypes.c_void_p),
        "version": openssl_function("SSL_SESSION_get_protocol_version", ctypes.c_int, ctypes.c_void_p),
        "get_id": openssl_function("SSL_SESSION_get_id", ctypes.c_void_p, ctypes.c_void_p,
                                   ctypes.POINTER(ctypes.c_uint)),
        "max_early_data": openssl_function("SSL_CTX_get_max_early_data", ctypes.c_uint32, ctypes.c_void_p),
        "ssl_ctx": openssl_function("SSL_get_SSL_CTX", ctypes.c_void_p, ctypes.c_void_p),
    }


class SharedSessionCache:
    """TLS sessions by session ID in a shared memory file: nginx's `ssl_session_cache shared:`.

    `SLOTS` slots of `SLOT` bytes: a 32-byte key (SHA-256 of the listener version's label and the session
    ID), a 4-byte length, a 32-byte SHA-256 of the DER, then the DER. A session lands in the slot its key
    hashes to, replacing what was there. Writers take no lock: a reader checks the DER's hash, so a slot
    caught half-written is a miss (a full handshake), never a wrong session. Sessions too big for a slot
    (client certificates with long chains) are not shared.
    """

    SLOT = 2048
    SLOTS = 8192  # 16 MiB of address space; tmpfs only allocates the pages written

    def __init__(self, path: str | os.PathLike[str], create: bool = False):
        self.path = Path(path)
        flags = os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0)
        fd = os.open(self.path, flags, 0o600)  # sessions hold master secrets: owner only
        try:
            if create:
                os.ftruncate(fd, self.SLOT * self.SLOTS)
            self._map = mmap.mmap(fd, self.SLOT * self.SLOTS)
        finally:
            os.close(fd)
        self._functions = _session_functions()
        self.stored = self.found = 0

    @classmethod
    def create(cls, directory: str | os.PathLike[str] | None = None) -> SharedSessionCache:
        """A new cache file in /dev/shm (memory) where it exists."""
        import tempfile

        base = directory or ("/dev/shm" if os.path.isdir("/dev/shm") else None)
        fd, name = tempfile.mkstemp(prefix="lbsim-sessions-", dir=base)
        os.close(fd)
        os.unlink(name)
        return cls(name, create=True)

    @property
    def closed(self) -> bool:
        return self._map.closed

    def close(self, unlink: bool = False) -> None:
        for ctx in [c for c, (cache, _) in _ATTACHED.items() if cache is self]:
            del _ATTACHED[ctx]  # its contexts' callbacks now find nothing: full handshakes
            _STATEFUL.discard(ctx)
        self._map.close()
        if unlink:
            self.path.unlink(missing_ok=True)

    # -- slots --

    def _slot(self, key: bytes) -> int:
        return int.from_bytes(key[:8], "little") % self.SLOTS * self.SLOT

    def put(self, key: bytes, der: bytes) -> bool:
        if len(der) > self.SLOT - 68:
            return False
        at = self._slot(key)
        self._map[at:at + 68 + len(der)] = key + len(der).to_bytes(4, "little") + hashlib.sha256(der).digest() + der
        self.stored += 1
        return True

    def get(self, key: bytes) -> bytes | None:
        at = self._slot(key)
        head = self._map[at:at + 68]
        if head[:32] != key:
            return None
        length = int.from_bytes(head[32:36], "little")
        if length > self.SLOT - 68:
            return None
        der = self._map[at + 68:at + 68 + length]
        if hashlib.sha256(der).digest() != head[36:68] or self._map[at:at + 32] != key:
            return None  # caught while another worker wrote the slot
        self.found += 1
        return der

    def remove(self, key: bytes) -> None:
        at = self._slot(key)
        if self._map[at:at + 32] == key:
            self._map[at:at + 32] = bytes(32)

    # -- OpenSSL --

    def attach(self, context: SSL.Context, namespace: bytes) -> None:
        """Make `context` store its new sessions here and find here those its own cache lacks.

        `namespace` separates listener versions: a session of one configuration never resumes on another,
        as with one context per configuration. Attach a listener's SNI contexts too: OpenSSL passes the
        connection, whose context is the SNI one once the name is known.
        """
        functions = self._functions
        ctx = _pointer(context._context)  # type: ignore[attr-defined]
        # TLS 1.3 tickets are stateless unless tickets are off (then a ticket is a session ID) or early data
        # is on (OpenSSL then keeps tickets in the cache against replay): only stateful ones need a cache.
        stateless = not context.set_options(0) & SSL.OP_NO_TICKET and functions["max_early_data"](ctx) == 0
        # The callbacks are module-level and never freed: OpenSSL calls the remove callback while it frees
        # a context, which the garbage collector may do after freeing the context's Python attributes.
        _ATTACHED[ctx] = (self, namespace)
        (_STATEFUL.discard if stateless else _STATEFUL.add)(ctx)  # an address may be a freed context's again
        # This cache is the context's only one: OpenSSL's own would hold a worker's sessions a second time
        # (and, with a remove callback set, every TLS 1.3 session too; see the module's docstring).
        context.set_session_cache_mode(SSL.SESS_CACHE_SERVER | SSL.SESS_CACHE_NO_INTERNAL_STORE)
        functions["set_new"](ctx, _NEW_ADDRESS)
        functions["set_get"](ctx, _on_get)
        functions["set_remove"](ctx, _REMOVE_ADDRESS)


# SSL_CTX address -> (cache, namespace). An entry outlives its context, but a context only gets callbacks
# through `attach`, which rewrites the entry of its address first.
_ATTACHED: dict[int, tuple[SharedSessionCache, bytes]] = {}
_STATEFUL: set[int] = set()  # attached contexts whose TLS 1.3 tickets are session IDs (none of lbsim's)
_TLS1_3 = 0x0304


def _key(namespace: bytes, session_id: bytes) -> bytes:
    return hashlib.sha256(namespace + session_id).digest()


def _session_key(ctx: int, session: int) -> tuple[SharedSessionCache, bytes] | None:
    attached = _ATTACHED.get(ctx)
    if attached is None:
        return None
    length = ctypes.c_uint(0)
    data = _session_functions()["get_id"](session, ctypes.byref(length))
    if not data or not length.value:
        return None
    return attached[0], _key(attached[1], ctypes.string_at(data, length.value))


def _ssl_ctx_of(ssl: int) -> int:
    return _session_functions()["ssl_ctx"](ssl) or 0


def _on_new(ssl: Any, session: Any) -> int:
    """OpenSSL's new-session callback, through cffi: called twice per TLS 1.3 connection (once per ticket), where
    it returns after one call into OpenSSL (as a ctypes callback it cost about 2 µs a call doing the same)."""
    ffi, lib = SSL._ffi, SSL._lib  # type: ignore[attr-defined]
    tls13 = lib.SSL_version(ssl) >= _TLS1_3
    if tls13 and not _STATEFUL:
        return 0  # its stateless ticket carries it: nobody looks it up by ID
    ctx = _ssl_ctx_of(_pointer(ssl))
    if tls13 and ctx not in _STATEFUL:
        return 0
    found = _session_key(ctx, _pointer(session))
    if found is not None:
        cache, key = found
        size = lib.i2d_SSL_SESSION(session, ffi.NULL)
        buf = ffi.new("unsigned char[]", size)
        lib.i2d_SSL_SESSION(session, ffi.new("unsigned char **", buf))
        cache.put(key, bytes(ffi.buffer(buf, size)))
    return 0  # we keep no reference to OpenSSL's session


def _new_failed(_type: Any, _value: BaseException, _traceback: Any) -> None:
    logger.error("storing a TLS session", exc_info=(_type, _value, _traceback))  # never raised into OpenSSL


# The callbacks are module-level and never freed (see `attach`); on an exception cffi returns 0 to OpenSSL.
_NEW = SSL._ffi.callback("int(SSL *, SSL_SESSION *)", _on_new, error=0, onerror=_new_failed)  # type: ignore[attr-defined]
_NEW_ADDRESS = _pointer(_NEW)


@_GET_CB
def _on_get(ssl: int, data: Any, length: int, copy: Any) -> int | None:
    try:
        attached = _ATTACHED.get(_ssl_ctx_of(ssl))
        if attached is None:
            return None
        der = attached[0].get(_key(attached[1], ctypes.string_at(data, length)))
        if der is None:
            return None
        ffi, lib = SSL._ffi, SSL._lib  # type: ignore[attr-defined]
        buf = ffi.new("unsigned char[]", der)
        session = lib.d2i_SSL_SESSION(ffi.NULL, ffi.new("unsigned char **", buf), len(der))
        if session == ffi.NULL:
            return None
        copy[0] = 0  # the new session's one reference goes to OpenSSL
        return _pointer(session)
    except Exception:
        logger.exception("looking up a TLS session")
        return None


def _on_remove(ctx: Any, session: Any) -> None:
    """OpenSSL's remove-session callback, through cffi: OpenSSL also calls it when it frees a connection that
    sent no close_notify (a client that left first), where a TLS 1.3 session with a stateless ticket returns
    after one call (it was never stored)."""
    ctx, session = _pointer(ctx), _pointer(session)
    if ctx not in _STATEFUL and _session_functions()["version"](session) >= _TLS1_3:
        return
    found = _session_key(ctx, session)
    if found is not None and not found[0].closed:
        found[0].remove(found[1])


_REMOVE = SSL._ffi.callback("void(SSL_CTX *, SSL_SESSION *)", _on_remove, onerror=lambda *_: None)  # type: ignore[attr-defined]  # a context freed at shutdown
_REMOVE_ADDRESS = _pointer(_REMOVE)


@functools.cache
def _ssl_ctx_ctrl() -> Any:
    """`long SSL_CTX_ctrl(SSL_CTX *, int, long, void *)`."""
    return openssl_function("SSL_CTX_ctrl", ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_void_p)


def openssl_function(name: str, restype: Any, *argtypes: Any) -> Any:
    """A function of the OpenSSL that pyOpenSSL uses, found by its (possibly local) symbol."""
    return ctypes.CFUNCTYPE(restype, *argtypes)(_address(name))


@functools.cache
def _address(name: str) -> int:
    library = _library()
    elf = library.elf
    try:
        value, size = elf.symbol(name.encode())
    except ValueError as e:
        raise ResumptionUnavailable(f"cannot find {name} in {library.path.name}: {e}") from None
    address = library.bias + value
    expected = elf.code(value, min(size, 64))
    if ctypes.string_at(address, len(expected)) != expected:
        raise ResumptionUnavailable(f"the code mapped from {library.path.name} is not the code in the file")
    return address


class _Library:
    def __init__(self, path: Path, elf: _Elf, bias: int):
        self.path, self.elf, self.bias = path, elf, bias


@functools.cache
def _library() -> _Library:
    try:
        from cryptography.hazmat.bindings import _rust
    except ImportError as e:  # pragma: no cover
        raise ResumptionUnavailable(f"cannot locate cryptography's OpenSSL: {e}") from None
    path = Path(_rust.__file__)
    try:
        elf = _Elf(path.read_bytes())
        anchor = elf.symbol(b"PyInit__rust")
        handle = ctypes.CDLL(str(path))  # already loaded: dlopen returns the same mapping
        bias = ctypes.cast(handle.PyInit__rust, ctypes.c_void_p).value - anchor[0]
    except (OSError, ValueError, AttributeError, struct.error) as e:
        raise ResumptionUnavailable(f"cannot read the symbols of {path.name}: {e}") from None
    return _Library(path, elf, bias)


class _Elf:
    """Just enough of an ELF64 little-endian shared object: symbols and the bytes at an address."""

    def __init__(self, data: bytes):
        if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
            raise ValueError("not a 64-bit little-endian ELF file")
        self.data = data
        shoff, = struct.unpack_from("<Q", data, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
        # (name, type, flags, addr, offset, size, link, info, addralign, entsize)
        self.sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]

    def symbol(self, name: bytes) -> tuple[int, int]:
        """(value, size) of a defined function symbol from .symtab (local symbols included) or .dynsym."""
        for symtab_type in (2, 11):  # SHT_SYMTAB, SHT_DYNSYM
            for sec in self.sections:
                if sec[1] != symtab_type:
                    continue
                strtab = self.sections[sec[6]]
                strings = self.data[strtab[4]:strtab[4] + strtab[5]]
                index = strings.find(b"\0" + name + b"\0")
                if index < 0:
                    continue
                name_offset = index + 1
                table = self.data[sec[4]:sec[4] + sec[5]]
                for st_name, st_info, _other, st_shndx, st_value, st_size in struct.iter_unpack("<IBBHQQ", table):
                    if st_name == name_offset and st_info & 0xF == _STT_FUNC and st_shndx and st_value:
                        return st_value, st_size
        raise ValueError(f"no symbol {name.decode()}")

    def code(self, address: int, size: int) -> bytes:
        """The file's bytes at a virtual address (inside a section with contents)."""
        for _name, sh_type, _flags, addr, offset, sec_size, *_ in self.sections:
            if sh_type != 8 and addr <= address < addr + sec_size:  # not SHT_NOBITS
                start = offset + address - addr
                return self.data[start:start + size]
        raise ValueError(f"address {address:#x} is in no section")
