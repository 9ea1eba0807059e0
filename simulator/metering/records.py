"""TLS record-layer facts: content types, an incremental record splitter, and per-cipher overhead.

The meter itself never parses byte streams (OpenSSL reports every record it reads or writes, see
`meter.py`). This module is the independent view: tests split the client's raw socket bytes with
`RecordStream` and check the meter against it, and `expected_overhead` states, from each cipher's
construction, what a record costs beyond its plaintext (the figures of vendor-facts §4).
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER_LEN = 5
CHANGE_CIPHER_SPEC = 20
ALERT = 21
HANDSHAKE = 22
APPLICATION_DATA = 23

CONTENT_TYPES = {CHANGE_CIPHER_SPEC: "change_cipher_spec", ALERT: "alert", HANDSHAKE: "handshake",
                 APPLICATION_DATA: "application_data"}


@dataclass(frozen=True, slots=True)
class Record:
    """One record as seen on the wire: where it starts in the stream, its outer type and body length."""

    offset: int
    content_type: int
    length: int

    @property
    def size(self) -> int:
        """Bytes on the wire: header plus body."""
        return HEADER_LEN + self.length


class RecordStream:
    """Split one direction of a TLS byte stream into records, however the bytes arrive.

    `feed` accepts arbitrary chunks (a header may straddle two chunks); it reads only headers and skips
    bodies by length, so its cost is per record, not per byte.
    """

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.total = 0          # bytes fed
        self._header = bytearray()
        self._skip = 0          # body bytes of the current record still to come

    def feed(self, data: bytes | bytearray | memoryview) -> list[Record]:
        """Consume a chunk; return the records whose header completed in it."""
        view = memoryview(data)
        new: list[Record] = []
        pos, end = 0, len(view)
        while pos < end:
            if self._skip:
                step = min(self._skip, end - pos)
                self._skip -= step
                pos += step
                continue
            need = HEADER_LEN - len(self._header)
            self._header += view[pos:pos + need]
            pos += min(need, end - pos)
            if len(self._header) == HEADER_LEN:
                h = self._header
                rec = Record(self.total + pos - HEADER_LEN, h[0], h[3] << 8 | h[4])
                new.append(rec)
                self._skip = rec.length
                self._header = bytearray()
        self.total += end
        self.records.extend(new)
        return new

    @property
    def complete(self) -> bool:
        """True when the stream ends on a record boundary."""
        return not self._skip and not self._header


# --- per-record overhead, from each cipher's construction -------------------------------------------

_MAC_LEN = {"SHA": 20, "SHA256": 32, "SHA384": 48, "MD5": 16}


def expected_overhead(version: str, cipher: str, plaintext: int, *, encrypt_then_mac: bool = True) -> int:
    """Bytes a record adds to `plaintext` bytes of application data, for a negotiated version/cipher.

    `version` as OpenSSL names it ("TLSv1.3", "TLSv1.2", ...), `cipher` as OpenSSL names it.
    TLS 1.3 AEAD: header 5 + inner content type 1 + tag 16 (CCM_8: tag 8).
    TLS 1.2 AES-GCM/CCM: header 5 + explicit nonce 8 + tag 16; ChaCha20-Poly1305: 5 + 16.
    CBC: header 5 + explicit IV (TLS 1.1+) + MAC + padding to the block size (with the padding-length
    byte). With encrypt-then-MAC (RFC 7366, on by default between OpenSSL peers) the padding covers the
    plaintext only; without it, the plaintext and the MAC.
    No record padding is assumed in TLS 1.3 (OpenSSL adds none unless configured to).
    """
    if version == "TLSv1.3":
        return HEADER_LEN + 1 + (8 if cipher.endswith("CCM_8_SHA256") else 16)
    if "CHACHA20" in cipher:
        return HEADER_LEN + 16
    if "GCM" in cipher or "CCM" in cipher:
        return HEADER_LEN + 8 + (8 if "CCM8" in cipher else 16)
    block = 8 if ("DES" in cipher and "AES" not in cipher) else 16
    mac = _MAC_LEN[cipher.rsplit("-", 1)[-1]]
    iv = 0 if version in ("TLSv1", "TLSv1.0", "SSLv3") else block
    padded = plaintext if encrypt_then_mac else plaintext + mac
    pad = block - padded % block  # 1..block, including the padding-length byte
    return HEADER_LEN + iv + mac + pad


def close_notify_size(version: str, cipher: str, *, encrypt_then_mac: bool = True) -> int:
    """Wire size of an encrypted close_notify alert (2 bytes of alert in one record)."""
    if version == "TLSv1.3":  # the alert plus its inner content type, under the AEAD tag
        return HEADER_LEN + 2 + 1 + (8 if cipher.endswith("CCM_8_SHA256") else 16)
    return 2 + expected_overhead(version, cipher, 2, encrypt_then_mac=encrypt_then_mac)
