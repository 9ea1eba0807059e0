"""The vendors' own control-plane APIs, served beside a running lab: what every vendor face shares.

A face (`simulator.faces.aliyun.AliyunFace`, `simulator.faces.tencent.TencentFace`) speaks one vendor's dialect:
it checks the signature against the lab's access keys, translates the action's parameters into the lab's model
(load balancers, listeners, certificates, backends) and the lab's errors into the vendor's codes. State lives in
the lab; validation lives once, in the model. This module starts each face on one plain-HTTP and one HTTPS port
(the HTTPS certificate issued by a CA minted per lab out dir) and writes what a script needs to
`<out>/endpoints.json`. The lab never imports this: whoever starts a lab attaches its faces
(`lbsim up`, `simulator.harness.running.start_lab(vendor_apis=True)`, the scenario harness).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import secrets
import ssl
import string
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from simulator import vendors
from simulator.errors import LbsimError
from simulator.faces.http import JsonServer, Request

if TYPE_CHECKING:
    from simulator.runtime.lab import Lab

logger = logging.getLogger(__name__)



def faces() -> dict[str, str]:
    """profile -> "module:Class" of its API face (the vendor profile's `api_face`); imported when the APIs start."""
    return {name: p.api_face for name in vendors.names() if (p := vendors.get(name)).api_face}

ENDPOINTS_FILE = "endpoints.json"


def request_id() -> str:
    return str(uuid.uuid4())


class VendorError(Exception):
    """A vendor-coded refusal, raised inside a face and turned into the vendor's error body there."""

    def __init__(self, code: str, message: str, status: int = 400, hint: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status, self.hint = code, message, status, hint


@dataclass
class Reply:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AccessKey:
    id: str
    secret: str = field(repr=False)
    profile: str | None = None  # None: every vendor API accepts it


class AccessKeys:
    """The lab's access keys: the lab file's (`vendor_api.access_keys`), else one generated per vendor."""

    def __init__(self, keys: list[AccessKey]):
        self.keys = list(keys)

    @classmethod
    def for_lab(cls, lab: Lab, faces: list[type[VendorFace]]) -> AccessKeys:
        configured = [AccessKey(k.id, k.secret, k.profile) for k in lab.config.vendor_api.access_keys]
        keys = list(configured)
        for face in faces:  # a vendor no configured key serves gets a generated one
            if not any(k.profile in (None, face.profile) for k in configured):
                alphabet = string.ascii_letters + string.digits
                key_id = face.key_prefix + "".join(secrets.choice(alphabet) for _ in range(face.key_id_length))
                keys.append(AccessKey(key_id, "".join(secrets.choice(alphabet) for _ in range(30)), face.profile))
        return cls(keys)

    def secret(self, profile: str, key_id: str) -> str | None:
        """The secret of `key_id` for `profile`'s API; None when the lab has no such key."""
        for key in self.keys:
            if key.id == key_id and key.profile in (None, profile):
                return key.secret
        return None

    def first(self, profile: str) -> AccessKey:
        return next(k for k in self.keys if k.profile in (None, profile))


class ReplayGuard:
    """Nonces seen within a window: a signed request replayed with the same nonce is refused."""

    def __init__(self, window: float):
        self.window = window
        self._seen: dict[tuple[str, str], float] = {}

    def seen(self, key_id: str, nonce: str) -> bool:
        """Record `nonce`; True when the same key already used it within the window."""
        now = time.monotonic()
        if len(self._seen) > 10_000:  # forget the expired ones now and then
            self._seen = {k: t for k, t in self._seen.items() if now - t < self.window}
        key = (key_id, nonce)
        at = self._seen.get(key)
        if at is not None and now - at < self.window:
            return True
        self._seen[key] = now
        return False


class VendorFace:
    """One vendor's API dialect over the lab. Subclasses set the class attributes and implement
    `handle` and `error_reply`; they run in the lab's asyncio loop and call the lab directly."""

    profile: ClassVar[str]
    key_fields: ClassVar[tuple[str, str]] = ("access_key_id", "access_key_secret")
    key_prefix: ClassVar[str] = ""
    key_id_length: ClassVar[int] = 24
    hostnames: ClassVar[tuple[str, ...]] = ()
    default_region: ClassVar[str] = ""
    head_limit: ClassVar[int] = 16 * 1024  # request line and headers (Alibaba's SDK signs certificates into the query)

    def __init__(self, lab: Lab, keys: AccessKeys, region: str):
        self.lab, self.keys, self.region = lab, keys, region

    async def handle(self, request: Request) -> Reply:
        raise NotImplementedError

    def error_reply(self, code: str, message: str, status: int) -> Reply:
        raise NotImplementedError


class VendorServer(JsonServer):
    """One listening socket (HTTP or HTTPS) of a face, on the management API's small server."""

    def __init__(self, face: VendorFace, host: str, port: int, ssl_context: ssl.SSLContext | None = None):
        super().__init__(None, host, port, ssl=ssl_context)
        self.face = face
        self.head_limit = max(self.head_limit, face.head_limit)
        self._open: set[asyncio.StreamWriter] = set()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        try:
            await super()._serve(reader, writer)
        finally:
            self._open.discard(writer)

    async def stop(self) -> None:
        """SDKs keep connections alive in their pools: close them, or waiting for the server to close would wait
        for their idle timeout."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.transport.abort()  # not close(): a TLS close would wait for the client's close_notify
        await super().stop()

    def read_error(self, err: LbsimError) -> tuple[int, Any]:
        status = err.details.get("status", 400)
        return status, self.face.error_reply(err.code, err.message, status)

    async def _dispatch(self, request: Request) -> tuple[int, Any]:
        try:
            reply = await self.face.handle(request)
        except Exception:  # never a stack trace to the caller; the log has it
            logger.exception("%s API failed: %s %s", self.face.profile, request.method, request.target[:200])
            reply = self.face.error_reply("InternalError", "the lab failed to handle this request; see its log", 500)
        return reply.status, reply

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: Any, close: bool) -> None:
        reply = body if isinstance(body, Reply) else Reply(status, body)
        payload = json.dumps(reply.body, default=str, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json;charset=utf-8", **reply.headers,
                   "Content-Length": str(len(payload))}
        if close:
            headers["Connection"] = "close"
        head = f"HTTP/1.1 {status} {_reason(status)}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        writer.write(head.encode() + b"\r\n" + payload)
        await writer.drain()


def _reason(status: int) -> str:
    from simulator.faces.http import STATUS_TEXT

    return STATUS_TEXT.get(status, {403: "Forbidden", 429: "Too Many Requests"}.get(status, "Unknown"))


def load_faces() -> list[type[VendorFace]]:
    """The face classes of `faces()` that are installed (a vendor's face module may not exist yet)."""
    out = []
    for profile, target in faces().items():
        module_name, _, class_name = target.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            logger.info("no vendor API for %s (%s is not there)", profile, module_name)
            continue
        out.append(getattr(module, class_name))
    return out


class EndpointPKI:
    """The lab CA of the vendor endpoints, minted once per out dir (`<out>/vendor-api/`) with the project's own
    minting, and kept: scripts trust `ca.pem` across restarts of the lab."""

    def __init__(self, out_dir: Path, hostnames: tuple[str, ...]):
        from simulator.certs import LabPKI

        self.dir = out_dir / "vendor-api"
        self.ca_file = self.dir / "ca.pem"
        self.cert_file, self.key_file = self.dir / "server.pem", self.dir / "server-key.pem"
        names = ("localhost", "127.0.0.1", *hostnames)
        names_file = self.dir / "names.txt"
        if not (self.cert_file.exists() and self.key_file.exists() and self.ca_file.exists()
                and names_file.exists() and names_file.read_text() == "\n".join(names)):
            self.dir.mkdir(parents=True, exist_ok=True)
            pki = LabPKI(name="lbsim vendor API CA")
            issued = pki.server(*names)
            self.ca_file.write_bytes(pki.ca_pem)
            self.cert_file.write_bytes(issued.chain_pem)
            fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(issued.key_pem)
            names_file.write_text("\n".join(names))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class VendorApis:
    """The vendor APIs attached to one lab: per face an HTTP and an HTTPS server."""

    def __init__(self, lab: Lab, out_dir: Path | str):
        self.lab, self.out_dir = lab, Path(out_dir)
        self.face_classes = load_faces()
        self.keys = AccessKeys.for_lab(lab, self.face_classes)
        self.faces: list[VendorFace] = []
        self.servers: dict[str, tuple[VendorServer, VendorServer]] = {}
        self.pki: EndpointPKI | None = None

    async def start(self) -> None:
        spec = self.lab.config.vendor_api
        hostnames = tuple(name for face in self.face_classes for name in face.hostnames)
        self.pki = await asyncio.to_thread(EndpointPKI, self.out_dir, hostnames)
        context = self.pki.server_context()
        try:
            for cls in self.face_classes:
                endpoint = spec.endpoint(cls.profile)
                face = cls(self.lab, self.keys, endpoint.region or cls.default_region)
                plain = VendorServer(face, spec.host, endpoint.http_port)
                secure = VendorServer(face, spec.host, endpoint.https_port, context)
                self.faces.append(face)
                self.servers[cls.profile] = (plain, secure)
                for server in (plain, secure):
                    try:
                        await server.start()
                    except OSError as e:
                        raise LbsimError("ListenFailed", f"the {cls.profile} API cannot listen on {spec.host}:"
                                         f"{server.port}: {e.strerror or e}", field=f"vendor_api.{cls.profile}",
                                         hint="pick another port, or 0 for any free port") from None
        except BaseException:
            await self.stop()
            raise
        self.write_endpoints()

    async def stop(self) -> None:
        for plain, secure in self.servers.values():
            for server in (plain, secure):
                if server._server is not None:
                    await server.stop()

    def endpoints(self) -> dict[str, Any]:
        """What a script needs: the management API, the web console, the CA, and per vendor its endpoints,
        region and key."""
        console = getattr(self.lab, "console", None)  # attached beside the API by start_with_faces, if at all
        out: dict[str, Any] = {"management_api": self.lab.api.url if self.lab.api else None,
                               "console": f"{console.url}/" if console is not None else None,
                               "ca": str(self.pki.ca_file.resolve()) if self.pki else None}
        for face in self.faces:
            plain, secure = self.servers[face.profile]
            key = self.keys.first(face.profile)
            out[face.profile] = {
                "http": plain.url, "https": secure.url,
                "http_endpoint": f"{plain.host}:{plain.port}", "https_endpoint": f"{secure.host}:{secure.port}",
                "region": face.region, face.key_fields[0]: key.id, face.key_fields[1]: key.secret,
            }
        return out

    def write_endpoints(self) -> Path:
        """`<out>/endpoints.json`, mode 0600 (it holds secrets)."""
        path = self.out_dir / ENDPOINTS_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # an older file may have had another mode
        with os.fdopen(fd, "w") as f:
            json.dump(self.endpoints(), f, indent=1)
        return path

    def describe(self) -> str:
        """The lines `lbsim up` prints."""
        data = self.endpoints()
        lines = [f"vendor API CA: {data['ca']}  (endpoints, keys: {self.out_dir / ENDPOINTS_FILE})"]
        for face in self.faces:
            ep = data[face.profile]
            lines.append(f"{face.profile} API: {ep['https']} and {ep['http']}  region {ep['region']}  "
                         f"{face.key_fields[0]} {ep[face.key_fields[0]]}  {face.key_fields[1]} {ep[face.key_fields[1]]}")
        return "\n".join(lines)


async def attach_vendor_apis(lab: Lab, out_dir: Path | str) -> VendorApis:
    """Start the vendor APIs of a started lab (in its loop) and write `<out>/endpoints.json`."""
    apis = VendorApis(lab, out_dir)
    await apis.start()
    return apis
