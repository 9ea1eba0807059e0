"""The certificate store: validated uploads, kept in a directory, private keys encrypted at rest.

    store = CertificateStore()                      # $LBSIM_HOME, else ~/.local/share/lbsim
    info = store.upload_server("site", chain_pem, key_pem, profile="aliyun-slb")
    store.material(info.id)                         # decrypted, in memory, for the TLS data plane only

Layout of ``<home>/certs/``: ``<id>.json`` (metadata, the commit point of every write),
``<id>.r<revision>.chain.pem`` and ``<id>.r<revision>.key.enc`` (AES-GCM under the key-encryption key,
the certificate id as associated data). Every file is written to a temporary name, fsynced, renamed,
and the directory fsynced; content files go first and the JSON last, so a crash leaves either the old
record or the new one, plus orphans that the next write sweeps. Writers hold an exclusive `flock`,
readers a shared one.

A running lab also keeps ``.usage-<owner>.json`` there: which of its listeners use which certificate, with
its pid, so that `delete` from another process (the CLI) refuses a certificate in use. A record whose
process is gone is ignored and swept.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fcntl
import hashlib
import json
import logging
import os
import re
import secrets
import string
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from simulator import vendors
from simulator.certs.parse import CertMeta, cert_meta, iso, load_known_key
from simulator.certs.validate import (
    CertType,
    Finding,
    Parsed,
    check_name,
    check_type,
    evaluate,
    finding_for,
    get_profile,
    time_flags,
)
from simulator.errors import LbsimError

log = logging.getLogger("lbsim.certs")

ENV_HOME = "LBSIM_HOME"
ENV_KEK = "LBSIM_KEK"
ENV_KEK_FILE = "LBSIM_KEK_FILE"
ENV_QUOTA = "LBSIM_CERT_QUOTA"
DEFAULT_QUOTA = 100
RECORD_FORMAT = 1
TIME_CODES = frozenset({"CertificateExpired", "CertificateNotYetValid"})
_CONTENT_FILE = re.compile(r"^(?P<id>[^.]+)\.r(?P<rev>\d+)\.(chain\.pem|key\.enc)$")
USAGE_PREFIX = ".usage-"


def default_home() -> Path:
    """``$LBSIM_HOME``, else ``$XDG_DATA_HOME/lbsim``, else ``~/.local/share/lbsim``."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / "lbsim"


@dataclass(frozen=True)
class CertInfo:
    """What list and describe return: metadata only, never key material."""

    id: str
    name: str
    type: CertType
    profile: str
    fingerprint: str
    fingerprint_sha256: str
    subject: str
    sans: list[str]
    issuer: str
    serial: str
    not_before: dt.datetime
    not_after: dt.datetime
    key_type: str
    key_size: int
    chain_length: int
    warnings: list[Finding]
    expired: bool
    not_yet_valid: bool
    revision: int
    created: dt.datetime
    updated: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        for k in ("not_before", "not_after", "created", "updated"):
            out[k] = iso(out[k])
        out["warnings"] = [w.to_dict() for w in self.warnings]
        out["sans"] = list(self.sans)
        return out


@dataclass(frozen=True)
class Material:
    """A certificate's chain and key, decrypted in memory, for the TLS data plane only."""

    chain: list[x509.Certificate]
    key: Any = field(repr=False)
    chain_pem: bytes = field(repr=False)
    key_pem: bytes | None = field(repr=False)
    revision: int
    id: str = ""


class CertificateStore:
    """Certificates shared by every listener of the lab (vendors make them global, not regional).

    `usage` is set by the lab: certificate id -> names of the listeners using it in this process. Labs in
    other processes publish theirs (`publish_usage`); delete refuses while either names a listener.
    `subscribe` callbacks hear about replace and delete in this process; a lab notices those made by
    other processes by watching `revisions()`.
    """

    def __init__(self, home: str | os.PathLike[str] | None = None, kek: bytes | None = None,
                 quota: int | None = None) -> None:
        self.home = Path(home).expanduser() if home is not None else default_home()
        self.dir = self.home / "certs"
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.dir.mkdir(exist_ok=True, mode=0o700)
        self._kek = _check_kek_length(kek) if kek is not None else None
        self.quota = quota if quota is not None else _env_quota()
        self.usage: Callable[[str], list[str]] = lambda cert_id: []
        self._subscribers: list[Callable[[str], None]] = []
        self._mutex = threading.RLock()
        self._depth = 0
        self._lock_fd = -1
        self._exclusive = False

    # --- public API --------------------------------------------------------------------------

    def upload_server(self, name: str, cert_pem: bytes | str, key_pem: bytes | str | None,
                      profile: str = vendors.DEFAULT, strict: bool = False) -> CertInfo:
        """Validate under `profile` and store a server certificate chain with its private key."""
        return self._add("server", name, cert_pem, key_pem, profile, strict)

    def upload_ca(self, name: str, cert_pem: bytes | str, profile: str = vendors.DEFAULT,
                  strict: bool = False) -> CertInfo:
        """Validate under `profile` and store a CA certificate (client CA of mutual listeners)."""
        return self._add("ca", name, cert_pem, None, profile, strict)

    def list(self, type: str | None = None) -> list[CertInfo]:
        """Every certificate (or those of `type`), in upload order."""
        if type is not None:
            check_type(type)
        with self._locked(exclusive=False):
            records = self._records()
        now = _now()
        ordered = sorted(records.values(), key=lambda r: r["seq"])
        return [_info(r, now) for r in ordered if type is None or r["type"] == type]

    def describe(self, ref: str) -> CertInfo:
        """One certificate by id, or by name when exactly one certificate has that name."""
        with self._locked(exclusive=False):
            return _info(_resolve(self._records(), ref), _now())

    def rename(self, ref: str, new_name: str) -> CertInfo:
        with self._locked(exclusive=True):
            records = self._records()
            record = _resolve(records, ref)
            record["name"] = check_name(record["profile"], new_name)
            record["updated"] = iso(_now())
            self._commit(record, records)
        log.info("renamed certificate %s to %r", record["id"], new_name)
        return _info(record, _now())

    def replace(self, ref: str, cert_pem: bytes | str, key_pem: bytes | str | None = None,
                strict: bool = False) -> CertInfo:
        """New content under the same id (revision + 1). Without `key_pem`, a server certificate keeps its
        current key (a renewal of the same key).

        Listeners using it do not switch on their next handshake: a running lab reconfigures each of them,
        and they serve the new content after the vendor's activation delay (1-3 min, times time_scale), as
        any listener change does; until then the old revision keeps serving. A lab in this process hears
        of it at once (`subscribe`); one in another process within about half a second (it polls `revisions`).
        """
        with self._locked(exclusive=True):
            records = self._records()
            record = _resolve(records, ref)
            if record["type"] == "server" and key_pem is None:
                key_pem = self._decrypt(record)
            result, parsed = evaluate(record["profile"], record["type"], cert_pem, key_pem, strict=strict)
            result.raise_for_errors()
            assert parsed is not None
            record["revision"] += 1
            record["updated"] = iso(_now())
            self._write_content(record, parsed, result.findings)
            self._commit(record, records)
        log.info("replaced certificate %s (revision %d)", record["id"], record["revision"])
        self._notify(record["id"])
        return _info(record, _now())

    def delete(self, ref: str) -> None:
        """Delete a certificate; refused with `CertificateInUse` while listeners of any running lab use it."""
        with self._locked(exclusive=True):  # labs publish usage under this lock: no listener slips in between
            records = self._records()
            cert_id = _resolve(records, ref)["id"]
            users = self.users(cert_id)
            if users:
                raise LbsimError("CertificateInUse", f"certificate {cert_id} is used by listener(s): "
                                 f"{', '.join(users)}", field="ref",
                                 hint="point those listeners at another certificate (or remove them) first",
                                 details={"listeners": users})
            (self.dir / f"{cert_id}.json").unlink()
            _fsync_dir(self.dir)
            del records[cert_id]
            self._sweep(records)
        log.info("deleted certificate %s", cert_id)
        self._notify(cert_id)

    def material(self, ref: str) -> Material:
        """The chain and decrypted key of a certificate. Never print or log the result."""
        with self._locked(exclusive=False):
            record = _resolve(self._records(), ref)
            files = record["files"]
            chain_pem = (self.dir / files["chain"]).read_bytes()
            key_pem = self._decrypt(record) if files.get("key") else None
        if hashlib.sha256(chain_pem).hexdigest() != files["chain_sha256"]:
            raise LbsimError("StoreCorrupt", f"the chain file of certificate {record['id']} does not match its record",
                             field="ref")
        chain = x509.load_pem_x509_certificates(chain_pem)
        key = load_known_key(key_pem) if key_pem else None  # checked at upload
        return Material(chain, key, chain_pem, key_pem, record["revision"], record["id"])

    def users(self, cert_id: str) -> list[str]:
        """Names of the listeners using `cert_id`: this process's (`usage`) and those of running labs."""
        names = set(self.usage(cert_id) or [])
        with self._locked(exclusive=False):
            for record in self._usage_records():
                names.update(record["usage"].get(cert_id, []))
        return sorted(names)

    def publish_usage(self, owner: str, usage: dict[str, set[str] | list[str]]) -> None:
        """Tell other processes which listeners of lab `owner` (unique per lab) use which certificate ids."""
        record = {"format": RECORD_FORMAT, "pid": os.getpid(), "started": _process_started(os.getpid()),
                  "usage": {cert_id: sorted(names) for cert_id, names in usage.items() if names}}
        with self._locked(exclusive=True):
            # Not fsynced: after a crash the record names a dead process and is ignored anyway.
            _atomic_write(self.dir / f"{USAGE_PREFIX}{owner}.json", json.dumps(record).encode(), durable=False)

    def withdraw_usage(self, owner: str) -> None:
        """A stopped lab's listeners use nothing."""
        with self._locked(exclusive=True):
            (self.dir / f"{USAGE_PREFIX}{owner}.json").unlink(missing_ok=True)

    def revisions(self) -> dict[str, int]:
        """Certificate id -> current revision: what a lab compares with the revisions its listeners serve."""
        with self._locked(exclusive=False):
            return {cert_id: record["revision"] for cert_id, record in self._records().items()}

    def subscribe(self, callback: Callable[[str], None]) -> Callable[[], None]:
        """Call `callback(cert_id)` after each replace or delete in this process; returns an unsubscribe."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    # --- writing -----------------------------------------------------------------------------

    def _add(self, kind: CertType, name: str, cert_pem: bytes | str, key_pem: bytes | str | None, profile: str,
             strict: bool) -> CertInfo:
        check_name(profile, name)  # UnknownProfile first, then InvalidName
        result, parsed = evaluate(profile, kind, cert_pem, key_pem, strict=strict)
        result.raise_for_errors()
        assert parsed is not None
        if kind == "server":
            self._kek_bytes()  # create the key file before taking the store lock
        with self._locked(exclusive=True):
            records = self._records()
            if len(records) >= self.quota:
                raise LbsimError("QuotaExceeded", f"the store holds {len(records)} certificates, its quota is "
                                 f"{self.quota}", hint=f"delete unused certificates, or raise {ENV_QUOTA}",
                                 details={"quota": self.quota})
            now = iso(_now())
            seq = max((r["seq"] for r in records.values()), default=0) + 1  # upload order, for list()
            record: dict[str, Any] = {"format": RECORD_FORMAT, "id": self._new_id(profile, records), "seq": seq,
                                      "name": name, "type": kind, "profile": profile, "revision": 1, "created": now,
                                      "updated": now}
            self._write_content(record, parsed, result.findings)
            self._commit(record, records)
        log.info("uploaded %s certificate %s (%r)", kind, record["id"], name)
        return _info(record, _now())

    def _write_content(self, record: dict[str, Any], parsed: Parsed, findings: list[Finding]) -> None:
        cert_id, rev = record["id"], record["revision"]
        chain_file = f"{cert_id}.r{rev}.chain.pem"
        _atomic_write(self.dir / chain_file, parsed.chain_pem)
        key_file = None
        if parsed.key_pem is not None:
            key_file = f"{cert_id}.r{rev}.key.enc"
            _atomic_write(self.dir / key_file, self._encrypt(cert_id, parsed.key_pem))
        record["meta"] = cert_meta(parsed.chain[0]).to_dict()
        record["chain_length"] = len(parsed.chain)
        record["warnings"] = [f.to_dict() for f in findings if f.code not in TIME_CODES]
        record["files"] = {"chain": chain_file, "chain_sha256": hashlib.sha256(parsed.chain_pem).hexdigest(),
                           "key": key_file}

    def _commit(self, record: dict[str, Any], records: dict[str, dict[str, Any]]) -> None:
        _atomic_write(self.dir / f"{record['id']}.json", json.dumps(record, indent=1, sort_keys=True).encode())
        records[record["id"]] = record
        self._sweep(records)

    def _sweep(self, records: dict[str, dict[str, Any]]) -> None:
        """Remove what crashed or superseded writes left: temporary files, content of old revisions.
        Safe: only the holder of the exclusive lock writes here."""
        for path in self.dir.iterdir():
            if path.name.startswith(".") and path.name.endswith(".tmp"):
                path.unlink(missing_ok=True)
                continue
            if path.name.startswith(USAGE_PREFIX) and _usage_record(path) is None:
                path.unlink(missing_ok=True)  # its lab is gone
                continue
            m = _CONTENT_FILE.match(path.name)
            if m:
                files = records.get(m["id"], {}).get("files", {})
                if path.name not in (files.get("chain"), files.get("key")):
                    path.unlink(missing_ok=True)

    def _new_id(self, profile: str, records: dict[str, Any]) -> str:
        while True:
            if get_profile(profile).id_style == "short":
                cert_id = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(8))
            else:  # "account_time": <account>_<ms since epoch, hex>_<unix time>_<random>
                account = int(hashlib.sha256(str(self.home).encode()).hexdigest(), 16) % 10**15 + 10**15
                now = _now().timestamp()
                cert_id = f"{account}_{int(now * 1000):x}_{int(now)}_{secrets.randbelow(10**10):010d}"
            if cert_id not in records:
                return cert_id

    # --- reading -----------------------------------------------------------------------------

    def _records(self) -> dict[str, dict[str, Any]]:
        records = {}
        for path in sorted(self.dir.glob("*.json")):
            if path.name.startswith("."):
                continue
            try:
                record = json.loads(path.read_bytes())
                if record.get("format") != RECORD_FORMAT or record["id"] != path.stem or "seq" not in record:
                    raise ValueError("unexpected format or id")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise LbsimError("StoreCorrupt", f"cannot read {path}: {e}", hint="restore it from a backup or "
                                 "remove it (the certificate is then lost)") from None
            records[record["id"]] = record
        return records

    def _usage_records(self) -> list[dict[str, Any]]:
        """The usage records of labs still running."""
        records = (_usage_record(p) for p in self.dir.glob(f"{USAGE_PREFIX}*.json"))
        return [r for r in records if r is not None]

    # --- encryption --------------------------------------------------------------------------

    def _encrypt(self, cert_id: str, key_pem: bytes) -> bytes:
        kek = self._kek_bytes()
        nonce = os.urandom(12)
        sealed = AESGCM(kek).encrypt(nonce, key_pem, cert_id.encode())
        return json.dumps({"format": RECORD_FORMAT, "alg": f"AES-{len(kek) * 8}-GCM", "kek_id": _kek_id(kek),
                           "nonce": base64.b64encode(nonce).decode(),
                           "ciphertext": base64.b64encode(sealed).decode()}).encode()

    def _decrypt(self, record: dict[str, Any]) -> bytes:
        kek = self._kek_bytes()
        path = self.dir / record["files"]["key"]
        try:
            box = json.loads(path.read_bytes())
            nonce, sealed = base64.b64decode(box["nonce"]), base64.b64decode(box["ciphertext"])
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as e:
            raise LbsimError("StoreCorrupt", f"cannot read {path}: {e}") from None
        if box.get("kek_id") != _kek_id(kek):
            raise LbsimError("KekMismatch", f"the private key of certificate {record['id']} is encrypted under "
                             "another key-encryption key", hint=f"set {ENV_KEK} (or {ENV_KEK_FILE}) to the key "
                             "this store was created with")
        try:
            return AESGCM(kek).decrypt(nonce, sealed, record["id"].encode())
        except InvalidTag:
            raise LbsimError("StoreCorrupt", f"the private key of certificate {record['id']} fails authentication "
                             "(tampered with, or moved from another certificate)") from None

    def _kek_bytes(self) -> bytes:
        if self._kek is None:
            if os.environ.get(ENV_KEK):
                self._kek = parse_kek(os.environ[ENV_KEK])
            else:
                self._kek = _kek_file(Path(os.environ.get(ENV_KEK_FILE) or self.home / "kek").expanduser())
        return self._kek

    # --- locking and notification ------------------------------------------------------------

    @contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """flock on ``certs/.lock`` across processes, an RLock across threads; re-entrant."""
        with self._mutex:
            if self._depth == 0:
                fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
                except BaseException:
                    os.close(fd)
                    raise
                self._lock_fd, self._exclusive = fd, exclusive
            elif exclusive and not self._exclusive:
                raise RuntimeError("cannot upgrade a shared store lock")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    os.close(self._lock_fd)  # releases the flock
                    self._lock_fd = -1

    def _notify(self, cert_id: str) -> None:
        for callback in list(self._subscribers):
            try:
                callback(cert_id)
            except Exception:  # a broken listener must not undo or fail the store operation
                log.exception("certificate subscriber %r failed for %s", callback, cert_id)


# --- helpers ---------------------------------------------------------------------------------

def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _env_quota() -> int:
    raw = os.environ.get(ENV_QUOTA)
    if not raw:
        return DEFAULT_QUOTA
    try:
        value = int(raw)
        if value < 1:
            raise ValueError
    except ValueError:
        raise LbsimError("InvalidQuota", f"{ENV_QUOTA} must be a positive integer, not {raw!r}") from None
    return value


def _resolve(records: dict[str, dict[str, Any]], ref: str) -> dict[str, Any]:
    if not isinstance(ref, str) or not ref:
        raise LbsimError("CertificateNotFound", f"no certificate {ref!r}", field="ref")
    if ref in records:
        return records[ref]
    named = [r for r in records.values() if r["name"] == ref]
    if len(named) == 1:
        return named[0]
    if named:
        ids = sorted(r["id"] for r in named)
        raise LbsimError("AmbiguousName", f"{len(named)} certificates are named {ref!r}: {', '.join(ids)}",
                         field="ref", hint="refer to the certificate by id", details={"ids": ids})
    raise LbsimError("CertificateNotFound", f"no certificate with id or name {ref!r}", field="ref",
                     hint="lbsim cert list shows what the store holds")


def _info(record: dict[str, Any], now: dt.datetime) -> CertInfo:
    meta = record["meta"]
    parsed_meta = CertMeta(**{**meta, "not_before": _parse_time(meta["not_before"]),
                              "not_after": _parse_time(meta["not_after"])})
    flags = time_flags(parsed_meta, now)
    warnings = [Finding(**w) for w in record.get("warnings", [])]
    warnings += [finding_for(record["profile"], record["type"], code, detail, "cert") for code, detail in flags]
    codes = {code for code, _ in flags}
    return CertInfo(
        id=record["id"], name=record["name"], type=record["type"], profile=record["profile"],
        fingerprint=meta["fingerprint"], fingerprint_sha256=meta["fingerprint_sha256"], subject=meta["subject"],
        sans=list(meta["sans"]), issuer=meta["issuer"], serial=meta["serial"],
        not_before=parsed_meta.not_before, not_after=parsed_meta.not_after, key_type=meta["key_type"],
        key_size=meta["key_size"], chain_length=record["chain_length"], warnings=warnings,
        expired="CertificateExpired" in codes, not_yet_valid="CertificateNotYetValid" in codes,
        revision=record["revision"], created=_parse_time(record["created"]), updated=_parse_time(record["updated"]),
    )


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)


def _atomic_write(path: Path, data: bytes, durable: bool = True) -> None:
    """Temporary file in the same directory, fsync, rename over `path`, fsync the directory."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:  # mkstemp creates it 0600
            f.write(data)
            f.flush()
            if durable:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _process_started(pid: int) -> str | None:
    """The process's start time in clock ticks (Linux), so a reused pid is not taken for a live lab."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _usage_record(path: Path) -> dict[str, Any] | None:
    """A lab's usage record, or None when it is unreadable or its process is gone."""
    try:
        record = json.loads(path.read_bytes())
        pid, usage = int(record["pid"]), record["usage"]
        if not isinstance(usage, dict):
            return None
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    started = record.get("started")
    if started is not None and _process_started(pid) not in (None, started):
        return None
    return record


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _kek_id(kek: bytes) -> str:
    return hashlib.sha256(b"lbsim-kek:" + kek).hexdigest()[:16]


def _check_kek_length(kek: bytes) -> bytes:
    if not isinstance(kek, bytes) or len(kek) not in (16, 24, 32):
        raise LbsimError("InvalidKek", "the key-encryption key must be 16, 24 or 32 bytes", field="kek",
                         hint="openssl rand -base64 32")
    return kek


def parse_kek(text: str) -> bytes:
    """A key-encryption key from text: 32/48/64 hex digits, or base64 of 16/24/32 bytes."""
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{32}|[0-9a-fA-F]{48}|[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) not in (16, 24, 32):
        raise LbsimError("InvalidKek", f"{ENV_KEK} must be base64 of 32 bytes (or 64 hex digits)", field=ENV_KEK,
                         hint="generate one with: openssl rand -base64 32")
    return raw


def _kek_file(path: Path) -> bytes:
    """Read the key file, creating it (mode 0600, atomically: first creator wins) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(base64.b64encode(os.urandom(32)) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)  # fails if another process created it first: then use theirs
            except FileExistsError:
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(path.parent)
    st = path.stat()
    if st.st_mode & 0o077:
        raise LbsimError("InsecureKekFile", f"the key file {path} is readable by others (mode "
                         f"{st.st_mode & 0o777:o})", hint=f"chmod 600 {path}")
    return parse_kek(path.read_text())


__all__ = ["CertInfo", "CertificateStore", "Material", "default_home", "parse_kek"]
