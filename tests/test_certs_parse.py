"""PEM splitting and normalising, and property tests: mutated PEM never makes anything but
`LbsimError` escape, from the parser, from `check` (which returns findings) or from the store."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.certs import CertificateStore, LabPKI, check
from simulator.certs.parse import MAX_FIELD_BYTES, read_field, split_pem
from simulator.errors import LbsimError


@lru_cache(maxsize=None)
def material() -> tuple[bytes, bytes]:
    issued = LabPKI("rsa").server("localhost", intermediate=True)
    return issued.chain_pem, issued.key_pem


# --- read_field and split_pem ---------------------------------------------------------------------

def test_read_field_normalises_line_endings_and_blanks() -> None:
    assert read_field(b"\xef\xbb\xbf a \r\nb\t\r\rc  \n\n", "cert") == b"a\nb\n\nc"
    assert read_field(None, "key") == b""
    assert read_field("é", "cert") == "é".encode()


def test_read_field_checks_the_size_first() -> None:
    with pytest.raises(LbsimError) as e:
        read_field("x" * (MAX_FIELD_BYTES + 1), "cert")
    assert e.value.code == "InputTooLarge" and e.value.details["limit"] == MAX_FIELD_BYTES
    with pytest.raises(LbsimError):
        read_field("é" * (MAX_FIELD_BYTES // 2 + 1), "cert")  # counted in bytes once encoded
    with pytest.raises(LbsimError) as e:
        read_field(12, "cert")  # type: ignore[arg-type]
    assert e.value.code == "NotPem"


def test_split_pem_reads_labels_headers_and_ignores_text_outside() -> None:
    chain, key = material()
    blocks = split_pem(read_field(b"subject=CN = x\n" + chain + b"trailing words\n", "cert"), "cert")
    assert [b.label for b in blocks] == ["CERTIFICATE"] * 3
    assert b"".join(b.pem() for b in blocks) == chain  # canonical re-armoring is byte-identical here
    encrypted = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nAAAA\n" \
                b"-----END RSA PRIVATE KEY-----\n"
    (block,) = split_pem(encrypted, "key")
    assert block.headers["Proc-Type"] == "4,ENCRYPTED" and block.is_encrypted and block.is_private_key


@pytest.mark.parametrize("text, detail", [
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n", "no -----END"),
    (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PRIVATE KEY-----\n", "closed by"),
    (b"-----BEGIN A-----\n-----BEGIN B-----\n", "new BEGIN"),
    (b"AAAA\n-----END CERTIFICATE-----\n", "without a BEGIN"),
    (b"-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n", "not valid base64"),
])
def test_split_pem_rejects_broken_framing(text: bytes, detail: str) -> None:
    with pytest.raises(LbsimError) as e:
        split_pem(text, "cert")
    assert e.value.code == "NotPem" and detail in e.value.message


# --- property tests -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prop_store() -> CertificateStore:
    """One store for every example (module scope: hypothesis refuses per-test fixtures), removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="lbsim-prop-") as home:
        yield CertificateStore(Path(home), kek=b"k" * 32, quota=100_000)


@st.composite
def mutated(draw: st.DrawFn, original: bytes) -> bytes:
    """`original` after a few random edits: byte flips, cuts, insertions, duplicated or dropped lines."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "dup_line", "drop_line", "truncate"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[pos] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16) | st.sampled_from(
                [b"-----BEGIN ", b"-----END CERTIFICATE-----", b"\n", b"Proc-Type: 4,ENCRYPTED\n", b"="]))
        elif kind in ("dup_line", "drop_line"):
            lines = bytes(data).split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            lines[i:i + 1] = [lines[i]] * 2 if kind == "dup_line" else []
            data = bytearray(b"\n".join(lines))
        elif kind == "truncate":
            del data[pos:]
    return bytes(data)


def _chain() -> bytes:
    return material()[0]


def _key() -> bytes:
    return material()[1]


inputs = st.one_of(mutated(_chain()), mutated(_key()), mutated(_chain() + _key()), st.binary(max_size=512),
                   st.text(max_size=256), st.none())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cert=inputs, key=inputs, profile=st.sampled_from(["aliyun-slb", "tencent-clb"]),
       kind=st.sampled_from(["server", "ca"]))
def test_check_never_raises_on_mutated_pem(cert: bytes | str | None, key: bytes | str | None, profile: str,
                                            kind: str) -> None:
    result = check(profile, kind, cert, key)
    assert result.ok in (True, False)
    for f in result.findings:
        assert f.code and f.severity in ("error", "warning") and f.message


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cert=inputs, key=inputs, profile=st.sampled_from(["aliyun-slb", "tencent-clb"]))
def test_store_upload_raises_only_lbsim_error(prop_store: CertificateStore, cert: bytes | str | None,
                                               key: bytes | str | None, profile: str) -> None:
    try:
        info = prop_store.upload_server("prop", cert, key, profile=profile)  # type: ignore[arg-type]
    except LbsimError:
        return
    assert prop_store.material(info.id).key is not None  # whatever was accepted also loads back
    prop_store.delete(info.id)


@settings(max_examples=100, deadline=None)
@given(cert=inputs)
def test_store_ca_upload_raises_only_lbsim_error(prop_store: CertificateStore, cert: bytes | str | None) -> None:
    try:
        info = prop_store.upload_ca("prop", cert)  # type: ignore[arg-type]
    except LbsimError:
        return
    prop_store.delete(info.id)
