"""Round trips through tcp_ssl listeners, one-way and mutual, ECDSA and RSA
server certificates, with Python ssl, openssl s_client and gnutls-cli."""

import re
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

import tg_certs

import tg_tls
from tg_proc import T, listener

MODES = ["one-way", "mutual"]
KEYS = {"ecdsa": ec.EllipticCurvePublicKey, "rsa": rsa.RSAPublicKey}


def client_cert_for(pki, mode):
    return pki.client("alice") if mode == "mutual" else None


def server_key_type(der):
    return x509.load_der_x509_certificate(der).public_key()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", ["ecdsa", "rsa"])
def test_python_roundtrip(serve, pki, mode, key):
    tg, be = serve(listener(mode=mode, certs=[key]))
    ctx = tg_tls.client_ctx(pki, cert=client_cert_for(pki, mode))
    payload = b"round trip " + mode.encode() + b" " + key.encode() + b"\n"
    got, info = tg_tls.roundtrip(tg.addr(), ctx, payload)
    assert got == payload
    assert isinstance(server_key_type(info["peer_der"]), KEYS[key])
    conns = be.wait_conns(1, T(5))
    assert len(conns) == 1 and bytes(conns[0].data) == payload
    conns[0].done.wait(T(5))

    rec = tg.access_for(info["local"][1])
    assert rec["listener"] == "main"
    assert re.fullmatch(r"\d+\.\d+", rec["conn"]), rec["conn"]
    assert rec["client"] == f"127.0.0.1:{info['local'][1]}"
    assert rec["sni"] == "localhost"
    assert rec["tls_version"] == info["version"] == "TLSv1.3"
    assert rec["cipher"] == info["cipher"][0]
    assert rec["resumed"] is False
    assert rec["target"] == be.address
    assert rec["bytes_in"] == len(payload) and rec["bytes_out"] == len(payload)
    assert rec["outcome"] == "ok"
    assert isinstance(rec["handshake_ms"], (int, float)) and rec["handshake_ms"] >= 0
    assert isinstance(rec["duration_ms"], (int, float)) and rec["duration_ms"] >= 0
    if mode == "mutual":
        assert rec["client_verify"] == "SUCCESS"
        assert "CN=alice" in rec["client_subject"]
        assert "CN=" in rec["client_issuer"] and rec["client_issuer"] != rec["client_subject"]
        alice = x509.load_pem_x509_certificate(open(pki.path("alice.crt"), "rb").read())
        assert int(rec["client_serial"], 16) == alice.serial_number
        assert rec["client_fingerprint"].lower().replace(":", "") == \
            alice.fingerprint(hashes.SHA256()).hex()
    else:
        assert rec["client_verify"] == "NONE"
        assert rec["client_subject"] == ""


@pytest.mark.parametrize("mode", MODES)
def test_certificate_request_only_in_mutual(serve, pki, mode):
    """one-way sends no CertificateRequest, so a client that has a
    certificate never presents it; mutual asks, naming the CAs it trusts."""
    tg, be = serve(listener(mode=mode), backend_kw={"mode": "line"})
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"))
    with tg_tls.connect(tg.addr(), ctx) as s:
        port = s.getsockname()[1]
        s.sendall(b"x\n")
        assert tg_tls.recv_exact(s, 7) == b"echo:x\n"
    rec = tg.access_for(port)
    rc, out, err = tg_tls.s_client(tg.addr(), pki, cert=pki.client("alice"), brief=False)
    text = out.decode(errors="replace")
    assert "echo:hello from s_client" in text, (rc, text, err)
    if mode == "one-way":
        assert rec["client_verify"] == "NONE" and rec["client_subject"] == ""
        assert "No client certificate CA names sent" in text, text
    else:
        assert rec["client_verify"] == "SUCCESS" and "CN=alice" in rec["client_subject"]
        assert "Acceptable client certificate CA names" in text, text
        root_cn = tg_certs.load_cert(pki.path("root.crt")).subject.get_attributes_for_oid(
            NameOID.COMMON_NAME)[0].value
        names = text.split("Acceptable client certificate CA names", 1)[1].split("---", 1)[0]
        assert root_cn in names, names


@pytest.mark.parametrize("mode", MODES)
def test_python_tls12_cipher_choice_picks_cert_on_dual_listener(serve, pki, mode):
    """One listener with both certificates: the client's TLS 1.2 cipher
    (ECDSA or RSA authentication) decides which one the server shows."""
    tg, be = serve(listener(mode=mode, certs=["ecdsa", "rsa"]))
    cert = client_cert_for(pki, mode)
    for cipher, keytype in (("ECDHE-ECDSA-AES128-GCM-SHA256", ec.EllipticCurvePublicKey),
                            ("ECDHE-RSA-AES256-GCM-SHA384", rsa.RSAPublicKey)):
        ctx = tg_tls.client_ctx(pki, cert=cert, version="1.2", ciphers=cipher)
        got, info = tg_tls.roundtrip(tg.addr(), ctx, b"dual\n")
        assert got == b"dual\n"
        assert info["version"] == "TLSv1.2" and info["cipher"][0] == cipher
        assert isinstance(server_key_type(info["peer_der"]), keytype)


def test_rsa_only_client_refused_by_ecdsa_only_listener(serve, pki):
    """Rejecting twin of the dual listener: nothing to offer, no handshake."""
    tg, be = serve(listener(certs=["ecdsa"]))
    ctx = tg_tls.client_ctx(pki, version="1.2", ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
    assert not ok, detail
    e = tg.wait_rejection(port)
    assert e["reason"] == "no_shared_cipher", e["_line"]
    assert be.count() == 0


SIGALGS = {"ecdsa": ("ecdsa_secp256r1_sha256", "ECDSA"),
           "rsa": ("rsa_pss_rsae_sha256:rsa_pkcs1_sha256", "RSA")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", ["ecdsa", "rsa"])
def test_openssl_s_client_roundtrip(serve, pki, mode, key):
    """one-way: a dual-certificate listener, the client's sigalgs pick.
    mutual: a listener with only that certificate (restricting sigalgs would
    also stop the client from signing with its ECDSA key)."""
    sigalgs, label = SIGALGS[key]
    if mode == "one-way":
        tg, be = serve(listener(mode=mode, certs=["ecdsa", "rsa"]), backend_kw={"mode": "line"})
        extra = ["-sigalgs", sigalgs]
    else:
        tg, be = serve(listener(mode=mode, certs=[key]), backend_kw={"mode": "line"})
        extra = []
    rc, out, err = tg_tls.s_client(tg.addr(), pki, cert=client_cert_for(pki, mode), extra=extra)
    assert b"echo:hello from s_client\n" in out, (rc, out, err)
    assert rc == 0, err
    m = re.search(r"^(?:Peer )?[Ss]ignature type: (\S+)", err, re.M)
    assert m and m.group(1).upper().startswith(label), err
    assert "Verification: OK" in err
    assert be.count() == 1


def test_openssl_s_client_ecdsa_sigalgs_against_rsa_only_listener_refused(serve, pki):
    tg, be = serve(listener(certs=["rsa"]), backend_kw={"mode": "line"})
    rc, out, err = tg_tls.s_client(tg.addr(), pki, extra=["-sigalgs", "ecdsa_secp256r1_sha256"])
    assert b"echo:" not in out
    assert rc != 0
    e = tg.wait_rejection()
    assert e["reason"] == "no_shared_cipher", e["_line"]
    assert be.count() == 0


def test_openssl_s_client_with_wrong_trust_anchor_fails(serve, pki, foreign_pki):
    """Client-side twin: the chain tollgate sends verifies only against our root."""
    tg, be = serve(listener(), backend_kw={"mode": "line"})
    rc, out, err = tg_tls.s_client(tg.addr(), foreign_pki)
    assert rc != 0 and b"echo:" not in out, err
    assert be.count() == 0


GNUTLS_PRIO = {"ecdsa": ("NORMAL:-SIGN-ALL:+SIGN-ECDSA-SECP256R1-SHA256", "EC/ECDSA"),
               "rsa": ("NORMAL:-SIGN-ALL:+SIGN-RSA-PSS-RSAE-SHA256:+SIGN-RSA-SHA256", "RSA")}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("key", ["ecdsa", "rsa"])
def test_gnutls_cli_roundtrip(serve, pki, mode, key):
    prio, label = GNUTLS_PRIO[key]
    if mode == "one-way":
        tg, be = serve(listener(mode=mode, certs=["ecdsa", "rsa"]), backend_kw={"mode": "line"})
        extra = ["--priority", prio]
    else:
        tg, be = serve(listener(mode=mode, certs=[key]), backend_kw={"mode": "line"})
        extra = []
    rc, out, err = tg_tls.gnutls_cli(tg.addr(), pki, cert=client_cert_for(pki, mode),
                                     extra=extra)
    text = out.decode(errors="replace")
    assert "echo:hello from gnutls-cli" in text, (rc, text, err)
    m = re.search(r"Certificate\[0\] info:.*?, (\S+) key (\d+) bits", text + err, re.S)
    assert m and m.group(1) == label, text + err
    assert be.count() == 1
    rec = tg.wait_access()[0]
    assert rec["client_verify"] == ("SUCCESS" if mode == "mutual" else "NONE")


def test_gnutls_cli_without_client_cert_refused_on_mutual(serve, pki):
    tg, be = serve(listener(mode="mutual"), backend_kw={"mode": "line"})
    rc, out, err = tg_tls.gnutls_cli(tg.addr(), pki)
    assert b"echo:" not in out, (out, err)
    e = tg.wait_rejection()
    assert e["reason"] == "no_client_cert", e["_line"]
    assert be.count() == 0


def test_sni_is_logged_and_absent_sni_too(serve, pki):
    tg, be = serve(listener())
    ctx = tg_tls.client_ctx(pki)
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"sni\n", server_hostname="localhost")
    assert tg.access_for(info["local"][1])["sni"] == "localhost"
    # No SNI (an IP address is never sent as SNI); the IP SAN still verifies.
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"nosni\n", server_hostname="127.0.0.1")
    assert got == b"nosni\n"
    assert tg.access_for(info["local"][1])["sni"] == ""


def test_python_client_with_wrong_trust_anchor_fails(serve, pki, foreign_pki):
    tg, be = serve(listener())
    ctx = tg_tls.client_ctx(foreign_pki)
    with pytest.raises(ssl.SSLCertVerificationError):
        tg_tls.connect(tg.addr(), ctx).close()
    assert be.count() == 0
