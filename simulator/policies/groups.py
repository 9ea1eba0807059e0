"""Pinning the key exchange groups to X25519, P-256 and P-384, the way a 2020s vendor listener offers them.

pyOpenSSL binds no ``SSL_CTX_set1_groups_list``, and the OpenSSL 3.5 under it prefers the hybrid
post-quantum group ``X25519MLKEM768`` for TLS 1.3 (about 1.1 KB more key share each way) and also offers
X448, P-521 and FFDHE groups. The one lever left is OpenSSL's own configuration: a ``system_default``
section read once, when OpenSSL initialises. So :func:`pin_groups` must run before anything imports
``cryptography``, ``OpenSSL`` or ``mitmproxy`` in the process (this module imports none of them).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

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
