"""Target groups: algorithms, active and passive health checks, all targets down.

Backends here say who they are: a line in, their name back (tcp_ssl), or an
HTTP response whose body is their name (https and health checks). Counts
are over a bounded number of connections; tolerances are stated per test.
"""

import os
import signal
import socket
import ssl
import threading
import time

import pytest

import tg_tls
import tg_proc
from tg_proc import AUTO, T, free_port, listener, wait_for

HEALTH_PATH = "/health"


class IdBackend:
    """A backend named `name` on 127.0.0.1:`port` (0 = any free one).

    A connection that starts with an HTTP request line gets one response
    and is closed: `health_status` for HEALTH_PATH, else `status` with the
    name as body. Anything else gets the name and a newline, and is then held
    open until the peer closes it (a long-lived connection)."""

    def __init__(self, name, port=0, health_status=200, status=200, tls_ctx=None):
        self.name = name
        self.tls_ctx = tls_ctx
        self.health_status = health_status
        self.status = status
        self.port = port
        self.lock = threading.Lock()
        self.socks = []
        self.accepted = 0
        self.ls = None
        self.start()

    @property
    def address(self):
        return f"127.0.0.1:{self.port}"

    def start(self):
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("127.0.0.1", self.port))
        ls.listen(256)
        self.port = ls.getsockname()[1]
        self.ls = ls
        threading.Thread(target=self._accept_loop, args=(ls,), daemon=True).start()

    def stop(self):
        """Closes the listening socket and every connection: new connects
        are refused."""
        ls, self.ls = self.ls, None
        if ls is not None:
            try:
                ls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            ls.close()
        with self.lock:
            socks, self.socks = self.socks, []
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept_loop(self, ls):
        while True:
            try:
                s, _ = ls.accept()
            except OSError:
                return
            with self.lock:
                self.socks.append(s)
                self.accepted += 1
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        try:
            s.settimeout(T(60))
            if self.tls_ctx is not None:
                s = self.tls_ctx.wrap_socket(s, server_side=True)
            buf = b""
            while b"\n" not in buf:
                b = s.recv(4096)
                if not b:
                    return
                buf += b
            first = buf.split(b"\n", 1)[0]
            parts = first.split(b" ")
            if len(parts) == 3 and parts[2].startswith(b"HTTP/1."):
                while b"\r\n\r\n" not in buf:
                    b = s.recv(4096)
                    if not b:
                        break
                    buf += b
                path = parts[1].decode("latin-1")
                status = self.health_status if path == HEALTH_PATH else self.status
                body = self.name.encode()
                s.sendall(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                          % (status, len(body), body))
                return
            s.sendall(self.name.encode() + b"\n")
            while s.recv(4096):
                pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                s.close()
            except OSError:
                pass


@pytest.fixture
def ids():
    made = []

    def make(name, **kw):
        b = IdBackend(name, **kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.stop()


def tcp_cfg(groups, algorithm_group="g", **top):
    cfg = {"target_groups": groups, "listeners": [listener(group=algorithm_group)]}
    cfg.update(top)
    return cfg


def https_listener(group="g"):
    return {"name": "main", "protocol": "https", "listen": AUTO,
            "tls": {"mode": "one-way", "certificates": ["ecdsa"]},
            "default_target_group": group, "handshake_timeout": "5s"}


def targets(*pairs):
    """[(backend, weight), ...] -> the targets list of a group."""
    return [{"address": b.address if hasattr(b, "address") else b, "weight": w} for b, w in pairs]


def fast_check(kind="tcp", **kw):
    """Checks every 300ms; the timeout is longer than that so that a busy
    machine does not fail a healthy target (a check still in flight just
    skips a turn)."""
    hc = {"type": kind, "interval": "300ms", "timeout": "1s", "healthy_threshold": 2,
          "unhealthy_threshold": 2}
    if kind in ("http", "https"):
        hc["path"] = HEALTH_PATH
        hc["expect"] = "200-299"
    hc.update(kw)
    return hc


class Client:
    """tcp_ssl connections that read the name of the backend they reached."""

    def __init__(self, tg, pki):
        self.addr = tg.addr("main")
        self.ctx = tg_tls.client_ctx(pki)

    def open(self, source_ip=None):
        """A connected TLS socket and the name of its backend ("" when the
        connection was closed without one)."""
        src = (source_ip, 0) if source_ip else None
        raw = socket.create_connection(self.addr, timeout=T(10), source_address=src)
        try:
            s = self.ctx.wrap_socket(raw, server_hostname="localhost")
        except BaseException:
            raw.close()
            raise
        s.settimeout(T(10))
        try:
            s.sendall(b"hi\n")
            buf = b""
            while not buf.endswith(b"\n"):
                b = s.recv(256)
                if not b:
                    break
                buf += b
        except (OSError, ssl.SSLError):
            buf = b""
        return s, buf.decode().strip()

    def name(self, source_ip=None):
        s, name = self.open(source_ip)
        s.close()
        return name

    def counts(self, n, source_ip=None):
        out = {}
        for _ in range(n):
            name = self.name(source_ip)
            out[name] = out.get(name, 0) + 1
        return out


def https_get(tg, pki, path="/", source_ip=None):
    """(status, body) of one request over a fresh connection."""
    status, _, body = https_request(tg, pki, path, source_ip)
    return status, body


def https_request(tg, pki, path="/", source_ip=None, headers=()):
    """(status, [(name lowercase, value)], body) of one request."""
    ctx = tg_tls.client_ctx(pki)
    src = (source_ip, 0) if source_ip else None
    raw = socket.create_connection(tg.addr("main"), timeout=T(10), source_address=src)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers)
    with ctx.wrap_socket(raw, server_hostname="localhost") as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\n{extra}Connection: close\r\n\r\n"
                  .encode())
        s.settimeout(T(10))
        data = b""
        while True:
            try:
                b = s.recv(65536)
            except (OSError, ssl.SSLError):
                break
            if not b:
                break
            data += b
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1]) if head.startswith(b"HTTP/1.") else 0
    hdrs = []
    for line in head.decode(errors="replace").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        hdrs.append((k.strip().lower(), v.strip()))
    return status, hdrs, body.decode(errors="replace")


def reload(tg, cfg, generation, old_workers=1):
    """SIGHUP with cfg; returns once the new generation is ready and the old
    workers stopped accepting, so that every new connection sees cfg."""
    before = len(tg.events("worker_draining"))
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_ready(generation=generation)
    tg.wait_event("worker_draining", count=before + old_workers)


# ---- algorithms ---------------------------------------------------------------

def test_wrr_weights_and_weight_zero(tollgate, pki, ids):
    """wrr with one worker is exact: 40 connections over weights 3, 1, 0 give
    30, 10 and 0 (tolerance 1 for a connection the readiness probe made)."""
    a, b, c = ids("a"), ids("b"), ids("c")
    tg = tollgate(tcp_cfg({"g": {"algorithm": "wrr", "targets": targets((a, 3), (b, 1), (c, 0))}}))
    got = Client(tg, pki).counts(40)
    assert abs(got.get("a", 0) - 30) <= 1, got
    assert abs(got.get("b", 0) - 10) <= 1, got
    assert "c" not in got and c.accepted == 0, got


def test_least_conn_long_lived(tollgate, pki, ids):
    """Two workers share the counts: 8 connections held open one after the
    other over weights 1, 1, 2 end up exactly 2, 2, 4; when a's close, the
    next two go to a."""
    a, b, c = ids("a"), ids("b"), ids("c")
    tg = tollgate(tcp_cfg({"g": {"algorithm": "least_conn",
                                 "targets": targets((a, 1), (b, 1), (c, 2))}}, workers=2))
    cl = Client(tg, pki)
    held = [cl.open() for _ in range(8)]
    try:
        names = [n for _, n in held]
        assert {n: names.count(n) for n in "abc"} == {"a": 2, "b": 2, "c": 4}, names
        done_before = len(tg.access())
        for s, n in held:
            if n == "a":
                s.close()
        wait_for(lambda: len(tg.access()) >= done_before + 2, T(10), what="a's connections closed")
        more = [cl.open() for _ in range(2)]
        held += more
        assert [n for _, n in more] == ["a", "a"], [n for _, n in more]
    finally:
        for s, _ in held:
            s.close()


def test_least_conn_forgets_a_crashed_worker(tollgate, pki, ids):
    """A worker killed with connections open does not leave them counted:
    after the restart least_conn balances from zero (a leak would send the
    next two connections both to b)."""
    a, b = ids("a"), ids("b")
    tg = tollgate(tcp_cfg({"g": {"algorithm": "least_conn",
                                 "targets": targets((a, 1), (b, 1))}}))
    cl = Client(tg, pki)
    held = [cl.open() for _ in range(4)]
    more = []
    try:
        assert sorted(n for _, n in held) == ["a", "a", "b", "b"]
        done_before = len(tg.access())
        for s, n in held:
            if n == "b":
                s.close()
        wait_for(lambda: len(tg.access()) >= done_before + 2, T(10), what="b's connections closed")
        (pid,) = tg.worker_pids()
        os.kill(pid, signal.SIGKILL)
        tg.wait_event("worker_died", timeout=T(10))
        tg.wait_event("worker_started", count=2, timeout=T(10))
        more = [cl.open() for _ in range(2)]
        assert sorted(n for _, n in more) == ["a", "b"], [n for _, n in more]
    finally:
        for s, _ in held + more:
            s.close()


def _ip(i):
    return f"127.0.{1 + i // 250}.{1 + i % 250}"


def test_ip_hash_weights_and_stability(tollgate, pki, ids):
    """ip_hash over weights 1, 1, 2 and 480 client addresses: shares within
    about 4.5 sigma of 120, 120, 240 (the targets' ports, and so the hashes,
    change from run to run; at 120 clients and 3 sigma one run in a hundred
    failed), while weights ignored would give 160 each; a client keeps its
    target; adding a fifth of the weight moves between 51 and 141 clients
    (expected 96), every one of them to the new target."""
    a, b, c, d = ids("a"), ids("b"), ids("c"), ids("d")
    group = {"algorithm": "ip_hash", "targets": targets((a, 1), (b, 1), (c, 2))}
    cfg = tcp_cfg({"g": group})
    tg = tollgate(cfg)
    cl = Client(tg, pki)
    n = 480
    before = [cl.name(_ip(i)) for i in range(n)]
    counts = {x: before.count(x) for x in "abc"}
    assert abs(counts["a"] - 120) <= 43 and abs(counts["b"] - 120) <= 43, counts
    assert abs(counts["c"] - 240) <= 49, counts
    again = [cl.name(_ip(i)) for i in range(20)]
    assert again == before[:20]

    group["targets"] = targets((a, 1), (b, 1), (c, 2), (d, 1))
    reload(tg, cfg, 2)
    after = [cl.name(_ip(i)) for i in range(n)]
    moved = [(x, y) for x, y in zip(before, after) if x != y]
    assert all(y == "d" for _, y in moved), moved
    assert 51 <= len(moved) <= 141, len(moved)


# ---- active health checks -------------------------------------------------------

def test_health_tcp_down_and_back(tollgate, pki, ids):
    """A target stopped mid-run is marked down within interval x
    unhealthy_threshold (0.6s) plus 3s, gets no new connections, and comes
    back after it restarts."""
    a, b = ids("a"), ids("b")
    tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (b, 1)),
                                 "health_check": fast_check("tcp")}}))
    tg.wait_event("target_up", target=b.address, cause="first_check")
    cl = Client(tg, pki)
    assert set(cl.counts(6)) == {"a", "b"}

    t0 = time.monotonic()
    b.stop()
    ev = tg.wait_event("target_down", target=b.address, timeout=T(10))[0]
    assert time.monotonic() - t0 <= T(0.6 + 3.0)
    assert ev["cause"] == "refused" and ev["target_group"] == "g", ev
    assert cl.counts(10) == {"a": 10}

    b.start()
    tg.wait_event("target_up", target=b.address, cause="passed", timeout=T(10))
    got = cl.counts(10)
    assert abs(got.get("b", 0) - 5) <= 1, got


def test_health_http_status(tollgate, pki, ids):
    """An http check that gets 500 marks the target down (cause status_500);
    once it answers 200 again it is back."""
    a, b = ids("a"), ids("b")
    tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (b, 1)),
                                 "health_check": fast_check("http")}}))
    tg.wait_event("target_up", target=b.address, cause="first_check")
    b.health_status = 500
    ev = tg.wait_event("target_down", target=b.address, timeout=T(10))[0]
    assert ev["cause"] == "status_500" and ev["check"] == "http", ev
    cl = Client(tg, pki)
    assert cl.counts(6) == {"a": 6}
    b.health_status = 204
    tg.wait_event("target_up", target=b.address, cause="passed", timeout=T(10))
    assert "b" in cl.counts(6)


def test_health_timeout(tollgate, pki, ids):
    """A target that accepts but never answers the http check times out."""
    a = ids("a")
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    try:
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (addr, 1)),
                                     "health_check": fast_check("http")}}))
        ev = tg.wait_event("target_down", target=addr, timeout=T(10))[0]
        assert ev["cause"] == "timeout", ev
    finally:
        silent.close()


def _server_ctx(pki):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key"))
    return ctx


@pytest.mark.parametrize("case", ["ok", "wrong_name", "foreign_ca", "no_verify"])
def test_health_https(tollgate, pki, foreign_pki, ids, case):
    """https checks verify the target's certificate against the group's CA
    and name: a good one is up, a wrong name or an unknown CA is down with
    cause tls_error and the verify reason; verify: false accepts any."""
    a = ids("a")
    b = ids("b", tls_ctx=_server_ctx(pki))
    tls = {"ca": "roots", "server_name": "localhost"}
    if case == "wrong_name":
        tls["server_name"] = "other.example"
    elif case == "foreign_ca":
        tls["ca"] = "foreign"
    elif case == "no_verify":
        tls = {"verify": False, "server_name": "other.example"}
    cfg = tcp_cfg({"g": {"targets": targets((a, 1), (b, 1)), "tls": tls,
                         "health_check": fast_check("https")}})
    cfg["client_cas"] = dict(pki.client_cas(), roots={"ca": pki.path("root.crt")},
                             foreign={"ca": foreign_pki.path("root.crt")})
    tg = tollgate(cfg)
    if case in ("ok", "no_verify"):
        ev = tg.wait_event("target_up", target=b.address, timeout=T(10))[0]
        assert ev["check"] == "https", ev
        b.health_status = 503
        ev = tg.wait_event("target_down", target=b.address, timeout=T(10))[0]
        assert ev["cause"] == "status_503", ev
    else:
        ev = tg.wait_event("target_down", target=b.address, timeout=T(10))[0]
        assert ev["cause"] == "tls_error", ev
        if case == "foreign_ca":
            assert ev["detail"] == "unknown_ca", ev
        else:
            assert "mismatch" in ev["detail"].lower(), ev
        assert not tg.events("target_up", target=b.address)


@pytest.mark.filterwarnings("ignore::cryptography.utils.CryptographyDeprecationWarning")
def test_health_https_refuses_a_weak_chain_whatever_the_system_level(tollgate, pki, ids, tmp_path,
                                                                   monkeypatch):
    """https checks verify at security level 2 even when the system's
    OpenSSL configuration lowers the default to 0: a target whose
    certificate is signed with SHA-1 is down (tls_error, bad_signature);
    twin: a normal certificate under the same configuration is up."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import ExtendedKeyUsageOID

    import tg_certs
    conf = tmp_path / "seclevel0.cnf"
    conf.write_text(tg_tls.SECLEVEL0_CONF)
    monkeypatch.setenv("OPENSSL_CONF", str(conf))
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    inter_key = serialization.load_pem_private_key(
        open(pki.path("intermediate.key"), "rb").read(), password=None)
    cert, key = tg_certs.make_cert(tmp_path, "sha1-target", issuer_cert=inter,
                                   issuer_key=inter_key, chain=(inter,),
                                   eku=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=["localhost"],
                                   digest=hashes.SHA1())

    def ctx(c, k):
        x = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        x.set_ciphers("DEFAULT:@SECLEVEL=0")
        x.load_cert_chain(c, k)
        return x

    weak = ids("weak", tls_ctx=ctx(cert, key))
    good = ids("good", tls_ctx=ctx(pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key")))
    cfg = tcp_cfg({"g": {"targets": targets((weak, 1), (good, 1)),
                         "tls": {"ca": "roots", "server_name": "localhost"},
                         "health_check": fast_check("https")}})
    cfg["client_cas"] = dict(pki.client_cas(), roots={"ca": pki.path("root.crt")})
    tg = tollgate(cfg)
    tg.wait_event("target_up", target=good.address, timeout=T(10))
    ev = tg.wait_event("target_down", target=weak.address, timeout=T(10))[0]
    assert ev["cause"] == "tls_error" and ev["detail"] == "bad_signature", ev
    assert not tg.events("target_up", target=weak.address)


def test_reload_keeps_health(tollgate, pki, ids):
    """After SIGHUP a target that stays keeps its state: a down target is
    still down at once, with no new first check."""
    a, b = ids("a"), ids("b")
    group = {"targets": targets((a, 1), (b, 1)), "health_check": fast_check("tcp")}
    cfg = tcp_cfg({"g": group})
    tg = tollgate(cfg)
    tg.wait_event("target_up", target=b.address, cause="first_check")
    b.stop()
    tg.wait_event("target_down", target=b.address, timeout=T(10))
    group["health_check"] = fast_check("tcp", interval="5s", timeout="1s")
    reload(tg, cfg, 2)
    assert Client(tg, pki).counts(6) == {"a": 6}
    ups = tg.events("target_up", target=b.address)
    assert len(ups) == 1 and ups[0]["cause"] == "first_check", ups
    assert len(tg.events("target_down", target=b.address)) == 1


def test_reload_removing_checks_brings_targets_up(tollgate, pki, ids):
    """A target marked down by a check that a reload removes is up again
    (one log line), not stuck down."""
    a, b = ids("a"), ids("b", health_status=500)
    group = {"targets": targets((a, 1), (b, 1)), "health_check": fast_check("http")}
    cfg = tcp_cfg({"g": group})
    tg = tollgate(cfg)
    tg.wait_event("target_down", target=b.address, timeout=T(10))
    cl = Client(tg, pki)
    assert cl.counts(4) == {"a": 4}
    del group["health_check"]
    reload(tg, cfg, 2)
    tg.wait_event("target_up", target=b.address, cause="checks_removed")
    assert cl.counts(4) == {"a": 2, "b": 2}


# ---- passive checks ---------------------------------------------------------------

def test_passive_ejection(tollgate, pki, ids):
    """Two failed connects in a row eject a target for the ejection period:
    in between it is not tried at all, afterwards it is tried again."""
    a = ids("a")
    dead = f"127.0.0.1:{free_port()}"
    tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (dead, 1)),
                                 "passive": {"consecutive_failures": 2, "ejection": "2s"}}}))
    cl = Client(tg, pki)
    assert cl.counts(4) == {"a": 4}  # the dead one fails over to a
    ev = tg.wait_event("target_ejected", target=dead)[0]
    assert ev["cause"] == "connect_failures" and ev["failures"] == "2", ev
    t_eject = time.monotonic()
    fails = len(tg.events("connect_failed", target=dead))
    assert cl.counts(6) == {"a": 6}
    if time.monotonic() - t_eject < 1.5:
        assert len(tg.events("connect_failed", target=dead)) == fails

    def tried_again():
        cl.name()
        return len(tg.events("connect_failed", target=dead)) > fails

    wait_for(tried_again, T(10), interval=0.1, what="the dead target tried after ejection")
    assert time.monotonic() - t_eject >= 1.0


# ---- all targets down ---------------------------------------------------------------

@pytest.mark.parametrize("proto", ["tcp_ssl", "https"])
@pytest.mark.parametrize("mode", ["fail_open", "reject"])
def test_when_all_down(tollgate, pki, ids, proto, mode):
    """Every target fails its health check but still serves: fail_open
    spreads over them anyway; reject closes (tcp_ssl) or answers 503
    (https), with a log line."""
    a = ids("a", health_status=500)
    group = {"targets": targets((a, 1)), "health_check": fast_check("http"),
             "when_all_down": mode}
    cfg = {"target_groups": {"g": group},
           "listeners": [listener() if proto == "tcp_ssl" else https_listener()]}
    tg = tollgate(cfg)
    tg.wait_event("target_down", target=a.address, timeout=T(10))
    if proto == "tcp_ssl":
        got = Client(tg, pki).name()
        assert got == ("a" if mode == "fail_open" else ""), got
    else:
        status, body = https_get(tg, pki)
        assert (status, body) == ((200, "a") if mode == "fail_open" else (503, body)), body
    downs = tg.events("all_targets_down", target_group="g")
    assert len(downs) == (1 if mode == "reject" else 0), downs


def test_weight_zero_drains_on_reload(tollgate, pki, ids):
    """Setting a target's weight to 0 by reload lets its connection finish
    and sends it nothing new."""
    a, b = ids("a"), ids("b")
    group = {"targets": targets((a, 1), (b, 1))}
    cfg = tcp_cfg({"g": group})
    tg = tollgate(cfg)
    cl = Client(tg, pki)
    held = [cl.open() for _ in range(2)]
    try:
        on_b = [s for s, n in held if n == "b"]
        assert len(on_b) == 1, [n for _, n in held]
        group["targets"] = targets((a, 1), (b, 0))
        reload(tg, cfg, 2)
        assert cl.counts(6) == {"a": 6}
        # the old connection to b is still relayed
        on_b[0].sendall(b"more\n")
        on_b[0].close()
        tg.wait_access(lambda r: r.get("target") == b.address, what="b's connection closed")
    finally:
        for s, _ in held:
            s.close()


# ---- persistence ---------------------------------------------------------------------

def test_sticky_source_ip_tcp(tollgate, pki, ids):
    """sticky source_ip over two workers: a client address keeps its target;
    when that target goes down the client moves, and stays where it moved
    once the old one is back."""
    a, b, c = ids("a"), ids("b"), ids("c")
    tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (b, 1), (c, 1)),
                                 "sticky": {"type": "source_ip", "ttl": "1h"},
                                 "health_check": fast_check("tcp")}}, workers=2))
    for x in (a, b, c):
        tg.wait_event("target_up", target=x.address, cause="first_check")
    cl = Client(tg, pki)
    firsts = {}
    for i in range(4):
        ip = f"127.0.3.{i + 1}"
        got = [cl.name(ip) for _ in range(5)]
        assert len(set(got)) == 1 and got[0] in "abc", got
        firsts[ip] = got[0]
    ip = "127.0.3.1"
    stuck = {"a": a, "b": b, "c": c}[firsts[ip]]
    stuck.stop()
    tg.wait_event("target_down", target=stuck.address, timeout=T(10))
    moved = cl.name(ip)
    assert moved not in ("", stuck.name), moved
    stuck.start()
    tg.wait_event("target_up", target=stuck.address, cause="passed", timeout=T(10))
    assert [cl.name(ip) for _ in range(4)] == [moved] * 4


def test_sticky_source_ip_https(tollgate, pki, ids):
    """The same on an https listener: requests from one address all reach
    one target, while wrr without stickiness would alternate."""
    a, b = ids("a"), ids("b")
    cfg = {"target_groups": {"g": {"targets": targets((a, 1), (b, 1)),
                                   "sticky": {"type": "source_ip", "ttl": "1h"}}},
           "listeners": [https_listener()]}
    tg = tollgate(cfg)
    for ip in ("127.0.4.1", "127.0.4.2"):
        got = [https_get(tg, pki, source_ip=ip) for _ in range(4)]
        assert len(set(got)) == 1 and got[0][0] == 200, got


def test_passive_5xx_https(tollgate, pki, ids):
    """With count_5xx, two 5xx responses in a row eject the target: the
    requests after that all reach the healthy one."""
    bad, good = ids("bad", status=500), ids("good")
    cfg = {"target_groups": {"g": {"targets": targets((bad, 1), (good, 1)),
                                   "passive": {"consecutive_failures": 2, "count_5xx": True,
                                               "ejection": "1m"}}},
           "listeners": [https_listener()]}
    tg = tollgate(cfg)
    got = [https_get(tg, pki) for _ in range(4)]
    assert got.count((500, "bad")) == 2, got
    ev = tg.wait_event("target_ejected", target=bad.address)[0]
    assert ev["cause"] == "5xx", ev
    assert [https_get(tg, pki) for _ in range(6)] == [(200, "good")] * 6


def _set_cookie(hdrs, name="sid"):
    vals = [v for k, v in hdrs if k == "set-cookie" and v.startswith(name + "=")]
    assert len(vals) <= 1, vals
    return vals[0].split(";")[0] if vals else None


def test_sticky_cookie_https(tollgate, pki, ids):
    """sticky cookie: the first response sets a signed cookie naming its
    target; requests carrying it reach that target and get no new cookie; a
    forged cookie is ignored and replaced; when the named target is down the
    request goes elsewhere and the cookie is replaced."""
    a, b, c = ids("a"), ids("b"), ids("c")
    cfg = {"target_groups": {"g": {"targets": targets((a, 1), (b, 1), (c, 1)),
                                   "sticky": {"type": "cookie", "ttl": "10m", "name": "sid"},
                                   "health_check": fast_check("tcp")}},
           "listeners": [https_listener()], "workers": 2}
    tg = tollgate(cfg)
    for x in (a, b, c):
        tg.wait_event("target_up", target=x.address, cause="first_check")
    status, hdrs, first = https_request(tg, pki)
    cookie = _set_cookie(hdrs)
    assert status == 200 and cookie, hdrs
    line = [v for k, v in hdrs if k == "set-cookie"][0]
    assert "Max-Age=600" in line and "HttpOnly" in line and "Secure" in line, line
    for _ in range(6):
        status, hdrs, body = https_request(tg, pki, headers=[("Cookie", f"x=1; {cookie}")])
        assert (status, body, _set_cookie(hdrs)) == (200, first, None), hdrs

    name, _, value = cookie.partition("=")
    forged = f"{name}={value[:-1]}{'0' if value[-1] != '0' else '1'}"
    seen = set()
    for _ in range(6):
        status, hdrs, body = https_request(tg, pki, headers=[("Cookie", forged)])
        assert status == 200 and _set_cookie(hdrs), hdrs
        seen.add(body)
    assert len(seen) >= 2, seen  # balanced, not pinned

    stuck = {"a": a, "b": b, "c": c}[first]
    stuck.stop()
    tg.wait_event("target_down", target=stuck.address, timeout=T(10))
    status, hdrs, body = https_request(tg, pki, headers=[("Cookie", cookie)])
    new_cookie = _set_cookie(hdrs)
    assert status == 200 and body != first and new_cookie and new_cookie != cookie, hdrs
    stuck.start()
    tg.wait_event("target_up", target=stuck.address, cause="passed", timeout=T(10))
    for _ in range(3):
        status, hdrs, again = https_request(tg, pki, headers=[("Cookie", new_cookie)])
        assert (status, again, _set_cookie(hdrs)) == (200, body, None), hdrs


def test_sticky_cookie_group_on_tcp_ssl(tollgate, pki, ids):
    """tcp_ssl has no cookies: a cookie group sticks by source address."""
    a, b = ids("a"), ids("b")
    tg = tollgate(tcp_cfg({"g": {"targets": targets((a, 1), (b, 1)),
                                 "sticky": {"type": "cookie"}}}))
    got = [Client(tg, pki).name("127.0.5.9") for _ in range(5)]
    assert len(set(got)) == 1, got


# ---- tollgate check ---------------------------------------------------------------

def test_check_warns_about_what_is_not_implemented(tmp_path, pki):
    """tollgate check loads a group tls block (in effect for tcp_ssl too: no
    warning) and more than 64 targets, and says what has no effect; a group
    without them gets no warning."""
    many = [{"address": f"127.0.0.1:{20000 + i}"} for i in range(65)]
    cfg = {"target_groups": {"g": {"targets": many, "tls": {"server_name": "x.example"}},
                             "h": {"targets": [{"address": "127.0.0.1:1"}]}},
           "listeners": [listener(group="g")]}
    path = tg_proc.Tollgate(tmp_path / "chk", pki).write_config(cfg)
    r = tg_proc.run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert "target_groups.g.tls" not in r.stderr, r.stderr
    assert "target_groups.g.targets: 65 targets: only the first 64 get traffic" in r.stderr
    assert "target_groups.h" not in r.stderr
