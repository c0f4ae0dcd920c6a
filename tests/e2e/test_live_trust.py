"""Revocation and expiry reach live connections: a changed CRL or CA file is
loaded without a reload (crl_check_interval), established connections whose
client certificate it no longer accepts are cut (on_revoke), a certificate
that expires during a connection ends it (on_expiry), a broken new file is
refused and the old trust stays, and a CRL near its nextUpdate is warned
about."""

import datetime
import json
import os
import socket
import ssl
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

import tg_http
import tg_tls
from test_admin import admin_get, metric, scrape
from test_session_trust import short_lived_client
from tg_http import Client, Reply, hbackend, hserve  # noqa: F401
from tg_proc import T, free_port, group, listener, wait_for


def load_key(pki, name):
    return serialization.load_pem_private_key(Path(pki.path(f"{name}.key")).read_bytes(),
                                              password=None)


def write_crl(pki, path, revoked=(), number=1, next_update=None):
    """The root's and the intermediate's CRLs in one file, written atomically:
    `revoked` serials on the intermediate's, with cRLNumber `number`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    next_update = next_update or now + datetime.timedelta(days=7)
    out = b""
    for name, serials in (("intermediate", revoked), ("root", ())):
        cert = x509.load_pem_x509_certificate(Path(pki.path(f"{name}.crt")).read_bytes())
        b = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
             .last_update(now - datetime.timedelta(minutes=5)).next_update(next_update)
             .add_extension(x509.CRLNumber(number), critical=False))
        for s in serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(s)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        out += b.sign(load_key(pki, name), hashes.SHA256()).public_bytes(
            serialization.Encoding.PEM)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(out)
    os.replace(tmp, path)


def serial_of(cert_path):
    return x509.load_pem_x509_certificate(Path(cert_path).read_bytes()).serial_number


def trust_cfg(pki, be, crl, admin_port=None, ca=None, interval="1s", **tls_extra):
    cfg = {"client_cas": {"pki": {"ca": ca or pki.path("root.crt"), "crl": str(crl),
                                  "crl_check_interval": interval}},
           "target_groups": {"g": group(be.address)},
           "listeners": [listener(mode="mutual", tls_extra=tls_extra or None)]}
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def is_closed(s, timeout=None):
    """True once the peer closed s (EOF, reset or TLS close); False when it
    stays open for `timeout` (or sends data)."""
    s.settimeout(timeout or T(10))
    try:
        return s.recv(1) == b""
    except socket.timeout:
        return False
    except (OSError, ssl.SSLError):
        return True


def echo_ok(s, payload=b"still here\n"):
    s.sendall(payload)
    return tg_tls.recv_exact(s, len(payload)) == payload


def test_new_crl_cuts_the_revoked_connection_only(tollgate, backend, pki, tmp_path):
    """A CRL that revokes alice, written while alice and bob are connected:
    without a reload tollgate loads it (event=trust_reloaded with its
    number), closes alice's connection (event=connection_revoked with her
    serial, access-log outcome revoked, metric), and bob's connection goes
    on (twin). alice can neither reconnect nor resume."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = backend()
    port = free_port()
    tg = tollgate(trust_cfg(pki, be, crl, admin_port=port))
    ctx = {n: tg_tls.client_ctx(pki, cert=pki.client(n), version="1.3") for n in ("alice", "bob")}
    conns = {n: tg_tls.connect(tg.addr(), c) for n, c in ctx.items()}
    for s in conns.values():
        assert echo_ok(s)
    session = conns["alice"].session
    write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
    ev = tg.wait_event("trust_reloaded", timeout=T(10), crl_number="2")[0]
    assert ev["client_ca"] == "pki" and ev["revoked"] == "1"
    cut = tg.wait_event("connection_revoked", timeout=T(10))[0]
    assert cut["reason"] == "cert_revoked" and cut["crl_number"] == "2"
    assert int(cut["serial"], 16) == serial_of(pki.client("alice")[0])
    assert is_closed(conns["alice"]), "the revoked client's connection is still open"
    assert echo_ok(conns["bob"]), "the twin: bob's connection must go on"
    rec = tg.wait_access(lambda r: r.get("outcome") == "revoked")[0]
    assert rec["reason"] == "cert_revoked"
    ok, _, _ = tg_tls.attempt(tg.addr(), ctx["alice"])
    assert not ok, "a revoked client made a new connection"
    ok, _, _ = tg_tls.attempt(tg.addr(), ctx["alice"], session=session)
    assert not ok, "a revoked client resumed"
    tg.wait_event("resumption_refused", reason="cert_revoked")
    s = scrape(port)
    assert metric(s, "tollgate_connections_cut_total", listener="main", reason="cert_revoked") == 1
    assert metric(s, "tollgate_crl_revoked_serials", client_ca="pki") == 1
    st, _, body = admin_get(port, "/status")
    ca = json.loads(body)["client_cas"][0]
    assert ca["name"] == "pki" and ca["crl_number"] == "2" and ca["revoked"] == 1
    assert ca["crls"] == 2 and ca["crl_next_update_unix"] > time.time()
    assert ca["loaded_at"] and ca["crl_this_update"]
    for c in conns.values():
        c.close()


def test_on_revoke_keep_leaves_the_connection(tollgate, backend, pki, tmp_path):
    """on_revoke: keep: the revoked client's open connection stays (new
    handshakes are still refused)."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl, on_revoke="keep"))
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    with tg_tls.connect(tg.addr(), ctx) as s:
        assert echo_ok(s)
        write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
        tg.wait_event("trust_applied", timeout=T(10), crl_number="2")
        assert echo_ok(s), "on_revoke: keep closed the connection"
        ok, _, _ = tg_tls.attempt(tg.addr(), ctx)
        assert not ok
    assert not tg.events("connection_revoked")


def test_broken_crl_is_refused_and_the_old_trust_stays(tollgate, backend, pki, tmp_path):
    """A CRL file that does not parse is refused once
    (event=trust_reload_failed), the previous CRL keeps judging (alice,
    revoked in it, stays refused; bob connects) and no live connection is
    touched; a good file after it is loaded."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=5)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl))
    bob = tg_tls.client_ctx(pki, cert=pki.client("bob"), version="1.3")
    alice = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    with tg_tls.connect(tg.addr(), bob) as s:
        assert echo_ok(s)
        tmp = Path(str(crl) + ".tmp")
        tmp.write_bytes(b"-----BEGIN X509 CRL-----\nnot base64 at all\n-----END X509 CRL-----\n")
        os.replace(tmp, crl)
        ev = tg.wait_event("trust_reload_failed", timeout=T(10))[0]
        assert ev["action"] == "keep_previous"
        time.sleep(2.5)  # two more looks at the same broken file
        assert len(tg.events("trust_reload_failed")) == 1, "a refused file was tried again"
        assert echo_ok(s)
        assert not tg_tls.attempt(tg.addr(), alice)[0], "the old CRL no longer applies"
        assert tg_tls.attempt(tg.addr(), bob)[0]
        write_crl(pki, crl, number=6)
        tg.wait_event("trust_reloaded", timeout=T(10), crl_number="6")
        tg.wait_event("trust_applied", timeout=T(10), crl_number="6")
        assert tg_tls.attempt(tg.addr(), alice)[0], "the good file after the broken one"
    assert not tg.events("connection_revoked")


@pytest.mark.parametrize("on_expiry", ["close", "keep"])
def test_certificate_expiring_during_a_connection(tollgate, backend, pki, tmp_path, on_expiry):
    """A connection whose client certificate reaches its notAfter is closed
    then (event=connection_expired, outcome expired); with on_expiry: keep
    it stays open (twin)."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl)
    crt, key, not_after = short_lived_client(pki, tmp_path, "brief", 5)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl, on_expiry=on_expiry))
    ctx = tg_tls.client_ctx(pki, cert=(crt, key), version="1.3")
    with tg_tls.connect(tg.addr(), ctx) as s:
        assert echo_ok(s)
        if on_expiry == "close":
            assert is_closed(s, timeout=not_after - time.time() + T(5))
            assert time.time() >= not_after, "closed before the certificate expired"
            ev = tg.wait_event("connection_expired")[0]
            assert ev["reason"] == "cert_expired"
            assert tg.wait_access(lambda r: r.get("outcome") == "expired")
        else:
            time.sleep(max(0.0, not_after - time.time() + 2.5))
            assert echo_ok(s), "on_expiry: keep closed the connection"
            assert not tg.events("connection_expired")


def test_ca_change_is_judged_by_verifying_again(tollgate, backend, pki, foreign_pki, tmp_path):
    """A CA bundle rewritten with one more CA keeps alice's connection (her
    chain still verifies); a bundle of another CA only cuts it
    (unknown_ca)."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl)
    bundle = tmp_path / "ca.pem"
    root = Path(pki.path("root.crt")).read_bytes()
    bundle.write_bytes(root)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl, ca=str(bundle)))
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    with tg_tls.connect(tg.addr(), ctx) as s:
        assert echo_ok(s)
        tmp = tmp_path / "ca.tmp"
        tmp.write_bytes(root + Path(foreign_pki.path("root.crt")).read_bytes())
        os.replace(tmp, bundle)
        tg.wait_event("trust_applied", timeout=T(10))
        assert echo_ok(s), "a CA added to the bundle cut a client it still trusts"
        tmp.write_bytes(Path(foreign_pki.path("root.crt")).read_bytes())
        os.replace(tmp, bundle)
        tg.wait_event("trust_applied", timeout=T(10), count=2)
        ev = tg.wait_event("connection_revoked", timeout=T(10))[0]
        assert ev["reason"] == "unknown_ca"
        assert is_closed(s)


def test_https_request_in_flight_finishes_then_the_connection_closes(hserve, pki, tmp_path):
    """On https a revoked client's request in flight gets its whole response,
    then the connection closes; its idle keep-alive connection closes at
    once."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl)
    gate = threading.Event()

    def handler(req):
        if req.target == "/slow":
            gate.wait(T(10))
        return Reply(body=b"done")
    tg, be = hserve(tg_http.https_listener(mode="mutual"), handler=handler,
                    client_cas={"pki": {"ca": pki.path("root.crt"), "crl": str(crl),
                                        "crl_check_interval": "1s"}})
    idle = Client(tg.addr(), pki, cert=pki.client("alice"))
    assert idle.request("GET", "/a").status == 200
    busy = Client(tg.addr(), pki, cert=pki.client("alice"))
    busy.send(tg_http.build("GET", "/slow"))
    wait_for(lambda: any(q.target == "/slow" for q in be.reqs()), T(10), what="/slow at backend")
    write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
    ev = tg.wait_event("connection_revoked", timeout=T(10), action="close")[0]
    assert ev["reason"] == "cert_revoked"
    tg.wait_event("connection_revoked", timeout=T(10), action="close_after_request")
    assert is_closed(idle.sock), "the idle keep-alive connection is still open"
    gate.set()
    r = busy.response()
    assert r.status == 200 and r.body == b"done", "the request in flight was cut"
    assert is_closed(busy.sock), "the connection stayed open after its request"


def test_crl_near_its_next_update_is_warned_about(tollgate, backend, pki, tmp_path):
    """A CRL within a day of its nextUpdate logs event=crl_next_update_soon
    once, and /metrics shows the seconds left; a fresh one does not warn
    (twin)."""
    soon, fresh = tmp_path / "soon.crl", tmp_path / "fresh.crl"
    now = datetime.datetime.now(datetime.timezone.utc)
    write_crl(pki, soon, next_update=now + datetime.timedelta(hours=2), number=7)
    write_crl(pki, fresh, number=8)
    be = backend()
    port = free_port()
    tg = tollgate(trust_cfg(pki, be, soon, admin_port=port), name="soon")
    tg2 = tollgate(trust_cfg(pki, be, fresh), name="fresh")
    ev = tg.wait_event("crl_next_update_soon", timeout=T(10))[0]
    assert ev["client_ca"] == "pki" and 0 < int(ev["seconds_left"]) <= 7200
    time.sleep(2)
    assert len(tg.events("crl_next_update_soon")) == 1
    assert not tg2.events("crl_next_update_soon")
    left = metric(scrape(port), "tollgate_crl_next_update_seconds", client_ca="pki")
    assert 0 < left <= 7200


def test_trust_change_during_a_handshake_is_judged_at_its_end(tollgate, backend, pki, tmp_path):
    """A client whose certificate was verified, then revoked by a CRL loaded
    before it sent its Finished, is refused when the handshake ends
    (cert_revoked); not one byte reaches the backend. Twin: the same held
    handshake without a CRL change completes."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl))
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")

    def held(change):
        return tg_tls.held_handshake(tg.addr(), ctx, change, b"held handshake\n")

    assert held(lambda: None) == b"held handshake\n", "the twin: a held handshake completes"

    def revoke():
        write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
        tg.wait_event("trust_applied", timeout=T(10), crl_number="2")
    assert held(revoke) == b"", "a client revoked during its handshake got through"
    rej = wait_for(lambda: [e for e in tg.rejections() if e["reason"] == "cert_revoked"], T(10),
                   what="the late refusal")[0]
    assert "judged again" in rej["detail"]
    assert sum(b"held handshake" in bytes(c.data) for c in be.snapshot()) == 1


def forged_crl(pki, path, number):
    """The intermediate's CRL, empty, signed by a key that is not the CA's
    (the root's CRL is genuine)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out = b""
    for name, key in (("intermediate", ec.generate_private_key(ec.SECP256R1())),
                      ("root", load_key(pki, "root"))):
        cert = x509.load_pem_x509_certificate(Path(pki.path(f"{name}.crt")).read_bytes())
        b = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
             .last_update(now - datetime.timedelta(minutes=5))
             .next_update(now + datetime.timedelta(days=7))
             .add_extension(x509.CRLNumber(number), critical=False))
        out += b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(out)
    os.replace(tmp, path)


def test_forged_crl_clears_nobody(tollgate, backend, pki, tmp_path):
    """A CRL that names the right issuer but is not signed by it counts for
    nothing: alice, revoked by the genuine CRL, cannot resume after a forged
    empty one replaces it (bad_signature), and the live connections are
    judged by full verification, which refuses the forged CRL too. Twin:
    before the forgery, bob's session resumes."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl))
    ctx = {n: tg_tls.client_ctx(pki, cert=pki.client(n), version="1.3") for n in ("alice", "bob")}
    sessions = {}
    for n, c in ctx.items():
        _, info = tg_tls.roundtrip(tg.addr(), c, b"a\n")
        sessions[n] = info["session"]
    write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
    tg.wait_event("trust_applied", timeout=T(10), crl_number="2")
    with tg_tls.connect(tg.addr(), ctx["bob"], session=sessions["bob"]) as s:
        assert s.session_reused and echo_ok(s), "the twin: bob resumes under the genuine CRL"
    forged_crl(pki, crl, number=3)
    tg.wait_event("trust_applied", timeout=T(10), crl_number="3")
    ok, _, _ = tg_tls.attempt(tg.addr(), ctx["alice"], session=sessions["alice"])
    assert not ok, "a forged CRL let a revoked client resume"
    tg.wait_event("resumption_refused", reason="bad_signature")


def test_crl_past_its_next_update_cuts_live_connections(tollgate, backend, pki, tmp_path):
    """When the only CRL of the clients' issuer passes its nextUpdate, new
    handshakes are refused (crl_expired) and so are the connected clients:
    their connections close."""
    crl = tmp_path / "clients.crl"
    until = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=4)
    write_crl(pki, crl, number=1, next_update=until)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl))
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    with tg_tls.connect(tg.addr(), ctx) as s:
        assert echo_ok(s)
        assert is_closed(s, timeout=until.timestamp() - time.time() + T(5))
        assert time.time() > until.timestamp(), "closed before the CRL's nextUpdate"
    ev = tg.wait_event("connection_revoked")[0]
    assert ev["reason"] == "crl_expired"
    assert not tg_tls.attempt(tg.addr(), ctx)[0]


def test_stale_crl_beside_a_fresh_one_refuses_nobody(tollgate, backend, pki, tmp_path):
    """An old CRL past its nextUpdate next to the issuer's fresh one (a file
    that keeps both): the fresh one decides, as in a full handshake; no live
    connection is cut, sessions resume, and no crl_expired is logged."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = backend()
    tg = tollgate(trust_cfg(pki, be, crl))
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    with tg_tls.connect(tg.addr(), ctx) as s:
        assert echo_ok(s)
        session = s.session
        now = datetime.datetime.now(datetime.timezone.utc)
        inter = x509.load_pem_x509_certificate(Path(pki.path("intermediate.crt")).read_bytes())
        old = (x509.CertificateRevocationListBuilder().issuer_name(inter.subject)
               .last_update(now - datetime.timedelta(days=10))
               .next_update(now - datetime.timedelta(days=3))
               .add_extension(x509.CRLNumber(1), critical=False)
               .sign(load_key(pki, "intermediate"), hashes.SHA256())
               .public_bytes(serialization.Encoding.PEM))
        fresh = tmp_path / "fresh.crl"
        write_crl(pki, fresh, number=2)
        tmp = tmp_path / "both.tmp"
        tmp.write_bytes(old + fresh.read_bytes())
        os.replace(tmp, crl)
        tg.wait_event("trust_applied", timeout=T(10))
        time.sleep(1.5)
        assert echo_ok(s), "a stale CRL beside a fresh one cut a client"
    with tg_tls.connect(tg.addr(), ctx, session=session) as s2:
        assert s2.session_reused and echo_ok(s2)
    assert not tg.events("connection_revoked") and not tg.events("crl_expired")


def test_cut_request_that_never_ends_is_closed_within_response_timeout(hserve, pki, tmp_path):
    """A revoked client whose request body never ends gets response_timeout
    (2s here) after the cut, then its connection is closed
    (event=connection_cut_overdue)."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl)
    tg, be = hserve(tg_http.https_listener(mode="mutual", response_timeout="2s"),
                    client_cas={"pki": {"ca": pki.path("root.crt"), "crl": str(crl),
                                        "crl_check_interval": "1s"}})
    c = Client(tg.addr(), pki, cert=pki.client("alice"))
    c.send(b"POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\nstart")
    write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
    deadline = time.monotonic() + T(20)
    cut_at = None
    closed = False
    while time.monotonic() < deadline and not closed:
        try:
            c.send(b"x")  # a trickle: never idle, never done
        except OSError:
            closed = True
            break
        if cut_at is None and tg.events("connection_revoked", action="close_after_request"):
            cut_at = time.monotonic()
        closed = is_closed(c.sock, timeout=0.3)
    assert cut_at is not None, "the request in flight was not cut after it"
    assert closed, "the cut connection outlived response_timeout"
    ev = tg.wait_event("connection_cut_overdue")[0]
    assert ev["reason"] == "cert_revoked"
