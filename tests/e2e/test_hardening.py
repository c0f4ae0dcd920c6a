"""Resource limits and slow clients: the per-client connection limit,
slowloris connections, a client that never reads, file-descriptor
exhaustion, and the timeouts that free what slow clients hold."""

import os
import re
import resource
import socket
import ssl
import threading
import time

import pytest

import tg_http
import tg_proc
import tg_tls
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, listener, wait_for

# The start of a TLS 1.2-style ClientHello record that announces 512 bytes
# and stops after the random: a handshake that never completes.
PARTIAL_HELLO = bytes.fromhex("16030102000100 01fc 0303") + b"\x5a" * 32
PARTIAL_HEAD = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "


def raise_nofile(want):
    """Raises this process's descriptor limit (tollgate inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_pid(tg):
    return wait_for(lambda: (tg.worker_pids() or [None])[0], T(5), what="a worker")


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fds(tg, pid):
    """The worker's descriptor count once it has stopped moving (the
    readiness probe's connection is gone): the same for 300 ms."""
    last = []

    def steady():
        last.append(open_fds(pid))
        return last[-1] if len(last) >= 6 and len(set(last[-6:])) == 1 else None

    return wait_for(steady, T(5), interval=0.05, what="a steady descriptor count")


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def served(tg, pki, timeout):
    """One fresh client: full handshake, one request; seconds it took."""
    t0 = time.monotonic()
    with Client(tg.addr(), pki, timeout=timeout) as c:
        r = c.request("GET", "/hello")
    assert r.status == 200, r.status
    return time.monotonic() - t0


def closed_by_peer(sock, timeout):
    """True when the server closes (EOF or reset) within timeout."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except (ConnectionResetError, ssl.SSLError):
        return True
    except (socket.timeout, TimeoutError):
        return False


# ---- max_connections_per_client ----

def tls_echo(addr, pki, source="127.0.0.1"):
    raw = socket.create_connection(addr, timeout=T(10), source_address=(source, 0))
    try:
        s = tg_tls.client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
    except BaseException:
        raw.close()
        raise
    s.sendall(b"ping\n")
    assert tg_tls.recv_exact(s, 5) == b"ping\n"
    return s


def test_per_client_limit_refuses_the_extra_connection_only(serve, pki):
    tg, be = serve(listener(max_connections_per_client=3))
    tg.settle_probes()
    held = [tls_echo(tg.addr(), pki) for _ in range(3)]
    try:
        # The fourth from the same address is closed during the handshake.
        with pytest.raises((ssl.SSLError, OSError)):
            s = tls_echo(tg.addr(), pki)
            s.close()
        ev = tg.wait_event("conn_refused", reason="max_connections_per_client")[0]
        assert ev["limit"] == "3" and ev["client"].startswith("127.0.0.1:")
        # Another client address is not affected.
        other = tls_echo(tg.addr(), pki, source="127.0.0.2")
        other.close()
        # The held connections still work.
        for s in held:
            s.sendall(b"again\n")
            assert tg_tls.recv_exact(s, 6) == b"again\n"
        # A closed connection frees its place.
        held.pop().close()
        s = wait_for(lambda: _try(lambda: tls_echo(tg.addr(), pki)), T(5),
                     what="a connection after one closed")
        held.append(s)
    finally:
        for s in held:
            s.close()


def test_total_limit_counts_every_listener(serve, pki):
    """Top-level max_connections caps all listeners together; the twin below
    the cap is served on either listener."""
    tg, be = serve(listener(name="a"), listener(name="b"), max_connections=3)
    tg.settle_probes()
    held = [tls_echo(tg.addr("a"), pki), tls_echo(tg.addr("b"), pki), tls_echo(tg.addr("a"), pki)]
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            s = tls_echo(tg.addr("b"), pki)
            s.close()
        ev = tg.wait_event("conn_refused", reason="max_connections_total")[0]
        assert ev["limit"] == "3" and ev["listener"] == "b"
        for s in held:
            s.sendall(b"again\n")
            assert tg_tls.recv_exact(s, 6) == b"again\n"
        held.pop().close()
        s = wait_for(lambda: _try(lambda: tls_echo(tg.addr("b"), pki)), T(5),
                     what="a connection after one closed")
        held.append(s)
    finally:
        for s in held:
            s.close()


def _try(f):
    try:
        return f()
    except (ssl.SSLError, OSError):
        return None


def test_per_client_limit_on_ipv6(serve, pki):
    tg, be = serve(listener(listen="[::1]:auto", max_connections_per_client=1))
    tg.settle_probes()
    first = tls_echo(tg.addr(), pki, source="::1")
    try:
        with pytest.raises((ssl.SSLError, OSError)):
            tls_echo(tg.addr(), pki, source="::1").close()
        ev = tg.wait_event("conn_refused", reason="max_connections_per_client")[0]
        assert ev["client"].startswith("[::1]:"), ev
    finally:
        first.close()


def test_per_client_limit_on_https(hserve, pki):
    tg, be = hserve(https_listener(max_connections_per_client=2))
    tg.settle_probes()
    a, b = Client(tg.addr(), pki), Client(tg.addr(), pki)
    try:
        assert a.request("GET", "/a").status == 200
        assert b.request("GET", "/b").status == 200
        with pytest.raises((ssl.SSLError, OSError)):
            Client(tg.addr(), pki).request("GET", "/c")
        tg.wait_event("conn_refused", reason="max_connections_per_client", limit=2)
        assert a.request("GET", "/a2").status == 200
    finally:
        a.close()
        b.close()


def test_per_client_limit_config_range(tollgate, pki, tmp_path):
    import tg_proc
    cfg = {"target_groups": {"g": tg_proc.group("127.0.0.1:1")},
           "listeners": [listener(max_connections_per_client=-1)]}
    tg = tg_proc.Tollgate(tmp_path / "chk", pki)
    path = tg.write_config(cfg)
    r = tg_proc.run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 1
    assert "max_connections_per_client" in r.stdout + r.stderr


# ---- slowloris ----

def open_slow_hellos(addr, n):
    out = []
    for _ in range(n):
        s = socket.create_connection(addr, timeout=T(10))
        s.sendall(PARTIAL_HELLO)
        out.append(s)
    return out


def open_slow_heads(addr, pki, n):
    """n TLS connections that sent part of a request head."""
    ctx = tg_http.ssl_ctx(pki)
    out = []
    for _ in range(n):
        raw = socket.create_connection(addr, timeout=T(10))
        s = ctx.wrap_socket(raw, server_hostname="localhost")
        s.sendall(PARTIAL_HEAD)
        out.append(s)
    return out


@pytest.mark.slow
def test_slowloris_does_not_stop_a_normal_client(hserve, pki):
    assert raise_nofile(6000) >= 6000
    tg, be = hserve(https_listener(handshake_timeout="2m", header_timeout="2m"))
    wpid = worker_pid(tg)
    slow = []
    try:
        slow += open_slow_hellos(tg.addr(), 1000)
        slow += open_slow_heads(tg.addr(), pki, 1000)
        # All 2,000 are held by the worker (one descriptor each) ...
        assert open_fds(wpid) >= 2000
        # ... and a normal client is still served at once.
        times = [served(tg, pki, T(5)) for _ in range(5)]
        assert min(times) < T(1), times
        assert sorted(times)[2] < T(1), times
        # The slow connections are still open: nothing was dropped to make room.
        assert open_fds(wpid) >= 2000
    finally:
        for s in slow:
            s.close()


def test_slow_clients_are_closed_by_the_timeouts(hserve, pki):
    tg, be = hserve(https_listener(handshake_timeout="1s", header_timeout="1s"))
    hellos = open_slow_hellos(tg.addr(), 20)
    heads = open_slow_heads(tg.addr(), pki, 20)
    try:
        for s in hellos + heads:
            assert closed_by_peer(s, T(5))
        tg.wait_event("tls_handshake_failed", reason="handshake_timeout", count=20)
        # The partial heads got a 408 on the way out.
        assert be.count() == 0
    finally:
        for s in hellos + heads:
            s.close()


# ---- a client that never reads ----

@pytest.mark.slow
def test_client_that_never_reads_does_not_grow_memory(hserve, pki):
    size = 1 << 30  # far more than any buffer: the backend must be paused
    tg, be = hserve(https_listener(),
                    handler=lambda req: tg_http.Reply(200, body_size=size))
    wpid = worker_pid(tg)
    n = 20
    clients = [Client(tg.addr(), pki) for _ in range(n)]
    try:
        base = rss_kib(wpid)
        for c in clients:
            c.send(tg_http.build("GET", "/big", "localhost", (), None))
        be.wait_requests(n)
        samples = []
        deadline = time.monotonic() + T(4)
        while time.monotonic() < deadline:
            samples.append(rss_kib(wpid))
            time.sleep(0.2)
        # Backpressure holds: once the buffers are full nothing grows.
        tail = samples[len(samples) // 2:]
        assert max(tail) - min(tail) < 1024, (base, samples)
        # A connection pins its two buffers and TLS state, never the body.
        # (ASan keeps freed memory in quarantine: only the plateau counts.)
        if not tg_proc.ASAN:
            assert max(samples) - base < n * 256, (base, samples)
        # The streams are paused, not broken: one client reads a while.
        c = clients[0]
        c.r.fill()
        got = 0
        while got < 8 << 20:
            got += len(c.r.buf)
            c.r.buf.clear()
            c.r.fill()
        if not tg_proc.ASAN:
            assert rss_kib(wpid) - base < n * 256 + 4096
    finally:
        for c in clients:
            c.close()


# ---- file-descriptor exhaustion ----

@pytest.mark.slow
def test_fd_exhaustion_refuses_new_keeps_existing_and_recovers(serve, pki):
    tg, be = serve(listener())
    wpid = worker_pid(tg)
    held = [tls_echo(tg.addr(), pki) for _ in range(5)]
    try:
        soft, hard = resource.prlimit(wpid, resource.RLIMIT_NOFILE)
        wait_for(lambda: open_fds(wpid) >= 5 * 2, T(5), what="held connections")
        resource.prlimit(wpid, resource.RLIMIT_NOFILE, (settled_fds(tg, wpid), hard))
        # New connections are refused at once, not left hanging.
        for _ in range(5):
            raw = socket.create_connection(tg.addr(), timeout=T(10))
            try:
                raw.sendall(PARTIAL_HELLO)
            except OSError:
                pass
            assert closed_by_peer(raw, T(3))
            raw.close()
        ev = tg.wait_event("accept_failed")[0]
        assert "Too many open files" in ev["error"]
        # Existing connections carry on.
        for s in held:
            s.sendall(b"still\n")
            assert tg_tls.recv_exact(s, 6) == b"still\n"
        assert tg.alive()
        # Descriptors come back: service resumes without a restart.
        resource.prlimit(wpid, resource.RLIMIT_NOFILE, (soft, hard))
        s = wait_for(lambda: _try(lambda: tls_echo(tg.addr(), pki)), T(5),
                     what="a connection after the limit was raised")
        s.close()
        assert worker_pid(tg) == wpid
    finally:
        for s in held:
            s.close()


def test_fd_exhaustion_on_accept_logs_once_per_pause(serve, pki):
    """The log does not flood: one line per 100 ms pause at most."""
    tg, be = serve(listener())
    wpid = worker_pid(tg)
    soft, hard = resource.prlimit(wpid, resource.RLIMIT_NOFILE)
    resource.prlimit(wpid, resource.RLIMIT_NOFILE, (settled_fds(tg, wpid), hard))
    stop = threading.Event()

    def knock():
        while not stop.is_set():
            try:
                socket.create_connection(tg.addr(), timeout=T(2)).close()
            except OSError:
                pass

    t = threading.Thread(target=knock, daemon=True)
    t0 = time.monotonic()
    t.start()
    try:
        tg.wait_event("accept_failed", count=5)
    finally:
        stop.set()
        t.join(T(5))
        resource.prlimit(wpid, resource.RLIMIT_NOFILE, (soft, hard))
    elapsed = time.monotonic() - t0
    assert len(tg.events("accept_failed")) <= elapsed / 0.1 + 2


# ---- found by fuzz_response_head, fixed in src/http/h1.c ----

@pytest.mark.parametrize("status", [b"20", b"999", b"600"])
def test_backend_status_out_of_range_is_a_502(hserve, pki, status):
    raw = b"HTTP/1.1 " + status + b" X\r\nContent-Length: 2\r\n\r\nok"
    tg, be = hserve(https_listener(), handler=lambda req: tg_http.Reply(raw=raw))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
    assert r.status == 502


# ---- key file permissions ----

def test_check_warns_about_a_world_readable_key(pki, tmp_path):
    import shutil
    import subprocess
    import tg_proc
    key = tmp_path / "server.key"
    shutil.copy(pki.path("server-ecdsa.key"), key)
    os.chmod(key, 0o644)
    cfg = {"certificates": {"site": {"cert": pki.path("server-ecdsa.crt"), "key": str(key)}},
           "target_groups": {"g": tg_proc.group("127.0.0.1:9")},
           "listeners": [listener(certs=("site",))]}
    tg = tg_proc.Tollgate(tmp_path / "chk", pki)
    cfg["certificates"].update({k: v for k, v in pki.certificates().items() if k != "site"})
    path = tg.write_config(cfg)
    r = subprocess.run([tg_proc.TOLLGATE_BIN, "check", "-c", str(path)], capture_output=True,
                       text=True, timeout=T(30))
    assert r.returncode == 0, r.stdout + r.stderr
    warns = [ln for ln in (r.stdout + r.stderr).splitlines()
             if "warning" in ln and "server.key" in ln]
    assert any(re.search(r"readable|permission|mode", ln, re.I) for ln in warns), r.stderr


# ---- found by fuzz_request_head, fixed in src/http/h1.c ----

@pytest.mark.parametrize("line", [b"GET /\n", b"GET /\r\n", b"CONNECT \n"])
def test_request_line_without_version_is_refused(hserve, pki, line):
    tg, be = hserve(https_listener())
    with Client(tg.addr(), pki) as c:
        c.send(line + b"Host: localhost\r\n\r\n")
        try:
            r = c.response()
            status = r.status
        except (EOFError, OSError, ValueError):
            status = None  # closed without an answer: refused too
    assert status in (400, 505, None)
    assert be.reqs() == []


# ---- revocation and resumption (fixed in src/tls/ctx.c) ----

def write_crls(pki, path, revoked_serials=()):
    """A CRL file for our root and intermediate; the intermediate's lists
    revoked_serials."""
    import datetime
    from pathlib import Path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    now = datetime.datetime.now(datetime.timezone.utc)
    out = b""
    for name, serials in (("intermediate", revoked_serials), ("root", ())):
        cert = x509.load_pem_x509_certificate(Path(pki.path(f"{name}.crt")).read_bytes())
        key = serialization.load_pem_private_key(Path(pki.path(f"{name}.key")).read_bytes(),
                                                 password=None)
        b = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
             .last_update(now - datetime.timedelta(minutes=5))
             .next_update(now + datetime.timedelta(days=7)))
        for s in serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(s)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        out += b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(out)
    os.replace(tmp, path)


def test_revoked_client_cannot_resume_after_crl_update(tollgate, backend, pki, tmp_path):
    import signal as sig
    from pathlib import Path
    from cryptography import x509
    import tg_proc
    crl = tmp_path / "clients.crl"
    write_crls(pki, crl)
    be = backend()
    cfg = {"client_cas": {"rv": {"ca": pki.path("root.crt"), "crl": str(crl)}},
           "target_groups": {"g": tg_proc.group(be.address)},
           "listeners": [listener(mode="mutual", client_ca="rv")]}
    tg = tollgate(cfg)
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    ok, detail, _ = tg_tls.attempt(tg.addr(), ctx)
    assert ok, detail
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
    session = info["session"]
    # Twin: before the revocation the session resumes.
    with tg_tls.connect(tg.addr(), ctx, session=session) as s:
        assert s.session_reused
        s.sendall(b"b\n")
        assert tg_tls.recv_exact(s, 2) == b"b\n"
        session = s.session or session
    alice = x509.load_pem_x509_certificate(Path(pki.client("alice")[0]).read_bytes())
    write_crls(pki, crl, revoked_serials=(alice.serial_number,))
    tg.write_config(cfg)
    tg.signal(sig.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    tg.wait_event("ready", generation=2)
    # A full handshake is refused now ...
    ok, detail, _ = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("alice"),
                                                                version="1.3"))
    assert not ok, "the updated CRL was not applied"
    # ... and so must a resumption of the session made before.
    ok, detail, _ = tg_tls.attempt(tg.addr(), ctx, session=session)
    assert not ok, "a revoked client resumed its session"
