"""https target groups with a tls block: tollgate re-encrypts to the targets
and checks their certificates as a client does (trust, dates, revocation,
name). A refused certificate is a failed connect: one backend_tls_failed
line with the reason code, the next target, and a 502 when none is left.

The targets are Python's threaded http.server behind ssl, with the
certificates of the run's PKI or minted here from its intermediate CA."""

import datetime
import hashlib
import http.client
import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import ssl
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import tg_certs
import tg_tls
import tg_proc
from tg_http import Client, https_listener
from tg_proc import T, listener, wait_for

DAY = datetime.timedelta(days=1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def _answer(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        srv = self.server
        with srv.lock:
            srv.requests += 1
        if self.headers.get("Upgrade"):
            self.send_response(101)
            self.send_header("Upgrade", self.headers["Upgrade"])
            self.send_header("Connection", "Upgrade")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            # the tunnel: a greeting, then every byte back until the end
            conn = self.connection
            conn.sendall(b"hello\n")
            while True:
                b = conn.recv(65536)
                if not b:
                    return
                conn.sendall(b)
        size = int(self.headers.get("X-Want-Bytes") or 0)
        out = json.dumps({"path": self.path, "got": len(body),
                          "sha256": hashlib.sha256(body).hexdigest(),
                          "host": self.headers.get("Host"),
                          "proto": self.headers.get("X-Forwarded-Proto")}).encode()
        if size:
            out = pattern(size)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        if self.headers.get("X-Close"):
            self.send_header("Connection", "close")
            self.close_connection = True
        if self.headers.get("X-Drop"):
            self.close_connection = True  # keep-alive said, then closed once idle
        self.end_headers()
        self.wfile.write(out)

    do_GET = _answer
    do_POST = _answer


class TlsBackend(ThreadingHTTPServer):
    """An HTTPS server on a free loopback port. Counts the TLS connections
    it completed, how many of them resumed a session, refused handshakes
    and requests."""
    daemon_threads = True

    def __init__(self, cert, key, seclevel0=False):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if seclevel0:  # before loading: a weak certificate is refused otherwise
            self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        self.ctx.load_cert_chain(cert, key)
        self.lock = threading.Lock()
        self.conns = self.resumed = self.refused = self.requests = 0
        super().__init__(("127.0.0.1", 0), _Handler)
        self.address = f"127.0.0.1:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def finish_request(self, request, client_address):
        # Runs in the connection's own thread: the handshake too.
        request.settimeout(T(20))
        try:
            s = self.ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            with self.lock:
                self.refused += 1
            return
        with self.lock:
            self.conns += 1
            self.resumed += bool(s.session_reused)
        try:
            self.RequestHandlerClass(s, client_address, self)
        finally:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.shutdown()
        self.server_close()


def pattern(n):
    block = bytes(range(256)) * 64
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture
def backends():
    made = []

    def make(cert, key, **kw):
        b = TlsBackend(cert, key, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def _issuer(pki):
    cert = tg_certs.load_cert(pki.path("intermediate.crt"))
    key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    return cert, key


def server_cert(pki, out_dir, name, **kw):
    """A server certificate for localhost signed by the PKI's intermediate
    (leaf + intermediate in the file)."""
    inter, inter_key = _issuer(pki)
    return tg_certs.make_cert(out_dir, name, issuer_cert=inter, issuer_key=inter_key,
                              chain=(inter,), eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                              sans=["localhost"], **kw)


def crl_revoking(pki, out_dir, cert_path):
    """A CRL file: the root's CRL of the PKI and a new one of the
    intermediate that revokes cert_path."""
    inter, inter_key = _issuer(pki)
    now = datetime.datetime.now(datetime.timezone.utc)
    revoked = (x509.RevokedCertificateBuilder()
               .serial_number(tg_certs.load_cert(cert_path).serial_number)
               .revocation_date(now - DAY).build())
    crl = (x509.CertificateRevocationListBuilder()
           .issuer_name(inter.subject).last_update(now - DAY).next_update(now + 30 * DAY)
           .add_revoked_certificate(revoked)
           .sign(inter_key, hashes.SHA256()))
    marker = b"-----BEGIN X509 CRL-----"
    ours = [marker + p for p in Path(pki.path("clients.crl")).read_bytes().split(marker)[1:]]
    root_subject = tg_certs.load_cert(pki.path("root.crt")).subject
    keep = [p for p in ours if x509.load_pem_x509_crl(p).issuer == root_subject]
    assert keep, "the PKI's CRL file has no CRL of the root"
    path = Path(out_dir) / "revoking.crl"
    path.write_bytes(b"".join(keep) + crl.public_bytes(serialization.Encoding.PEM))
    return str(path)


def start(tollgate, pki, targets, tls, client_cas=None, **listener_kw):
    cfg = {"target_groups": {"g": {"targets": [{"address": a} for a in targets], "tls": tls}},
           "listeners": [https_listener(connect_timeout="5s", **listener_kw)],
           "client_cas": dict(pki.client_cas(), **(client_cas or {}))}
    return tollgate(cfg)


def get(tg, pki, path="/", **kw):
    with Client(tg.addr(), pki) as c:
        return c.request("GET", path, **kw)


def assert_refused(tg, pki, be, reason):
    """One request: a 502, one backend_tls_failed line with the reason, and
    nothing reached the target's HTTP layer."""
    r = get(tg, pki, "/refused")
    assert r.status == 502, (r.status, r.body)
    assert be.address.encode() not in r.body
    ev = tg.wait_event("backend_tls_failed", timeout=T(10))
    assert len(ev) == 1, ev
    assert ev[0]["reason"] == reason, ev[0]
    assert ev[0]["target"] == be.address and ev[0]["target_group"] == "g", ev[0]
    assert be.requests == 0
    assert tg.events("connect_failed") == []
    return ev[0]


# ---- success ----

def test_verified_roundtrip_bodies_and_reuse(tollgate, pki, backends):
    """verify on, the CA with its CRL, SNI localhost: request and response
    bodies arrive intact, and keep-alive requests share one backend TLS
    connection, also across client connections."""
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    up = pattern(300_000)
    with Client(tg.addr(), pki) as c:
        r = c.request("POST", "/up", body=up)
        assert r.status == 200, r.body
        j = r.json()
        assert j["got"] == len(up) and j["sha256"] == hashlib.sha256(up).hexdigest(), j
        assert j["proto"] == "https"
        r = c.request("GET", "/down", headers=[("X-Want-Bytes", "500000")])
        assert r.status == 200 and r.body == pattern(500_000)
        for i in range(5):
            assert c.request("GET", f"/k{i}").json()["path"] == f"/k{i}"
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/again").status == 200
    assert be.requests == 8
    assert be.conns == 1, f"{be.conns} backend TLS connections for 8 requests"
    assert be.refused == 0
    assert tg.events("backend_tls_failed") == []


def test_new_connections_resume_the_session(tollgate, pki, backends):
    """A target that closes after each response gets a new connection per
    request, and those resume the TLS session."""
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    with Client(tg.addr(), pki) as c:
        for i in range(4):
            r = c.request("GET", f"/c{i}", headers=[("X-Close", "1")])
            assert r.status == 200 and r.json()["path"] == f"/c{i}"
    wait_for(lambda: be.conns == 4, T(10), what="4 backend connections")
    assert be.resumed >= 2, f"{be.resumed} of {be.conns} backend connections resumed"


def test_target_address_is_the_default_name(tollgate, pki, backends):
    """Without server_name the target's address is checked: 127.0.0.1 is
    among the PKI server certificate's addresses."""
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki"})
    assert get(tg, pki, "/ip").json()["path"] == "/ip"


def test_no_verify_accepts_an_unknown_ca(tollgate, pki, foreign_pki, backends):
    """verify: false: a certificate from a CA nobody named, for another
    name, is accepted."""
    be = backends(foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"verify": False, "server_name": "other.example"})
    r = get(tg, pki, "/nv")
    assert r.status == 200 and r.json()["path"] == "/nv"
    assert tg.events("backend_tls_failed") == []


def test_refused_target_then_the_next(tollgate, pki, foreign_pki, backends):
    """A refused certificate is a failed connect: the request goes to the
    next target."""
    bad = backends(foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key"))
    good = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [bad.address, good.address],
               {"ca": "pki", "server_name": "localhost"})
    for i in range(4):
        assert get(tg, pki, f"/n{i}").status == 200
    assert good.requests == 4 and bad.requests == 0
    ev = tg.wait_event("backend_tls_failed", timeout=T(10))
    assert all(e["reason"] == "unknown_ca" and e["target"] == bad.address for e in ev), ev


# ---- each refusal ----

def test_unknown_ca(tollgate, pki, foreign_pki, backends):
    be = backends(foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    assert_refused(tg, pki, be, "unknown_ca")


def test_wrong_name(tollgate, pki, backends):
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "other.example"})
    ev = assert_refused(tg, pki, be, "name_mismatch")
    assert "localhost" in ev["subject"] and "intermediate" in ev["issuer"], ev


def test_expired(tollgate, pki, backends, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = server_cert(pki, tmp_path, "expired-server", not_before=now - 30 * DAY,
                            not_after=now - DAY)
    be = backends(cert, key)
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    assert_refused(tg, pki, be, "cert_expired")


def test_not_yet_valid(tollgate, pki, backends, tmp_path):
    now = datetime.datetime.now(datetime.timezone.utc)
    cert, key = server_cert(pki, tmp_path, "future-server", not_before=now + 10 * DAY,
                            not_after=now + 40 * DAY)
    be = backends(cert, key)
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    assert_refused(tg, pki, be, "cert_not_yet_valid")


def test_self_signed(tollgate, pki, backends, tmp_path):
    cert, key = tg_certs.make_cert(tmp_path, "self-server", eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                   sans=["localhost"])
    be = backends(cert, key)
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    assert_refused(tg, pki, be, "self_signed")


def test_revoked(tollgate, pki, backends, tmp_path):
    """The CA entry's CRL revokes the target's certificate; its twin, a
    certificate that CRL does not list, passes with the same entry."""
    cert, key = server_cert(pki, tmp_path, "revoked-server")
    ok_cert, ok_key = server_cert(pki, tmp_path, "kept-server")
    crl = crl_revoking(pki, tmp_path, cert)
    cas = {"revoking": {"ca": pki.path("root.crt"), "crl": crl}}
    be = backends(cert, key)
    tg = start(tollgate, pki, [be.address], {"ca": "revoking", "server_name": "localhost"},
               client_cas=cas)
    assert_refused(tg, pki, be, "cert_revoked")

    ok = backends(ok_cert, ok_key)
    tg2 = tollgate({"target_groups": {"g": {"targets": [{"address": ok.address}],
                                            "tls": {"ca": "revoking",
                                                    "server_name": "localhost"}}},
                    "listeners": [https_listener()],
                    "client_cas": dict(pki.client_cas(), **cas)}, name="tg2")
    assert get(tg2, pki, "/kept").status == 200


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_weak_target_chain_refused_whatever_the_system_level(tollgate, pki, backends, tmp_path,
                                                             monkeypatch):
    """Target verification keeps security level 2 even when the system's
    OpenSSL configuration lowers the default to 0: a target certificate
    signed with SHA-1 is refused (bad_signature); twin: a normal one under
    the same configuration is served."""
    conf = tmp_path / "seclevel0.cnf"
    conf.write_text(tg_tls.SECLEVEL0_CONF)
    monkeypatch.setenv("OPENSSL_CONF", str(conf))
    cert, key = server_cert(pki, tmp_path, "sha1-server", digest=hashes.SHA1())
    be = backends(cert, key, seclevel0=True)
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    assert_refused(tg, pki, be, "bad_signature")

    ok = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"), seclevel0=True)
    tg2 = tollgate({"target_groups": {"g": {"targets": [{"address": ok.address}],
                                            "tls": {"ca": "pki", "server_name": "localhost"}}},
                    "listeners": [https_listener()], "client_cas": pki.client_cas()}, name="tg2")
    assert get(tg2, pki, "/normal").status == 200


def test_plain_target_is_refused(tollgate, pki):
    """A target that does not speak TLS at all: tls_error, 502."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    addr = f"127.0.0.1:{ls.getsockname()[1]}"

    def answer():
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            try:
                s.recv(4096)
                s.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            except OSError:
                pass
            s.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        tg = start(tollgate, pki, [addr], {"ca": "pki", "server_name": "localhost"})
        r = get(tg, pki, "/plain")
        assert r.status == 502
        ev = tg.wait_event("backend_tls_failed", timeout=T(10))[0]
        assert ev["reason"] in ("tls_error", "protocol_version"), ev
    finally:
        ls.close()


# ---- the same words from the backend connection and the health check ----

def _status_target(port, address):
    """The /status entry of address in group g."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=T(10))
    try:
        c.request("GET", "/status")
        doc = json.loads(c.getresponse().read())
    finally:
        c.close()
    return next(t for g in doc["target_groups"] if g["name"] == "g"
                for t in g["targets"] if t["address"] == address)


@pytest.mark.parametrize("case", ["good", "expired", "wrong_name", "unknown_ca"])
def test_backend_and_health_check_give_the_same_reason(tollgate, pki, foreign_pki, backends,
                                                       tmp_path, case):
    """One target, reached by requests and by https health checks of the
    same group: a bad certificate gets the same reason code in the
    backend_tls_failed line, the health check's target_down detail and
    /status last_check.detail. Twin: a good certificate passes both."""
    now = datetime.datetime.now(datetime.timezone.utc)
    tls = {"ca": "pki", "server_name": "localhost"}
    cert, key = pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key")
    if case == "expired":
        cert, key = server_cert(pki, tmp_path, "expired-server", not_before=now - 30 * DAY,
                                not_after=now - DAY)
    elif case == "wrong_name":
        tls["server_name"] = "other.example"
    elif case == "unknown_ca":
        cert, key = foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key")
    be = backends(cert, key)
    port = tg_proc.free_port()
    check = {"type": "https", "path": "/health", "interval": "300ms", "timeout": "2s",
             "healthy_threshold": 1, "unhealthy_threshold": 1}
    tg = tollgate({"admin": {"listen": f"127.0.0.1:{port}"},
                   "target_groups": {"g": {"targets": [{"address": be.address}], "tls": tls,
                                           "health_check": check}},
                   "listeners": [https_listener(connect_timeout="5s")],
                   "client_cas": pki.client_cas()})
    if case == "good":
        assert get(tg, pki, "/fine").status == 200
        tg.wait_event("target_up", target=be.address, timeout=T(10))
        lc = wait_for(lambda: (_status_target(port, be.address).get("last_check") or None),
                      T(10), what="a first check in /status")
        assert lc["result"] == "pass" and lc["detail"] == "", lc
        assert tg.events("backend_tls_failed") == [] and tg.events("target_down") == []
        return
    want = {"expired": "cert_expired", "wrong_name": "name_mismatch",
            "unknown_ca": "unknown_ca"}[case]
    r = get(tg, pki, "/bad")
    assert r.status == 502, (r.status, r.body)
    failed = tg.wait_event("backend_tls_failed", timeout=T(10))[0]
    down = tg.wait_event("target_down", target=be.address, timeout=T(10))[0]

    def last_check():
        lc = _status_target(port, be.address).get("last_check")
        return lc if lc and lc["cause"] == "tls_error" else None
    lc = wait_for(last_check, T(10), what="a failed check in /status")
    assert failed["target"] == be.address, failed
    assert down["cause"] == "tls_error", down
    got = (failed["reason"], down["detail"], lc["detail"])
    assert got == (want, want, want), (failed, down, lc)
    assert lc["result"] == "tls_error", lc
    assert be.requests == 0


def cpu_seconds(pid):
    """User + system CPU time of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def be_conns(ls):
    """True once a connection waits in the listen queue of ls."""
    import select
    return bool(select.select([ls], [], [], 0)[0])


def test_handshake_timeout(tollgate, pki):
    """A target that accepts but never answers the ClientHello: the
    handshake has connect_timeout, then handshake_timeout and a 502."""
    import socket
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    addr = f"127.0.0.1:{ls.getsockname()[1]}"
    try:
        cfg = {"target_groups": {"g": {"targets": [{"address": addr}],
                                       "tls": {"ca": "pki", "server_name": "localhost"}}},
               "listeners": [https_listener(connect_timeout="2s")]}
        tg = tollgate(cfg)
        worker = tg.worker_pids()[0]
        got = {}
        t = threading.Thread(target=lambda: got.update(r=get(tg, pki, "/silent")))
        t.start()
        # While it waits for the target's answer the worker sleeps: it
        # watches for reading, not for writing on a writable socket.
        wait_for(lambda: be_conns(ls), T(5), what="the target's connection")
        cpu0 = cpu_seconds(worker)
        time.sleep(1.0)
        assert cpu_seconds(worker) - cpu0 < 0.3
        t.join(T(10))
        assert got["r"].status == 502
        ev = tg.wait_event("backend_tls_failed", timeout=T(10))
        assert [e["reason"] for e in ev] == ["handshake_timeout"], ev
    finally:
        ls.close()


def test_upgrade_tunnel_over_tls(tollgate, pki, backends):
    """After a 101 the tunnel runs over TLS to the target both ways, with
    large writes; the group still serves requests after it."""
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/ws", headers=[("Upgrade", "websocket"),
                                             ("Connection", "Upgrade"),
                                             ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                             ("Sec-WebSocket-Version", "13")])
        assert r.status == 101, (r.status, r.body)
        got = bytearray()
        while len(got) < 6:
            got += c.r.buf or c.sock.recv(65536)
            c.r.buf.clear()
        assert bytes(got[:6]) == b"hello\n"
        data = pattern(400_000)
        echoed = bytearray(got[6:])
        step = 40_000  # in steps, so that neither side's buffers fill up
        for off in range(0, len(data), step):
            c.sock.sendall(data[off:off + step])
            while len(echoed) < min(off + step, len(data)):
                b = c.sock.recv(65536)
                assert b, f"tunnel ended after {len(echoed)} bytes"
                echoed += b
        assert bytes(echoed) == data
    assert get(tg, pki, "/after").status == 200


def test_idle_pooled_connection_closed_by_the_target(tollgate, pki, backends):
    """A pooled TLS connection that the target closes (close_notify, EOF)
    is not used again: every request still gets its answer."""
    be = backends(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    tg = start(tollgate, pki, [be.address], {"ca": "pki", "server_name": "localhost"})
    with Client(tg.addr(), pki) as c:
        for i in range(3):
            r = c.request("GET", f"/d{i}", headers=[("X-Drop", "1")])
            assert r.status == 200 and r.json()["path"] == f"/d{i}"
            wait_for(lambda: be.conns == i + 1, T(10), what=f"{i + 1} backend connections")
    assert be.requests == 3


@pytest.mark.parametrize("protocol", ["https", "tcp_ssl"])
def test_check_accepts_a_group_tls_block_for_both_protocols(tmp_path, pki, protocol):
    """tollgate check: a group tls block is in effect for https and tcp_ssl
    listeners alike, so neither is warned about."""
    group = {"targets": [{"address": "127.0.0.1:1"}], "tls": {"server_name": "x.example"}}
    lst = https_listener() if protocol == "https" else listener()
    cfg = {"target_groups": {"g": group}, "listeners": [lst]}
    path = tg_proc.Tollgate(tmp_path / "chk", pki).write_config(cfg)
    r = tg_proc.run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert "target_groups.g.tls" not in r.stderr, r.stderr
