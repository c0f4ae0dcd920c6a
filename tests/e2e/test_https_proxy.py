"""https proxying: keep-alive on both sides, pipelining, streamed bodies,
bodiless responses, 100-continue, WebSocket tunnel, other upgrades, backend
failures (502/503/504, retry, recovery) and many requests at once."""

import hashlib
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest

import tg_http
from tg_http import Client, Reply, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, group, wait_for


# ---- keep-alive ----

def test_keepalive_reuse_both_sides(hserve, pki):
    tg, be = hserve()
    n = 20
    with Client(tg.addr(), pki) as c:
        for i in range(n):
            r = c.request("GET", f"/k{i}")
            assert r.status == 200 and r.json()["target"] == f"/k{i}"
        port = c.port
    assert be.count() == 1, f"{be.count()} backend connections for {n} requests"
    assert [q.conn_no for q in be.reqs()] == [1] * n
    recs = tg.wait_access(lambda r: r["client"].endswith(f":{port}"), count=n)
    assert len({r["conn"] for r in recs}) == 1
    # a second client connection reuses the pooled backend connection
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/again").status == 200
    assert be.count() == 1


def test_connection_close_from_client_is_honoured(hserve, pki):
    """Twin: a client that says Connection: close gets its answer and the
    connection ends; the backend connection is still pooled."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/x", headers=[("Connection", "close")])
        assert r.status == 200 and r.get("Connection", "").lower() == "close"
        assert c.closed_by_peer(T(10))
    assert be.reqs()[0].all("Connection") in ([], ["keep-alive"])
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/y").status == 200
    assert be.count() == 1


def test_backend_connection_close_not_reused(hserve, pki):
    """Twin: a backend that closes after each response gets a new
    connection per request, and the client keeps its connection."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"ok", close=True))
    with Client(tg.addr(), pki) as c:
        for i in range(3):
            r = c.request("GET", f"/{i}")
            assert r.status == 200 and r.body == b"ok"
            assert r.get("Connection", "").lower() != "close"
    assert be.count() == 3


def test_http10_client_gets_close(hserve, pki):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(b"GET /old HTTP/1.0\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert c.closed_by_peer(T(10))
    assert be.reqs()[0].version == "HTTP/1.0"


def test_pipelining_answered_in_order(hserve, pki):
    def slow_first(req):
        return Reply(200, body=req.target.encode(), delay=0.3 if req.target == "/p0" else 0)
    tg, be = hserve(handler=slow_first)
    with Client(tg.addr(), pki) as c:
        batch = b"".join(tg_http.build("GET", f"/p{i}") for i in range(10))
        batch += tg_http.build("POST", "/p10", body=b"body of ten")
        batch += tg_http.build("GET", "/p11")
        c.send(batch)
        got = [c.response().body for _ in range(12)]
    assert got == [f"/p{i}".encode() for i in range(12)]
    assert [q.target for q in be.reqs()] == [f"/p{i}" for i in range(12)]
    assert be.reqs()[10].body_len == len(b"body of ten")


def test_pipelined_request_after_refusal_not_forwarded(hserve, pki):
    """Twin: a refused request closes the connection; what was pipelined
    after it is never forwarded."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(tg_http.build("GET", "/ok") + b"GET / HTTP/1.1\r\n\r\n" +
               tg_http.build("GET", "/after"))
        assert c.response().status == 200
        assert c.response().status == 400
        assert c.closed_by_peer(T(10))
        port = c.port
    assert [q.target for q in be.reqs()] == ["/ok"]
    recs = tg.wait_access(lambda r: r["client"].endswith(f":{port}"), count=2)
    assert [(r["status"], r["path"], r["request"]) for r in recs] == [(200, "/ok", 1), (400, "", 2)]
    assert recs[1]["target"] == "" and recs[1]["outcome"] == "http_error"


# ---- bodies ----

MIB = 1 << 20


@pytest.mark.slow
def test_50mib_chunked_upload(hserve, pki):
    tg, be = hserve()
    total = 50 * MIB
    want = tg_http.pattern_sha256(total)
    t0 = time.monotonic()
    with Client(tg.addr(), pki, timeout=T(60)) as c:
        c.send(b"PUT /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        for piece in tg_http.pattern_chunks(total, 256 * 1024):
            c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.response()
    assert r.status == 200, r.body
    d = r.json()
    assert d["body_len"] == total and d["body_sha256"] == want
    req = be.reqs()[0]
    assert req.chunked, "the chunked framing was not kept"
    assert time.monotonic() - t0 < T(120)


@pytest.mark.slow
def test_50mib_download_streamed(hserve, pki):
    total = 50 * MIB
    tg, be = hserve(handler=lambda req: Reply(200, body_size=total,
                                              chunked=req.target == "/chunked"))
    want = tg_http.pattern_sha256(total)
    for target in ("/length", "/chunked"):
        h = hashlib.sha256()
        n = [0]

        def sink(b):
            h.update(b)
            n[0] += len(b)
        t0 = time.monotonic()
        with Client(tg.addr(), pki, timeout=T(60)) as c:
            c.send(tg_http.build("GET", target))
            resp = c.response(sink=sink)
            assert resp.status == 200
            if target == "/chunked":
                assert resp.get("Transfer-Encoding", "").lower() == "chunked"
            else:
                assert resp.get("Content-Length") == str(total)
            # the connection still works after a large body
            assert c.request("HEAD", "/length").status == 200
        assert n[0] == total and h.hexdigest() == want, target
        assert time.monotonic() - t0 < T(120)


def test_download_with_curl_sha256(hserve, pki, tmp_path):
    total = 5 * MIB + 123
    tg, be = hserve(handler=lambda req: Reply(200, body_size=total, chunked=True))
    port = tg.addr()[1]
    out = tmp_path / "dl.bin"
    p = subprocess.run(["curl", "-sS", "--cacert", pki.path("root.crt"), "-o", str(out),
                        "--resolve", f"localhost:{port}:127.0.0.1",
                        f"https://localhost:{port}/file"], capture_output=True, text=True,
                       timeout=T(60))
    assert p.returncode == 0, p.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == tg_http.pattern_sha256(total)


def test_upload_with_curl_sha256(hserve, pki, tmp_path):
    tg, be = hserve()
    data = os.urandom(3 * MIB + 7)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    port = tg.addr()[1]
    p = subprocess.run(["curl", "-sS", "--cacert", pki.path("root.crt"), "-T", str(f),
                        "-H", "Transfer-Encoding: chunked",
                        "--resolve", f"localhost:{port}:127.0.0.1",
                        f"https://localhost:{port}/up"], capture_output=True, text=True,
                       timeout=T(60))
    assert p.returncode == 0, p.stderr
    req = be.reqs()[0]
    assert req.body_len == len(data) and req.body_digest() == hashlib.sha256(data).hexdigest()


def test_response_delimited_by_close(hserve, pki):
    """A response without length is read to EOF and passed on with close."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    tg, be = hserve(handler=lambda req: Reply(raw=raw, close=True))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == b"until the end"
        assert c.closed_by_peer(T(10))


# ---- bodiless responses ----

def test_head_204_304_have_no_body(hserve, pki):
    def handle(req):
        if req.target == "/204":
            return Reply(204, headers=[("X-A", "1")])
        if req.target == "/304":
            return Reply(304, headers=[("ETag", '"v1"'), ("Content-Length", "1000")],
                         length=False)
        return Reply(200, body=b"twelve bytes")
    tg, be = hserve(handler=handle)
    with Client(tg.addr(), pki) as c:
        r = c.request("HEAD", "/head")
        assert r.status == 200 and r.get("Content-Length") == "12"
        r = c.request("GET", "/204")
        assert r.status == 204 and r.get("X-A") == "1"
        r = c.request("GET", "/304", headers=[("If-None-Match", '"v1"')])
        assert r.status == 304 and r.get("ETag") == '"v1"'
        # the twin proves nothing was left over: the next response parses
        r = c.request("GET", "/get")
        assert r.status == 200 and r.body == b"twelve bytes"
        c.sock.settimeout(0.5)
        try:
            extra = c.sock.recv(1)
        except (socket.timeout, TimeoutError):
            extra = b""
        assert extra == b"" and not c.r.buf
    assert be.count() == 1


def test_interim_1xx_passed_on(hserve, pki):
    tg, be = hserve(handler=lambda req: Reply(200, body=b"final", interim=(103,)))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
        assert r.interim == [103] and r.status == 200 and r.body == b"final"
        assert c.request("GET", "/2").body == b"final"


def test_expect_100_continue(hserve, pki):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")
        line = c.r.line()
        assert line.startswith(b"HTTP/1.1 100"), line
        assert c.r.line() == b"\r\n"
        c.send(b"hello")
        r = c.response()
        assert r.status == 200 and r.json()["body_len"] == 5
    assert be.reqs()[0].get("Expect") == "100-continue"


def test_expect_100_continue_with_curl(hserve, pki, tmp_path):
    tg, be = hserve()
    f = tmp_path / "b.bin"
    f.write_bytes(b"z" * 200000)
    port = tg.addr()[1]
    p = subprocess.run(["curl", "-sS", "--cacert", pki.path("root.crt"), "--data-binary",
                        f"@{f}", "-H", "Expect: 100-continue", "-w", "%{http_code}", "-o",
                        "/dev/null", "--resolve", f"localhost:{port}:127.0.0.1",
                        f"https://localhost:{port}/x"], capture_output=True, text=True,
                       timeout=T(30))
    assert p.stdout == "200", p.stderr
    assert be.reqs()[0].body_len == 200000


def test_expect_refused_by_backend(hserve, pki):
    """Twin: a backend that answers at once without 100 (417 or a final
    answer) gets that answer to the client, the body is not required."""
    tg, be = hserve(handler=lambda req: Reply(417, body=b"no", close=True))
    be.continue_100 = False
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /e HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n"
               b"Expect: 100-continue\r\n\r\n")
        r = c.response()
        assert r.status == 417


# ---- upgrades ----

def ws_handshake(c, proto="websocket"):
    c.send(b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: " + proto.encode() +
           b"\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n\r\n")
    return c.response()


def test_websocket_echo_through_tunnel(hserve, pki):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        r = ws_handshake(c)
        assert r.status == 101
        assert r.get("Sec-WebSocket-Accept") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        assert r.get("Upgrade", "").lower() == "websocket"
        for msg in (b"hello", b"x" * 70000, "h\u00e9".encode()):
            c.send(tg_http.ws_frame(1, msg))
            op, payload = tg_http.ws_read_frame(c.r, expect_mask=False)
            assert op == 1 and payload == msg
        c.send(tg_http.ws_frame(8, b"\x03\xe8"))
        op, _ = tg_http.ws_read_frame(c.r, expect_mask=False)
        assert op == 8
        assert c.closed_by_peer(T(10))
    req = be.reqs()[0]
    assert req.get("Upgrade") == "websocket"
    assert "upgrade" in req.get("Connection", "").lower()
    assert req.get("X-Forwarded-For") == "127.0.0.1"


def test_websocket_backend_refuses_upgrade(hserve, pki):
    """Twin: a backend that answers 200 instead of 101 gives a normal
    response; no tunnel."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"no ws here"))
    be_ws = be._websocket
    be._websocket = lambda s, r, req: s.sendall(b"HTTP/1.1 400 Bad Request\r\n"
                                                b"Content-Length: 5\r\n\r\nno ws")
    with Client(tg.addr(), pki) as c:
        r = ws_handshake(c)
        assert r.status == 400 and r.body == b"no ws"
    be._websocket = be_ws


def test_other_upgrade_is_not_a_tunnel(hserve, pki):
    """An Upgrade other than websocket (h2c, TLS/1.2...) is hop-by-hop: it is
    removed and the request proxied as a plain one; a backend that still
    answers 101 gets a 502."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(b"GET /h2c HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\n"
               b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
        r = c.response()
        assert r.status == 200
        assert c.request("GET", "/after").status == 200
    req = be.reqs()[0]
    assert req.all("Upgrade") == [], "a non-websocket Upgrade reached the backend"
    assert req.all("HTTP2-Settings") == []
    assert "upgrade" not in req.get("Connection", "").lower()
    assert [q.target for q in be.reqs()] == ["/h2c", "/after"]


def test_unasked_101_is_502(hserve, pki):
    raw = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n"
    tg, be = hserve(handler=lambda req: Reply(raw=raw))
    with Client(tg.addr(), pki) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n")
        assert c.response().status == 502


# ---- backend failures ----

def test_target_down_502_or_503_then_recovery(tollgate, hbackend, pki):
    port = tg_http_free_port()
    tg = tollgate({"target_groups": {"g": group(f"127.0.0.1:{port}")},
                   "listeners": [https_listener(connect_timeout="2s")]})
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
    assert r.status in (502, 503)
    assert "127.0.0.1" not in r.body.decode() and str(port) not in r.body.decode()
    be = tg_http.HttpBackend(port=port)
    try:
        def ok():
            with Client(tg.addr(), pki) as c:
                return c.request("GET", "/back").status == 200
        wait_for(ok, T(30), interval=0.3, what="recovery after the target came back")
        assert be.reqs()[-1].target == "/back"
    finally:
        be.close()


def tg_http_free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def test_failover_to_next_target(tollgate, hbackend, pki):
    be = hbackend()
    dead = tg_http_free_port()
    tg = tollgate({"target_groups": {"g": group(f"127.0.0.1:{dead}", be.address)},
                   "listeners": [https_listener()]})
    for i in range(4):
        with Client(tg.addr(), pki) as c:
            assert c.request("GET", f"/{i}").status == 200
    assert len(be.reqs()) == 4


def test_invalid_response_502(hserve, pki):
    tg, be = hserve(handler=lambda req: Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                                              b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
        assert r.status == 502
        assert c.closed_by_peer(T(10))
        port = c.port
    tg.wait_event("http_error", status="502")
    rec = tg.wait_access(lambda r: r["client"].endswith(f":{port}"))[0]
    assert rec["status"] == 502 and rec["outcome"] == "bad_gateway", rec


def test_backend_closes_without_answer_502(hserve, pki):
    tg, be = hserve(handler=lambda req: Reply(abort=True))
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/").status == 502


def test_response_timeout_504(hserve, pki):
    tg, be = hserve(https_listener(response_timeout="1s"),
                    handler=lambda req: Reply(200, body=b"late", delay=3 if req.target ==
                                              "/slow" else 0))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/slow")
        assert r.status == 504
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/fast").body == b"late"


def test_stale_pooled_connection_retried(hserve, pki):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/1").status == 200
        be.drop_connections()  # the pool may or may not have noticed: either way works
        assert c.request("GET", "/2").status == 200
    assert [q.target for q in be.reqs()] == ["/1", "/2"]
    assert be.count() == 2


def test_stale_pool_not_retried_with_body_gives_502_or_200(hserve, pki):
    """A request with a body is not replayed blindly: it either went to a
    fresh connection or fails with 502, never twice."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/1").status == 200
        be.drop_connections()
        r = c.request("POST", "/2", body=b"once")
        assert r.status in (200, 502)
    assert [q.target for q in be.reqs()].count("/2") <= 1


# ---- load ----

@pytest.mark.slow
def test_1000_requests_over_50_connections(hserve, pki):
    tg, be = hserve()
    errors = []
    done = [0]
    lock = threading.Lock()

    def worker(k):
        try:
            with Client(tg.addr(), pki, timeout=T(60)) as c:
                for i in range(20):
                    body = f"{k}-{i}".encode() * (i + 1)
                    r = c.request("POST", f"/w{k}/{i}", body=body)
                    d = r.json()
                    if (r.status != 200 or d["target"] != f"/w{k}/{i}" or
                            d["body_sha256"] != hashlib.sha256(body).hexdigest()):
                        errors.append((k, i, r.status, d.get("target")))
                    with lock:
                        done[0] += 1
        except Exception as e:  # noqa: BLE001
            errors.append((k, repr(e)))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(T(180))
    assert not errors, errors[:5]
    assert done[0] == 1000
    assert len(be.reqs()) == 1000
    assert be.count() <= 50, f"{be.count()} backend connections for 50 clients"


BAD_RESPONSES = {
    "obs_fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "head_too_large": b"HTTP/1.1 200 OK\r\nX-B: " + b"b" * 20000 + b"\r\nContent-Length: 0\r\n\r\n",
    "nul_in_value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "two_lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "cl_and_te": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"0\r\n\r\n",
    "not_http": b"SSH-2.0-OpenSSH_9.2\r\n",
    "status_000": b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
    "http09_style": b"HTTP/0.9 200 OK\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("case", list(BAD_RESPONSES))
def test_bad_response_502(hserve, pki, case):
    tg, be = hserve(handler=lambda req: Reply(raw=BAD_RESPONSES[case]))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
        assert r.status == 502
        assert b"SSH" not in r.body and b"bbbb" not in r.body
        assert c.closed_by_peer(T(10))


@pytest.mark.parametrize("raw,body", [
    (b"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n", b""),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: 1\r\n\r\n", b"ok"),
])
def test_good_response_twins(hserve, pki, raw, body):
    tg, be = hserve(handler=lambda req: Reply(raw=raw))
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/")
        assert r.status == 200 and r.body == body
        if b"Set-Cookie" in raw:
            assert r.all("Set-Cookie") == ["a=1", "b=2"]
        assert c.request("GET", "/2").body == body


def test_client_cert_on_resumed_session(hserve, pki):
    """A resumed TLS session still carries the verified client identity."""
    tg, be = hserve(https_listener(mode="mutual"))
    ctx = tg_http.ssl_ctx(pki, pki.client("alice"))
    sess = None
    reused = []
    for i in range(3):
        raw = socket.create_connection(tg.addr(), timeout=T(10))
        with ctx.wrap_socket(raw, server_hostname="localhost", session=sess) as s:
            s.sendall(tg_http.build("GET", f"/{i}"))
            c = Client.__new__(Client)
            c.sock, c.r = s, tg_http._Reader(s)
            assert c.response().status == 200
            reused.append(s.session_reused)
            sess = s.session
    assert any(reused[1:]), "the test could not resume a session"
    for q in be.reqs():
        assert q.get("X-Client-Verify") == "SUCCESS"
        assert q.get("Client-Cert") and "CN=alice" in q.get("X-Client-Subject")


def test_websocket_frame_sent_with_the_handshake(hserve, pki):
    """A client that sends its first frame right behind the upgrade request
    (before the 101) has it delivered through the tunnel."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(b"GET /chat HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
               b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               b"Sec-WebSocket-Version: 13\r\n\r\n" + tg_http.ws_frame(2, b"early bird"))
        assert c.response().status == 101
        op, payload = tg_http.ws_read_frame(c.r, expect_mask=False)
        assert op == 2 and payload == b"early bird"


def test_client_gone_mid_body_backend_connection_not_reused(hserve, pki):
    """A request cut short leaves its backend connection expecting body
    bytes: it must be closed, never pooled, or the next client's request
    would become the rest of that body."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/warm").status == 200
        c.send(b"POST /cut HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n0123456789")
        wait_for(lambda: b"/cut" in bytes(be.raw[0]), T(10), what="the cut request head")
    with Client(tg.addr(), pki) as c:
        r = c.request("GET", "/next")
        assert r.status == 200 and r.json()["target"] == "/next"
    assert [q.target for q in be.reqs()] == ["/warm", "/next"]
    assert be.reqs()[1].conn_no == 2


def test_plain_http_client_half_close_still_answered(tollgate, hbackend):
    be = hbackend()
    tg = tollgate({"target_groups": {"g": group(be.address)},
                   "listeners": [https_listener(name="plain", protocol="http")]})
    s = socket.create_connection(tg.addr("plain"), timeout=T(10))
    s.sendall(tg_http.build("GET", "/a") + tg_http.build("GET", "/b"))
    s.shutdown(socket.SHUT_WR)
    data = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        data += b
    s.close()
    assert data.count(b"HTTP/1.1 200") == 2, data
    assert [q.target for q in be.reqs()] == ["/a", "/b"]


def worker_rss_kib(tg):
    pids = tg.worker_pids()
    assert len(pids) == 1, pids
    for line in open(f"/proc/{pids[0]}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_download_backpressure_bounded_memory(hserve, pki):
    """A client that stops reading stalls the backend; tollgate holds no
    more than its buffers, not the body; when the client reads again the
    body arrives whole."""
    total = T(64) * MIB  # ASan's quarantine adds growth: scale both
    tg, be = hserve(handler=lambda req: Reply(200, body_size=total))
    base = worker_rss_kib(tg)
    h = hashlib.sha256()
    state = {"n": 0, "grown": None}

    def sink(b):
        h.update(b)
        state["n"] += len(b)
        if state["grown"] is None and state["n"] >= 4 * MIB:
            time.sleep(1.0)  # stop reading: whatever would pile up piles up
            state["grown"] = worker_rss_kib(tg) - base
    with Client(tg.addr(), pki, timeout=T(60)) as c:
        c.send(tg_http.build("GET", "/big"))
        assert c.response(sink=sink).status == 200
    assert state["grown"] < T(20) * 1024, f"worker grew by {state['grown']} KiB"
    assert state["n"] == total and h.hexdigest() == tg_http.pattern_sha256(total)


@pytest.mark.slow
def test_upload_backpressure_bounded_memory(hserve, pki):
    tg, be = hserve()
    hold = threading.Event()
    be.hold_body = hold
    base = worker_rss_kib(tg)
    total = T(64) * MIB
    sent = [0]
    with Client(tg.addr(), pki, timeout=T(60)) as c:
        c.send(tg_http.build("POST", "/up", headers=[("Content-Length", str(total))]))
        c.sock.settimeout(1.0)
        try:
            for piece in tg_http.pattern_chunks(total, 256 * 1024):
                c.sock.sendall(piece)
                sent[0] += len(piece)
        except (socket.timeout, TimeoutError):
            pass
        assert sent[0] < total, "the whole body went in while the backend read nothing"
        grown = worker_rss_kib(tg) - base
        assert grown < T(20) * 1024, f"worker grew by {grown} KiB with a stalled backend"
    hold.set()


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
], ids=["short_length", "bad_chunk"])
def test_broken_response_body_closes_client(hserve, pki, raw):
    """Once the head went out a 502 is no longer possible: the client's
    connection is closed so that the truncation shows, and the backend
    connection is not reused."""
    tg, be = hserve(handler=lambda req: Reply(raw=raw, close=True)
                    if req.target == "/broken" else Reply(200, body=b"fine"))
    with Client(tg.addr(), pki) as c:
        c.send(tg_http.build("GET", "/broken"))
        t0 = time.monotonic()
        with pytest.raises((EOFError, ssl.SSLError, ConnectionError, ValueError)):
            c.response()
        assert time.monotonic() - t0 < T(10), "the client was left waiting"
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/ok").body == b"fine"
    assert be.reqs()[-1].conn_no == be.count() == 2


def test_early_answer_before_the_body(hserve, pki):
    """A backend that answers from the head alone (413 before the body):
    the client gets that answer, the connection closes (the request body
    is unfinished), and the next client gets a fresh backend connection."""
    tg, be = hserve()
    be.early = lambda req: Reply(413, body=b"too big\n", close=True)
    be.continue_100 = False
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n\r\n")
        r = c.response()
        assert r.status == 413 and r.body == b"too big\n"
        assert r.get("Connection", "").lower() == "close"
    be.early = None
    with Client(tg.addr(), pki) as c:
        assert c.request("POST", "/up", body=b"small").status == 200
    assert be.count() == 2


def test_two_workers_keepalive_and_pool(hserve, pki):
    """With several workers each keeps its own pool: every request is
    answered, and backend connections stay far below the request count."""
    tg, be = hserve(workers=2)
    n = 0
    for k in range(6):
        with Client(tg.addr(), pki) as c:
            for i in range(10):
                r = c.request("GET", f"/{k}/{i}")
                assert r.status == 200 and r.json()["target"] == f"/{k}/{i}"
                n += 1
    assert len(be.reqs()) == n == 60
    assert be.count() <= 2, f"{be.count()} backend connections for 2 workers"


def test_body_after_head_response_never_reaches_next_request(hserve, pki):
    """A backend that sends a body after a HEAD response leaves bytes that
    must not be read as the answer to the next request: that backend
    connection is not reused."""
    def handle(req):
        if req.method == "HEAD":
            return Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        return Reply(200, body=b"real " + req.target.encode())
    tg, be = hserve(handler=handle)
    with Client(tg.addr(), pki) as c:
        assert c.request("HEAD", "/h").status == 200
        assert c.request("GET", "/g").body == b"real /g"
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/g2").body == b"real /g2"


# ---- times in the access log ----

def test_access_log_times_are_measured(hserve, pki):
    """A fast request still has a handshake and a duration above zero: they
    are read from the clock, not from the loop's cached time."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/fast").status == 200
        port = c.port
    rec = tg.wait_access(lambda r: r["client"].endswith(f":{port}"))[0]
    assert rec["handshake_ms"] > 0, rec
    assert 0 < rec["duration_ms"] < 1000, rec


def test_access_log_duration_covers_a_slow_backend(hserve, pki):
    """The twin: a backend that takes 300 ms shows in duration and upstream."""
    tg, be = hserve(handler=lambda req: Reply(body=b"late", delay=0.3))
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/slow").status == 200
        port = c.port
    rec = tg.wait_access(lambda r: r["client"].endswith(f":{port}"))[0]
    assert rec["duration_ms"] >= 300 and rec["upstream_ms"] >= 300, rec
