"""Client chain verification keeps security level 2 whatever the protocol
floor: a custom policy down to TLSv1 (security level 0 for the handshake)
still refuses client certificates signed with SHA-1 or holding an RSA key
under 2048 bits, and still serves normal ones."""

import ssl
import warnings

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

import tg_certs
import tg_tls
from tg_proc import listener

warnings.filterwarnings("ignore", category=DeprecationWarning)
# SHA-1 certificates are what this file is about.
pytestmark = pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")

# TLS 1.0 needs a CBC suite (the server certificate is ECDSA).
OLD_FLOOR = {"policy": "custom", "min_version": "TLSv1",
             "ciphers": "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA"}


def intermediate(pki):
    cert = tg_certs.load_cert(pki.path("intermediate.crt"))
    key = serialization.load_pem_private_key(
        open(pki.path("intermediate.key"), "rb").read(), password=None)
    return cert, key


def weak_cert(pki, out_dir, kind):
    """A client certificate from the PKI's intermediate, weak in one way:
    sha1 (an ECDSA-with-SHA1 signature) or rsa1024 (the leaf's key)."""
    cert, key = intermediate(pki)
    signed = dict(issuer_cert=cert, issuer_key=key, chain=(cert,))
    if kind == "sha1":
        return tg_certs.make_cert(out_dir, "weak-sha1", digest=hashes.SHA1(), **signed)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return tg_certs.make_cert(out_dir, "weak-rsa1024", key=small, **signed)


def old_client_ctx(pki, cert, version):
    """A client at security level 0 (set before its certificate is loaded:
    at the default level OpenSSL would not even load a weak one)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(pki.path("root.crt"))
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = tg_tls.TLS_VERSIONS[version]
    ctx.maximum_version = tg_tls.TLS_VERSIONS[version]
    ctx.load_cert_chain(cert[0], cert[1])
    return ctx


@pytest.mark.parametrize("version", ["1.0", "1.3"])
@pytest.mark.parametrize("kind", ["sha1", "rsa1024"])
def test_weak_client_chain_refused_under_old_floor(serve, pki, bad_certs, tmp_path, kind,
                                                   version):
    tg, be = serve(listener(mode="mutual", tls_extra=OLD_FLOOR))
    cert = weak_cert(pki, tmp_path, kind)
    ok, detail, port = tg_tls.attempt(tg.addr(), old_client_ctx(pki, cert, version))
    assert not ok, f"a client chain weaker than security level 2 was served: {detail}"
    e = tg.wait_rejection(port)
    assert e["reason"] == "bad_signature", e["_line"]
    assert be.count() == 0, "the backend saw a connection for a refused client"

    # Twin: the same listener and client settings with a normal certificate.
    for good in (bad_certs["good_minted"], pki.client("alice")):
        got, info = tg_tls.roundtrip(tg.addr(), old_client_ctx(pki, good, version), b"ok\n")
        assert got == b"ok\n"
        assert info["version"] == ("TLSv1" if version == "1.0" else f"TLSv{version}")
        rec = tg.access_for(info["local"][1])
        assert rec["client_verify"] == "SUCCESS", rec
    assert be.count() == 2


@pytest.mark.parametrize("kind", ["sha1", "rsa1024"])
def test_weak_client_chain_refused_by_default_policy(serve, pki, bad_certs, tmp_path, kind):
    """The intermediate policy agrees (twin: a normal certificate passes)."""
    tg, be = serve(listener(mode="mutual"))
    ok, detail, port = tg_tls.attempt(
        tg.addr(), old_client_ctx(pki, weak_cert(pki, tmp_path, kind), "1.2"))
    assert not ok, detail
    assert tg.wait_rejection(port)["reason"] == "bad_signature"
    got, _ = tg_tls.roundtrip(tg.addr(), old_client_ctx(pki, bad_certs["good_minted"], "1.2"),
                              b"ok\n")
    assert got == b"ok\n"
    assert be.count() == 1
