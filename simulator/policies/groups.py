"""Key-exchange groups: the process-wide default (X25519, P-256, P-384), and a policy's own per context.

The OpenSSL 3.5 under pyOpenSSL prefers the hybrid post-quantum group ``X25519MLKEM768`` for TLS 1.3
(about 1.1 KB more key share each way) and also offers X448, P-521 and FFDHE groups. :func:`pin_groups`
sets the default for every context of the process (lbsim's own clients included) through OpenSSL's
configuration, a ``system_default`` section read once, when OpenSSL initialises: it must run before
anything imports ``cryptography``, ``OpenSSL`` or ``mitmproxy`` (this module imports none of them at
import time). :func:`set_groups` then gives one context its policy's groups (listeners do, see
``simulator.policies.context``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

GROUPS: tuple[str, ...] = ("X25519", "P-256", "P-384")
CONF_PATH = Path(__file__).with_name("groups.cnf")


def pin_groups(environ: dict[str, str] | None = None) -> bool:
    """Point ``OPENSSL_CONF`` at our groups configuration, unless the caller already set one.

    Returns True if the setting can still take effect in this process (OpenSSL not initialised yet).
    Pass `environ` to prepare a child process's environment instead.
    """
    env = os.environ if environ is None else environ
    env.setdefault("OPENSSL_CONF", str(CONF_PATH))
    if environ is not None:
        return True
    return env["OPENSSL_CONF"] == str(CONF_PATH) and "cryptography.hazmat.bindings._rust" not in sys.modules


# --- per-context groups -------------------------------------------------------------------------------
#
# A listener's key-exchange groups belong to its security policy (the post-quantum policies add hybrid
# ML-KEM groups), so the process-wide pin above only sets the default. ``SSL_CTX_set1_groups_list`` is a
# macro over ``SSL_CTX_ctrl``, and neither pyOpenSSL (26) nor cryptography's ``_lib`` (46) binds it, nor
# exports it from the wheel's ``_rust`` module, whose OpenSSL is linked statically. The module is not
# stripped, though: its ELF symbol table gives ``SSL_CTX_ctrl``'s offset, and the exported
# ``PyInit__rust`` gives the load address to add it to. ctypes then calls it like any C function.

SSL_CTRL_SET_GROUPS_LIST = 92  # OpenSSL's ssl.h (SSL_CTRL_SET_CURVES_LIST is the same number)


def _elf_symbols(path: str, names: set[str]) -> dict[str, int]:
    """Values (offsets) of `names` in the .symtab of the 64-bit little-endian ELF file at `path`."""
    import struct

    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return {}
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    found: dict[str, int] = {}
    wanted = {n.encode() for n in names}
    for sh in sections:
        if sh[1] != 2:  # SHT_SYMTAB
            continue
        strtab = sections[sh[6]][4]
        for st_name, _info, _other, _shndx, value, _size in struct.iter_unpack("<IBBHQQ", data[sh[4]:sh[4] + sh[5]]):
            end = data.index(b"\0", strtab + st_name)
            name = data[strtab + st_name:end]
            if name in wanted:
                found[name.decode()] = value
    return found


_ctrl: Any = None


def _ssl_ctx_ctrl() -> Any:
    """OpenSSL's ``SSL_CTX_ctrl`` inside cryptography's wheel, as a ctypes function; None if not found."""
    global _ctrl
    if _ctrl is None:
        import ctypes

        import cryptography.hazmat.bindings._rust as rust

        symbols = _elf_symbols(rust.__file__, {"SSL_CTX_ctrl", "PyInit__rust"})
        if len(symbols) != 2:
            _ctrl = False
            return None
        module = ctypes.CDLL(rust.__file__)  # already loaded: the same mapping
        base = ctypes.cast(module.PyInit__rust, ctypes.c_void_p).value - symbols["PyInit__rust"]
        prototype = ctypes.CFUNCTYPE(ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p)
        _ctrl = prototype(base + symbols["SSL_CTX_ctrl"])
    return _ctrl or None


def groups_settable() -> bool:
    """Whether :func:`set_groups` can work with this cryptography wheel."""
    return _ssl_ctx_ctrl() is not None


def set_groups(ctx: Any, groups: tuple[str, ...] | list[str]) -> None:
    """Restrict the pyOpenSSL `ctx` (server or client) to the key-exchange `groups`, in preference order.

    Names as OpenSSL spells them: ``X25519``, ``P-256``, ``X25519MLKEM768``, ``SecP384r1MLKEM1024``...
    Raises ValueError for a group this OpenSSL does not know, RuntimeError when the wheel gives no way in.
    """
    from OpenSSL import SSL

    ctrl = _ssl_ctx_ctrl()
    if ctrl is None:
        raise RuntimeError("this cryptography build hides SSL_CTX_ctrl: key-exchange groups cannot be set per listener")
    pointer = int(SSL._ffi.cast("uintptr_t", ctx._context))  # type: ignore[attr-defined]
    if ctrl(pointer, SSL_CTRL_SET_GROUPS_LIST, 0, ":".join(groups).encode()) != 1:
        raise ValueError(f"OpenSSL refuses the group list {':'.join(groups)!r} (unknown group?)")
