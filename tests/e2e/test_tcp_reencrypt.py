"""tcp_ssl listeners whose target group has a tls block: tollgate re-encrypts
to the targets. After the connect comes a TLS handshake with the target
(the same checks as for https: trust, dates, name); a refused certificate is
a failed connect (one backend_tls_failed line, the next target, and the
client's connection closed when none is left), and no client byte reaches a
target before its certificate passed. The relay then moves bytes between the
client's TLS and the target's, half-close included. A PROXY header goes out
in clear before the target's TLS handshake, as HAProxy and nginx send it.

The targets here are TLS servers over memory BIOs, so that every raw byte
they receive is seen: the client's bytes must never appear in clear."""

import asyncio
import datetime
import hashlib
import socket
import ssl
import struct
import threading
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID

import tg_certs
import tg_proxyproto as pp
import tg_tls
from tg_proc import T, listener, wait_for

DAY = datetime.timedelta(days=1)
MiB = 1 << 20
RAW_KEEP = 1 << 20  # raw bytes kept per target connection


class TConn:
    """One connection as the target saw it."""

    def __init__(self):
        self.raw = bytearray()     # the first RAW_KEEP bytes received, as they came
        self.proxy = None          # ProxyHeader read before the TLS handshake
        self.handshake = None      # True, or the error text of a refused one
        self.reused = None         # session_reused after the handshake
        self.data = bytearray()    # the first 64 KiB of payload
        self.nbytes = 0
        self.sha = hashlib.sha256()
        self.end = None            # "close_notify" | "eof"
        self.done = threading.Event()


class TlsTarget:
    """A TLS echo server on a free loopback port, one thread per connection.
    proxy: read a PROXY header in clear before the handshake. on_eof: sent
    (then close_notify) once the peer ended its stream; otherwise every
    payload byte is echoed."""

    def __init__(self, cert, key, proxy=False, on_eof=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.proxy = proxy
        self.on_eof = on_eof
        self.conns = []
        self.lock = threading.Lock()
        self.ls = socket.socket()
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(64)
        self.address = f"127.0.0.1:{self.ls.getsockname()[1]}"
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def snapshot(self):
        with self.lock:
            return list(self.conns)

    def wait_conns(self, n, timeout=None):
        return wait_for(lambda: (lambda cs: cs if len(cs) >= n else None)(self.snapshot()),
                        timeout or T(10), what=f"{n} target connections")

    def wait_done(self, n, timeout=None):
        cs = self.wait_conns(n, timeout)
        for c in cs[:n]:
            assert c.done.wait(timeout or T(10)), "a target connection did not finish"
        return cs

    def close(self):
        self.closing = True
        try:
            self.ls.close()
        except OSError:
            pass

    def _accept(self):
        while not self.closing:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            rec = TConn()
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self._serve, args=(s, rec), daemon=True).start()

    def _serve(self, sock, rec):
        sock.settimeout(T(30))
        try:
            self._run(sock, rec)
        except (OSError, ssl.SSLError, ConnectionError, pp.ProxyError) as e:
            if rec.handshake is None:
                rec.handshake = f"{type(e).__name__}: {e}"
        finally:
            sock.close()
            rec.done.set()

    def _run(self, sock, rec):
        def recv_raw():
            b = sock.recv(65536)
            room = RAW_KEEP - len(rec.raw)
            if room > 0:
                rec.raw += b[:room]
            return b

        pending = b""
        if self.proxy:
            buf = bytearray()
            while True:
                n = pp.needed(buf)
                if n is not None and len(buf) >= n:
                    break
                b = recv_raw()
                if not b:
                    raise ConnectionError("EOF before the PROXY header was whole")
                buf += b
            rec.proxy = pp.parse(buf[:n])
            pending = bytes(buf[n:])
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)
        inc.write(pending)

        def flush():
            d = out.read()
            if d:
                sock.sendall(d)

        def fill():
            b = recv_raw()
            if not b:
                inc.write_eof()
                return False
            inc.write(b)
            return True

        while True:
            try:
                obj.do_handshake()
                flush()
                break
            except ssl.SSLWantReadError:
                flush()
                if not fill():
                    raise ConnectionError("EOF during the handshake")
            except ssl.SSLError:
                flush()  # the alert
                raise
        rec.handshake = True
        rec.reused = obj.session_reused

        def read():
            while True:
                try:
                    b = obj.read(65536)
                    if not b:
                        rec.end = "close_notify"
                    return b
                except ssl.SSLWantReadError:
                    flush()
                    fill()
                except ssl.SSLZeroReturnError:
                    rec.end = "close_notify"
                    return b""
                except ssl.SSLEOFError:
                    rec.end = "eof"
                    return b""

        while True:
            b = read()
            if not b:
                break
            rec.nbytes += len(b)
            rec.sha.update(b)
            room = 65536 - len(rec.data)
            if room > 0:
                rec.data += b[:room]
            if self.on_eof is None:
                obj.write(b)
                flush()
        if self.on_eof is not None:
            obj.write(self.on_eof)
        try:
            obj.unwrap()  # close_notify
        except (ssl.SSLWantReadError, ssl.SSLError):
            pass
        flush()


@pytest.fixture
def targets():
    made = []

    def make(cert, key, **kw):
        t = TlsTarget(cert, key, **kw)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


def _issuer(pki):
    cert = tg_certs.load_cert(pki.path("intermediate.crt"))
    key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    return cert, key


def expired_cert(pki, out_dir):
    """A server certificate for localhost and 127.0.0.1 from the PKI's
    intermediate, expired yesterday."""
    inter, inter_key = _issuer(pki)
    now = datetime.datetime.now(datetime.timezone.utc)
    return tg_certs.make_cert(out_dir, "expired-server", issuer_cert=inter, issuer_key=inter_key,
                              chain=(inter,), eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                              sans=["localhost"], not_before=now - 30 * DAY,
                              not_after=now - DAY)


def good(pki):
    return pki.path("server-ecdsa.crt"), pki.path("server-ecdsa.key")


def start(tollgate, addresses, tls, **listener_kw):
    listener_kw.setdefault("connect_timeout", "5s")
    cfg = {"target_groups": {"g": {"targets": [{"address": a} for a in addresses], "tls": tls}},
           "listeners": [listener(**listener_kw)]}
    return tollgate(cfg)


VERIFIED = {"ca": "pki", "server_name": "localhost"}


# ---- the relay over TLS ----

def test_roundtrip_both_ways_encrypted(tollgate, pki, targets):
    """verify on: bytes go to the target and come back through two TLS
    connections; on the wire to the target they are never in clear."""
    t = targets(*good(pki))
    tg = start(tollgate, [t.address], VERIFIED)
    payload = b"tcp_ssl re-encrypted, marker 7f3a9c\n" * 20
    got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), payload)
    assert got == payload
    c = t.wait_done(1)[0]
    assert c.handshake is True, c.handshake
    assert bytes(c.data) == payload and c.proxy is None
    assert c.raw[:1] == b"\x16", "the target's first byte must be a TLS handshake record"
    assert b"marker 7f3a9c" not in c.raw, "client bytes reached the target in clear"
    rec = tg.access_for(info["local"][1])
    assert rec["outcome"] == "ok" and rec["bytes_in"] == len(payload), rec
    assert rec["bytes_out"] == len(payload), rec
    assert tg.events("backend_tls_failed") == []


def test_group_without_tls_twin_sends_clear_bytes(tollgate, pki, targets):
    """Twin: the same target behind a group without tls gets the client's
    bytes in clear (what the test above must not find), and no handshake."""
    t = targets(*good(pki))
    tg = tollgate({"target_groups": {"g": {"targets": [{"address": t.address}]}},
                   "listeners": [listener()]})
    ok, detail, _ = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki),
                                   payload=b"marker 7f3a9c\n")
    assert not ok, detail
    c = t.wait_done(1)[0]
    assert c.handshake is not True
    assert b"marker 7f3a9c" in c.raw


CHUNK = 256 * 1024


async def _bulk(addr, ctx, total, timeout):
    r, w = await asyncio.wait_for(
        asyncio.open_connection(addr[0], addr[1], ssl=ctx, server_hostname="localhost",
                                limit=4 * MiB), T(10))
    sent, got = hashlib.sha256(), hashlib.sha256()

    async def writer():
        for i in range(total // CHUNK):
            data = struct.pack(">Q", i) + hashlib.sha256(str(i).encode()).digest() * (
                (CHUNK - 8) // 32)
            data = data.ljust(CHUNK, b"\0")
            sent.update(data)
            w.write(data)
            await w.drain()

    async def reader():
        n = 0
        while n < total:
            b = await r.read(4 * MiB)
            if not b:
                break
            got.update(b)
            n += len(b)
        return n

    try:
        _, n = await asyncio.wait_for(asyncio.gather(writer(), reader()), timeout)
    finally:
        w.close()
        try:
            await asyncio.wait_for(w.wait_closed(), 5)
        except (asyncio.TimeoutError, OSError, ssl.SSLError):
            pass
    return n, sent.hexdigest(), got.hexdigest()


def test_large_transfer_integrity(tollgate, pki, targets):
    """8 MiB each way at once through both TLS connections: the SHA-256 of
    what the client sent, what the target got and what came back agree."""
    total = 8 * MiB
    t = targets(*good(pki))
    tg = start(tollgate, [t.address], VERIFIED, idle_timeout="30s")
    n, sent, got = asyncio.run(_bulk(tg.addr(), tg_tls.client_ctx(pki), total, T(60)))
    assert n == total, f"echoed {n} of {total} bytes"
    assert got == sent, "SHA-256 of the echoed stream differs from what was sent"
    c = t.wait_done(1, T(20))[0]
    assert c.nbytes == total and c.sha.hexdigest() == sent
    rec = tg.wait_access(lambda r: r["bytes_in"] > 0)[0]
    assert rec["bytes_in"] == total and rec["bytes_out"] == total, rec


def test_half_close_both_ways(tollgate, pki, targets):
    """The client's close_notify becomes a close_notify toward the target,
    which can still answer; its answer and its close_notify reach the
    client."""
    t = targets(*good(pki), on_eof=b"answer after the end\n")
    tg = start(tollgate, [t.address], VERIFIED)
    c = tg_tls.MemTLS(tg.addr(), tg_tls.client_ctx(pki))
    try:
        c.handshake()
        c.send(b"request\n")
        tc = t.wait_conns(1)[0]
        wait_for(lambda: tc.nbytes >= 8, T(5), what="the request at the target")
        assert tc.end is None, "the target saw the end before the client sent it"
        c.shutdown_write()
        wait_for(lambda: tc.end, T(5), what="the end of the stream at the target")
        assert tc.end == "close_notify", tc.end
        assert c.read_all() == b"answer after the end\n"
        assert c.closed_by_peer == "close_notify", c.closed_by_peer
        assert bytes(tc.data) == b"request\n"
    finally:
        c.close()


def test_session_reuse_toward_the_target(tollgate, pki, targets):
    """The second and later connections resume the TLS session with the
    target; the first (its twin) makes a full handshake."""
    t = targets(*good(pki))
    tg = start(tollgate, [t.address], VERIFIED)
    for i in range(3):
        payload = f"conn {i}\n".encode()
        got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), payload)
        assert got == payload
        t.wait_done(i + 1)
    cs = t.snapshot()
    assert [c.handshake for c in cs] == [True] * 3
    assert [c.reused for c in cs] == [False, True, True], [c.reused for c in cs]


# ---- refused targets ----

def _refused_case(case, pki, foreign_pki, tmp_path):
    if case == "expired":
        return expired_cert(pki, tmp_path), VERIFIED, "cert_expired"
    if case == "wrong_name":
        return good(pki), {"ca": "pki", "server_name": "other.example"}, "name_mismatch"
    return ((foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key")),
            VERIFIED, "unknown_ca")


@pytest.mark.parametrize("case", ["expired", "wrong_name", "unknown_ca"])
def test_refused_target_closes_the_client(tollgate, pki, foreign_pki, targets, tmp_path, case):
    """One target with a bad certificate: the client's connection is closed
    without a byte, one backend_tls_failed line gives the reason, and the
    target got nothing but the handshake."""
    (cert, key), tls, reason = _refused_case(case, pki, foreign_pki, tmp_path)
    t = targets(cert, key)
    tg = start(tollgate, [t.address], tls)
    ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki),
                                      payload=b"secret 5be2d1 must stay home\n")
    assert not ok, detail
    ev = tg.wait_event("backend_tls_failed")
    assert len(ev) == 1 and ev[0]["reason"] == reason, ev
    assert ev[0]["target"] == t.address and ev[0]["target_group"] == "g", ev[0]
    c = t.wait_done(1)[0]
    assert c.handshake is not True, "the target completed a handshake tollgate refused"
    assert c.nbytes == 0 and b"5be2d1" not in c.raw
    rec = tg.access_for(port)
    assert rec["outcome"] == "backend_tls_failed", rec
    assert rec["bytes_in"] == 0 and rec["bytes_out"] == 0, rec


@pytest.mark.parametrize("case", ["expired", "wrong_name", "unknown_ca"])
def test_no_verify_accepts_the_refused_certificate(tollgate, pki, foreign_pki, targets, tmp_path,
                                                   case):
    """Twin of the refusals: verify false takes the same certificate."""
    (cert, key), tls, _ = _refused_case(case, pki, foreign_pki, tmp_path)
    t = targets(cert, key)
    tg = start(tollgate, [t.address], dict(tls, verify=False))
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"accepted\n")
    assert got == b"accepted\n"
    assert t.wait_done(1)[0].handshake is True
    assert tg.events("backend_tls_failed") == []


def test_bad_target_is_skipped(tollgate, pki, foreign_pki, targets):
    """Two targets, the first with a certificate from an unknown CA: every
    connection ends up at the good one."""
    bad = targets(foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key"))
    ok = targets(*good(pki))
    tg = start(tollgate, [bad.address, ok.address], VERIFIED)
    for i in range(4):
        payload = f"to the good one {i}\n".encode()
        got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), payload)
        assert got == payload
    assert len(ok.wait_done(4)) == 4
    assert all(c.handshake is not True and c.nbytes == 0 for c in bad.snapshot())
    ev = tg.wait_event("backend_tls_failed")
    assert all(e["reason"] == "unknown_ca" and e["target"] == bad.address for e in ev), ev


def test_handshake_timeout(tollgate, pki):
    """A target that accepts but never answers the ClientHello: after
    connect_timeout, handshake_timeout and the client's connection closed."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    ls.listen(8)
    try:
        addr = f"127.0.0.1:{ls.getsockname()[1]}"
        tg = start(tollgate, [addr], VERIFIED, connect_timeout="1s")
        t0 = time.monotonic()
        ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki))
        assert not ok, detail
        assert time.monotonic() - t0 >= 0.9
        ev = tg.wait_event("backend_tls_failed")
        assert [e["reason"] for e in ev] == ["handshake_timeout"], ev
        assert tg.access_for(port)["outcome"] == "backend_tls_failed"
    finally:
        ls.close()


# ---- PROXY protocol ----

@pytest.mark.parametrize("version", ["v1", "v2"])
def test_proxy_header_in_clear_before_the_handshake(tollgate, pki, targets, version):
    """The PROXY header is the first thing on the target's connection, in
    clear; the TLS handshake follows it and the client's bytes are inside
    TLS."""
    t = targets(*good(pki), proxy=True)
    tg = start(tollgate, [t.address], VERIFIED, proxy=version)
    ctx = tg_tls.client_ctx(pki)
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"after the header 41c0\n")
    assert got == b"after the header 41c0\n"
    c = t.wait_done(1)[0]
    assert c.handshake is True, c.handshake
    h = c.proxy
    assert h.version == (1 if version == "v1" else 2)
    assert h.src == ("127.0.0.1", info["local"][1])
    assert h.dst == ("127.0.0.1", tg.addr()[1])
    assert c.raw.startswith(h.raw) and c.raw[len(h.raw):len(h.raw) + 1] == b"\x16"
    assert b"41c0" not in c.raw
    if version == "v2":
        assert h.tlv(pp.PP2_TYPE_AUTHORITY) == b"localhost"
        assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_VERSION) == info["version"].encode()


def test_no_proxy_header_twin(tollgate, pki, targets):
    """Twin: proxy_protocol none: the target's first bytes are the
    ClientHello."""
    t = targets(*good(pki))
    tg = start(tollgate, [t.address], VERIFIED, proxy="none")
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"x\n")
    assert got == b"x\n"
    c = t.wait_done(1)[0]
    assert c.raw[:1] == b"\x16" and not c.raw.startswith(b"PROXY")
    assert not c.raw.startswith(pp.V2_SIG)


def test_proxy_header_to_each_target_tried(tollgate, pki, foreign_pki, targets):
    """A refused first target: the next one gets its own whole PROXY header
    (nothing left over from the first attempt) and the relay works."""
    bad = targets(foreign_pki.path("server-ecdsa.crt"), foreign_pki.path("server-ecdsa.key"),
                  proxy=True)
    ok = targets(*good(pki), proxy=True)
    tg = start(tollgate, [bad.address, ok.address], VERIFIED, proxy="v2")
    ports = []
    for i in range(2):  # round robin: one of them tries the bad target first
        got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"second try\n")
        assert got == b"second try\n"
        ports.append(info["local"][1])
    cs = ok.wait_done(2)
    assert sorted(c.proxy.src[1] for c in cs) == sorted(ports)
    assert all(c.handshake is True and bytes(c.data) == b"second try\n" for c in cs)
    assert all(c.proxy is not None for c in bad.wait_done(1))
    assert tg.wait_event("backend_tls_failed")[0]["reason"] == "unknown_ca"
