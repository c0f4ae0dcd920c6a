"""Resumption is judged again: a session lives at most session_lifetime from
its first full handshake and never past the client certificate's notAfter,
every resumption re-checks the client chain under the current CRL, and a
resumed https request forwards the same identity as a full one."""

import datetime
import os
import signal
import socket
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

import tg_certs
import tg_http
import tg_tls
from test_admin import scrape, metric
from test_hardening import write_crls
from tg_http import Client, hbackend, hserve  # noqa: F401
from tg_proc import T, free_port, group, listener

VERSIONS = ["1.2", "1.3"]


def short_lived_client(pki, out_dir, name, seconds):
    """A client certificate issued by the PKI's intermediate (chain
    included) that expires `seconds` from now; returns (cert, key, notAfter
    as a unix time)."""
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    inter_key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = now + datetime.timedelta(seconds=seconds)
    crt, key = tg_certs.make_cert(out_dir, name, issuer_cert=inter, issuer_key=inter_key,
                                  chain=(inter,), not_after=not_after)
    return crt, key, not_after.timestamp()


def resume(tg, ctx, session, payload=b"r\n"):
    """(reused?, session the client holds after) of one echo on a resumption."""
    with tg_tls.connect(tg.addr(), ctx, session=session) as s:
        s.sendall(payload)
        assert tg_tls.recv_exact(s, len(payload)) == payload
        return s.session_reused, s.session


def mutual_cfg(be, admin_port=None, crl=None, pki=None, **tls_extra):
    cfg = {"target_groups": {"g": group(be.address)},
           "listeners": [listener(mode="mutual", tls_extra=tls_extra or None)]}
    if crl is not None:
        cfg["client_cas"] = {"pki": {"ca": pki.path("root.crt"), "crl": str(crl)}}
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


@pytest.mark.parametrize("version", VERSIONS)
def test_expired_client_cannot_resume(tollgate, backend, pki, tmp_path, version):
    """A session made while the client certificate was valid resumes until
    its notAfter (twin), and not after it: the resumption is refused
    (cert_expired), and the full handshake that follows is refused too."""
    crt, key, not_after = short_lived_client(pki, tmp_path, "brief", 6)
    be = backend()
    port = free_port()
    tg = tollgate(mutual_cfg(be, admin_port=port))
    ctx = tg_tls.client_ctx(pki, cert=(crt, key), version=version)
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
    session = info["session"]
    # The ticket's lifetime hint never reaches past the certificate.
    assert session.ticket_lifetime_hint <= int(not_after - time.time()) + 2, \
        session.ticket_lifetime_hint
    reused, session = resume(tg, ctx, session)
    assert reused, "the twin: a valid client's session must resume"
    time.sleep(max(0.0, not_after - time.time() + 1.5))
    ok, detail, client_port = tg_tls.attempt(tg.addr(), ctx, session=session)
    assert not ok, f"an expired client resumed its session: {detail}"
    ev = tg.wait_event("resumption_refused", reason="cert_expired")[0]
    assert ev["listener"] == "main"
    assert tg.wait_rejection(client_port)["reason"] == "cert_expired"
    s = scrape(port)
    assert metric(s, "tollgate_tls_resumptions_refused_total", listener="main",
                  reason="cert_expired") >= 1
    assert all(b"never reach" not in bytes(c.data) for c in be.snapshot()), \
        "a byte of the refused client reached the backend"


@pytest.mark.parametrize("version", VERSIONS)
def test_session_lifetime_counts_from_the_first_handshake(tollgate, backend, pki, version):
    """With session_lifetime: 4s, a session resumes at 1s (TLS 1.3 hands out
    a fresh ticket), and neither the old nor the fresh ticket resumes after
    4s: a resumption does not extend the session. The full handshake that
    follows succeeds. Twin: the default lifetime (1h) resumes the same way."""
    be = backend()
    short = tollgate(mutual_cfg(be, session_lifetime="4s"), name="short")
    long = tollgate(mutual_cfg(be), name="long")
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version=version)
    sessions = {}
    t0 = time.monotonic()
    for tg in (short, long):
        _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
        sessions[tg.name] = info["session"]
    assert sessions["short"].ticket_lifetime_hint <= 4
    time.sleep(1)
    for tg in (short, long):
        reused, fresh = resume(tg, ctx, sessions[tg.name])
        assert reused, f"{tg.name}: a session within its lifetime must resume"
        sessions[tg.name] = fresh
    # The fresh ticket's hint is what is left of the 4s, not 4s again.
    assert sessions["short"].ticket_lifetime_hint <= 4
    time.sleep(max(0.0, 4.5 - (time.monotonic() - t0)))
    reused, _ = resume(short, ctx, sessions["short"])
    assert not reused, "a resumption extended the session past session_lifetime"
    short.wait_event("resumption_refused", reason="session_expired")
    reused, _ = resume(long, ctx, sessions["long"])
    assert reused, "the twin: the default lifetime must still resume"
    assert not long.events("resumption_refused")


def test_crl_update_refuses_only_the_revoked(tollgate, backend, pki, tmp_path):
    """After a new CRL revokes alice (reload), alice's session is refused
    (cert_revoked, then her full handshake too) while bob's session made
    before the same update still resumes: a new CRL no longer voids every
    session."""
    crl = tmp_path / "clients.crl"
    write_crls(pki, crl)
    be = backend()
    cfg = mutual_cfg(be, crl=crl, pki=pki)
    tg = tollgate(cfg)
    ctxs = {n: tg_tls.client_ctx(pki, cert=pki.client(n), version="1.3") for n in ("alice", "bob")}
    sessions = {}
    for n, ctx in ctxs.items():
        _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
        sessions[n] = info["session"]
    alice = x509.load_pem_x509_certificate(Path(pki.client("alice")[0]).read_bytes())
    write_crls(pki, crl, revoked_serials=(alice.serial_number,))
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    tg.wait_event("ready", generation=2)
    reused, _ = resume(tg, ctxs["bob"], sessions["bob"])
    assert reused, "bob is not revoked: his session must resume after a CRL update"
    ok, detail, client_port = tg_tls.attempt(tg.addr(), ctxs["alice"], session=sessions["alice"])
    assert not ok, "a revoked client resumed its session"
    tg.wait_event("resumption_refused", reason="cert_revoked")
    assert tg.wait_rejection(client_port)["reason"] == "cert_revoked"


def https_exchange(tg, ctx, session, path):
    """One request on a new connection; returns (reused, session after)."""
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
        s.sendall(tg_http.build("GET", path))
        c = Client.__new__(Client)
        c.sock, c.r = s, tg_http._Reader(s)
        assert c.response().status == 200
        return s.session_reused, s.session


@pytest.mark.parametrize("version", VERSIONS)
def test_identity_headers_are_the_same_on_a_resumed_request(hserve, pki, version):
    """Client-Cert-Chain (and every identity header) on a resumed request is
    what the full handshake's request got; the chain is not empty."""
    tg, be = hserve(tg_http.https_listener(mode="mutual"))
    ctx = tg_http.ssl_ctx(pki, pki.client("alice"))
    ctx.minimum_version = ctx.maximum_version = (
        tg_tls.ssl.TLSVersion.TLSv1_3 if version == "1.3" else tg_tls.ssl.TLSVersion.TLSv1_2)
    reused0, sess = https_exchange(tg, ctx, None, "/full")
    reused1, _ = https_exchange(tg, ctx, sess, "/resumed")
    assert not reused0 and reused1, "the test could not resume a session"
    full, resumed = be.reqs()[-2:]
    names = ["Client-Cert", "Client-Cert-Chain", "X-Client-Verify", "X-Client-Subject",
             "X-Client-Issuer", "X-Client-Serial", "X-Client-Fingerprint"]
    for n in names:
        assert full.get(n) is not None or n == "Client-Cert-Chain", n
        assert resumed.get(n) == full.get(n), f"{n}: {resumed.get(n)!r} != {full.get(n)!r}"
    assert full.get("Client-Cert-Chain"), "the full request has no chain: the test proves nothing"
