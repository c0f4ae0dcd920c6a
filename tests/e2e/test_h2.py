"""HTTP/2 on https listeners with real clients (curl, nghttp, h2load, the
Python h2 library): bodies both ways, many streams on one connection, ALPN
settings, identity headers and the Host/SNI check, the access log per
stream, streams that do not stall each other, timeouts, graceful GOAWAY
on SIGTERM and SIGHUP, and what HTTP/2 changes in the forwarding (Host
from :authority, cookies, trailers, 1xx, hop-by-hop fields, limits)."""

import base64
import hashlib
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
from cryptography.hazmat.primitives import serialization

import tg_certs
import tg_h2
import tg_http
import tg_proc
from tg_h2 import GOAWAY, HEADERS, H2Client, RawH2, req_headers
from tg_http import Client, Reply, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, group, run_tollgate

MIB = 1 << 20


def curl(tg, pki, path="/", *args, listener="main", timeout=None):
    """curl over HTTP/2 (ALPN) to the listener; returns CompletedProcess."""
    port = tg.addr(listener)[1]
    return subprocess.run(["curl", "-sS", "--http2", "--cacert", pki.path("root.crt"),
                           "--resolve", f"localhost:{port}:127.0.0.1", *args,
                           f"https://localhost:{port}{path}"],
                          capture_output=True, timeout=timeout or T(60))


def h2_recs(tg, port, count=1, **kw):
    return tg.wait_access(lambda r: r["client"].endswith(f":{port}") and
                          r.get("protocol") == "h2", count=count, **kw)


# ---- curl ----

def test_curl_get_over_h2(hserve, pki):
    """curl negotiates h2; the backend gets HTTP/1.1 with Host from
    :authority; one access line says protocol h2, stream 1."""
    tg, be = hserve()
    p = curl(tg, pki, "/hello?x=1", "-w", "\n%{http_version} %{http_code}")
    assert p.returncode == 0, p.stderr
    body, _, tail = p.stdout.rpartition(b"\n")
    assert tail == b"2 200"
    d = json.loads(body)
    assert d["target"] == "/hello?x=1" and d["version"] == "HTTP/1.1"
    req = be.reqs()[0]
    assert req.get("Host") == f"localhost:{tg.addr()[1]}"
    rec = tg.wait_access(lambda r: r.get("path") == "/hello?x=1")[0]
    assert (rec["protocol"], rec["stream"], rec["status"], rec["method"]) == ("h2", 1, 200, "GET")


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
def test_curl_download_5mib_sha256(hserve, pki, tmp_path, chunked):
    total = 5 * MIB + 123
    tg, be = hserve(handler=lambda req: Reply(200, body_size=total, chunked=chunked))
    out = tmp_path / "dl.bin"
    p = curl(tg, pki, "/file", "-o", str(out), "-w", "%{http_version}")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"2"
    assert hashlib.sha256(out.read_bytes()).hexdigest() == tg_http.pattern_sha256(total)
    rec = tg.wait_access(lambda r: r.get("path") == "/file")[0]
    assert rec["bytes_out"] >= total and rec["outcome"] == "ok"


@pytest.mark.parametrize("length", [True, False], ids=["content_length", "no_length"])
def test_curl_upload_3mib_sha256(hserve, pki, tmp_path, length):
    """A 3 MiB upload over h2 reaches the backend whole: with its
    content-length as is; without one (curl reads stdin) chunked."""
    tg, be = hserve()
    data = os.urandom(3 * MIB + 7)
    f = tmp_path / "up.bin"
    f.write_bytes(data)
    port = tg.addr()[1]
    args = ["curl", "-sS", "--http2", "--cacert", pki.path("root.crt"), "-w", "%{http_version}",
            "-o", "/dev/null", "--resolve", f"localhost:{port}:127.0.0.1"]
    if length:
        args += ["--data-binary", f"@{f}", "-H", "Content-Type: application/octet-stream"]
        stdin = None
    else:
        args += ["-T", "-"]
        stdin = open(f, "rb")
    try:
        p = subprocess.run(args + [f"https://localhost:{port}/up"], stdin=stdin,
                           capture_output=True, timeout=T(60))
    finally:
        if stdin:
            stdin.close()
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"2"
    req = be.reqs()[0]
    assert req.body_len == len(data) and req.body_digest() == hashlib.sha256(data).hexdigest()
    if length:
        assert req.get("Content-Length") == str(len(data)) and not req.chunked
    else:
        assert req.chunked and req.get("Content-Length") is None


# ---- nghttp, h2load, the h2 library ----

def test_nghttp_concurrent_streams_one_connection(hserve, pki):
    """nghttp sends 20 requests at once on one connection; the backend
    answers each after 0.3 s: all are answered, together in about 0.3 s
    (not 6 s one after another), on one client connection."""
    tg, be = hserve(handler=lambda req: Reply(200, body=req.target.encode(), delay=0.3))
    port = tg.addr()[1]
    t0 = time.monotonic()
    p = subprocess.run(["nghttp", "-n", "-s", "-m", "20", "-t", "20",
                        f"https://localhost:{port}/many"], capture_output=True, text=True,
                       timeout=T(30))
    took = time.monotonic() - t0
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(be.reqs()) == 20
    assert took < T(3), f"20 concurrent streams took {took:.1f}s"
    recs = tg.wait_access(lambda r: r.get("path") == "/many", count=20)
    assert {r["status"] for r in recs} == {200}
    assert len({r["conn"] for r in recs}) == 1, "not one client connection"
    ids = [r["stream"] for r in recs]
    assert len(set(ids)) == 20 and all(i % 2 == 1 for i in ids), ids
    # the backend was reached on several connections at once
    assert len({q.conn_no for q in be.reqs()}) > 1


def test_h2load_bounded_run(hserve, pki):
    """h2load: 2000 requests over 4 connections, 10 streams each at a
    time: every one succeeds with 2xx."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"x" * 100))
    port = tg.addr()[1]
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10", "-t", "1",
                        f"https://localhost:{port}/load"], capture_output=True, text=True,
                       timeout=T(60))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Application protocol: h2" in p.stdout, p.stdout
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                  r"(\d+) failed, (\d+) errored", p.stdout)
    assert m and m.groups() == ("2000", "2000", "2000", "2000", "0", "0"), p.stdout
    m = re.search(r"status codes: (\d+) 2xx", p.stdout)
    assert m and m.group(1) == "2000", p.stdout
    assert len(be.reqs()) == 2000


def test_python_h2_library(hserve, pki):
    """The h2 library with ALPN h2: GETs and a POST with a body on one
    connection, the body checked at the backend."""
    tg, be = hserve()
    body = os.urandom(200000)
    with H2Client(tg.addr(), pki) as c:
        st, hdrs, data = c.get("/a")
        assert st == 200 and json.loads(data)["target"] == "/a"
        assert all(n == n.lower() for n, _ in hdrs)
        st, _, data = c.get("/post", method="POST", body=body,
                            headers=[("content-type", "application/octet-stream")])
        assert st == 200
        d = json.loads(data)
        assert d["body_len"] == len(body)
        assert d["body_sha256"] == hashlib.sha256(body).hexdigest()
        st, _, _ = c.get("/b")
        assert st == 200
        port = c.port
    recs = h2_recs(tg, port, count=3)
    assert [r["stream"] for r in recs] == [1, 3, 5]
    assert [r["request"] for r in recs] == [1, 2, 3]


# ---- ALPN ----

def alpn_of(tg, pki, offer, listener="main"):
    s = tg_h2.tls_connect(tg.addr(listener), pki, alpn=offer)
    try:
        return s.selected_alpn_protocol()
    finally:
        s.close()


def http1_over(tg, pki, offer, listener="main"):
    """An HTTP/1.1 request on a TLS connection that offered `offer`."""
    s = tg_h2.tls_connect(tg.addr(listener), pki, alpn=offer)
    try:
        s.sendall(tg_http.build("GET", "/h1"))
        r = tg_http._Reader(s)
        return r.line()
    finally:
        s.close()


def test_alpn_default_prefers_h2(hserve, pki):
    """Default alpn [h2, http/1.1]: h2 when offered (the server's choice even
    when the client lists http/1.1 first), http/1.1 when only that is."""
    tg, be = hserve()
    assert alpn_of(tg, pki, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(tg, pki, ["http/1.1", "h2"]) == "h2"
    assert alpn_of(tg, pki, ["http/1.1"]) == "http/1.1"
    assert curl(tg, pki, "/", "-o", "/dev/null", "-w", "%{http_version}").stdout == b"2"


def test_alpn_http11_only_turns_h2_off(hserve, pki):
    """alpn: [http/1.1]: curl --http2 gets HTTP/1.1, a client offering only
    h2 gets no ALPN answer and is served HTTP/1.1; its access line has no
    "protocol": "h2"."""
    tg, be = hserve(https_listener(alpn=["http/1.1"]))
    p = curl(tg, pki, "/c", "-o", "/dev/null", "-w", "%{http_version}")
    assert p.returncode == 0 and p.stdout == b"1.1", p
    assert alpn_of(tg, pki, ["h2", "http/1.1"]) == "http/1.1"
    assert alpn_of(tg, pki, ["h2"]) is None
    assert http1_over(tg, pki, ["h2"]).startswith(b"HTTP/1.1 200")
    rec = tg.wait_access(lambda r: r.get("path") == "/c")[0]
    assert rec.get("protocol") != "h2"


def test_alpn_h2_only(hserve, pki):
    """alpn: [h2]: h2 is chosen for a client that offers it. A client that
    offers only http/1.1 (or nothing) is not refused: tollgate answers no
    ALPN (rather than RFC 7301's no_application_protocol alert) and the
    client's HTTP/1.1 is served. This is what tollgate does: [h2] means
    "advertise only h2", not "refuse HTTP/1.1"."""
    tg, be = hserve(https_listener(alpn=["h2"]))
    assert alpn_of(tg, pki, ["h2", "http/1.1"]) == "h2"
    assert alpn_of(tg, pki, ["http/1.1"]) is None
    assert http1_over(tg, pki, ["http/1.1"]).startswith(b"HTTP/1.1 200")
    assert http1_over(tg, pki, None).startswith(b"HTTP/1.1 200")
    assert curl(tg, pki, "/", "-o", "/dev/null", "-w", "%{http_version}").stdout == b"2"


def test_h2_without_alpn_is_not_spoken(hserve, pki):
    """HTTP/2 only through ALPN: a client that negotiated nothing and sends
    the h2 preface is answered as HTTP/1.1 (400), nothing is forwarded."""
    tg, be = hserve()
    s = tg_h2.tls_connect(tg.addr(), pki, alpn=None)
    try:
        s.sendall(tg_h2.PREFACE + tg_h2.settings_frame())
        line = tg_http._Reader(s).line()
    finally:
        s.close()
    assert line.startswith(b"HTTP/1.1 400"), line
    assert be.reqs() == []


def check_config(tmp_path, pki, listener):
    """`tollgate check` on a config with this one listener: (rc, output)."""
    t = tg_proc.Tollgate(tmp_path / "chk", pki)
    path = t.write_config({"target_groups": {"g": group("127.0.0.1:9")},
                           "listeners": [listener]})
    r = run_tollgate(["check", "-c", str(path)])
    return r.returncode, r.stdout + r.stderr


@pytest.mark.parametrize("key,value", [
    ("alpn", ["h2"]), ("h2_max_streams", 10), ("h2_max_header_list_size", 4096),
    ("h2_max_resets_per_second", 50)])
@pytest.mark.parametrize("protocol", ["tcp_ssl", "http"])
def test_check_refuses_h2_keys_outside_https(tmp_path, pki, key, value, protocol):
    if protocol == "tcp_ssl":
        lst = tg_proc.listener(**{key: value})
    else:
        lst = https_listener(protocol="http", **{key: value})
    rc, out = check_config(tmp_path, pki, lst)
    assert rc != 0, out
    assert key in out and "only used with protocol https" in out, out


@pytest.mark.parametrize("key,value", [
    ("alpn", ["h3"]), ("alpn", []), ("alpn", ["h2", "h2"]), ("alpn", "h2"),
    ("h2_max_streams", 0), ("h2_max_streams", 1001),
    ("h2_max_header_list_size", 1023), ("h2_max_header_list_size", 16385),
    ("h2_max_resets_per_second", 0)])
def test_check_refuses_bad_h2_values(tmp_path, pki, key, value):
    rc, out = check_config(tmp_path, pki, https_listener(**{key: value}))
    assert rc != 0, out
    assert key in out, out


@pytest.mark.parametrize("key,value", [
    ("alpn", ["h2"]), ("alpn", ["http/1.1"]), ("alpn", ["http/1.1", "h2"]),
    ("h2_max_streams", 1), ("h2_max_streams", 1000), ("h2_max_header_list_size", 1024),
    ("h2_max_header_list_size", 16384), ("h2_max_resets_per_second", 100000)])
def test_check_accepts_h2_values_twin(tmp_path, pki, key, value):
    rc, out = check_config(tmp_path, pki, https_listener(**{key: value}))
    assert rc == 0, out


# ---- identity, Host/SNI ----

def test_identity_headers_on_h2_mutual(hserve, pki):
    """A mutual listener over h2: the client certificate and the forwarded
    headers reach the backend; the client's own copies do not."""
    tg, be = hserve(https_listener(mode="mutual"))
    cert = pki.client("alice")
    spoof = [("x-forwarded-for", "203.0.113.9"), ("x-client-subject", "CN=admin"),
             ("x-client-verify", "SUCCESS-ish"), ("client-cert", ":AAAA:"),
             ("x-real-ip", "203.0.113.9")]
    with H2Client(tg.addr(), pki, cert=cert) as c:
        st, _, _ = c.get("/id", headers=spoof)
        assert st == 200
        st, _, _ = c.get("/id2")
        assert st == 200
    leaf = tg_certs.load_certs(cert[0])[0].public_bytes(serialization.Encoding.DER)
    for req in be.reqs():
        assert req.get("X-Client-Verify") == "SUCCESS"
        assert "CN=alice" in req.get("X-Client-Subject")
        assert req.get("Client-Cert") == ":" + base64.b64encode(leaf).decode() + ":"
        assert req.get("X-Forwarded-For") == "127.0.0.1"
        assert req.get("X-Real-IP") == "127.0.0.1"
        assert req.get("X-Forwarded-Proto") == "https"
        assert req.get("X-Forwarded-Port") == str(tg.addr()[1])
    rec = tg.wait_access(lambda r: r.get("path") == "/id")[0]
    assert "CN=alice" in rec["client_subject"] and rec["client_verify"] == "SUCCESS"


def test_421_on_mutual_when_authority_differs_from_sni(hserve, pki):
    """Mutual listener: a stream whose :authority is not the SNI gets 421
    and is not forwarded; the connection goes on: the next stream with
    the right authority (with or without the port) is served."""
    tg, be = hserve(https_listener(mode="mutual"))
    port = tg.addr()[1]
    with H2Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.get("/other", authority="other.example.test")[0] == 421
        assert c.get("/same", authority="localhost")[0] == 200
        assert c.get("/port", authority=f"localhost:{port}")[0] == 200
        assert c.get("/other2", authority="evil.example.test")[0] == 421
    assert [r.target for r in be.reqs()] == ["/same", "/port"]
    ev = tg.wait_event("http_error", status="421")
    assert ev


def test_authority_differs_from_sni_allowed_on_one_way_twin(hserve, pki):
    """Twin: on a one-way listener the check does not apply."""
    tg, be = hserve()
    with H2Client(tg.addr(), pki) as c:
        assert c.get("/other", authority="other.example.test")[0] == 200
    assert be.reqs()[0].get("Host") == "other.example.test"


# ---- the access log ----

def test_access_log_line_per_stream(hserve, pki):
    """Each stream has its own line: protocol h2, its stream id, method,
    path, status, outcome, its own bytes; a stream the client reset with
    CANCEL is logged client_reset."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"s" * 1000, delay=2.0)
                    if req.target == "/slow" else Reply(200, body=b"x" * 10))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/one")
        c.request(3, "POST", path="/two", body=b"hello")
        c.request(5, path="/slow")
        assert c.response(1)[0] == 200 and c.response(3)[0] == 200
        c.send(tg_h2.rst_stream(5, tg_h2.CANCEL))
        c.request(7, "HEAD", path="/three")
        assert c.response(7)[0] == 200
        port = c.port
    recs = h2_recs(tg, port, count=4)
    by = {r["stream"]: r for r in recs}
    assert set(by) == {1, 3, 5, 7}
    assert len({r["conn"] for r in recs}) == 1
    assert (by[1]["method"], by[1]["path"], by[1]["status"], by[1]["outcome"]) == \
        ("GET", "/one", 200, "ok")
    assert (by[3]["method"], by[3]["bytes_in"], by[3]["bytes_out"]) == ("POST", 5, 10)
    assert by[5]["outcome"] == "client_reset" and by[5]["path"] == "/slow"
    assert by[7]["method"] == "HEAD" and by[7]["bytes_out"] == 0
    for r in recs:
        assert r["sni"] == "localhost" and r["tls_version"].startswith("TLS")


def test_http11_access_line_has_no_h2_fields_twin(hserve, pki):
    """Twin: an HTTP/1.1 request's line is as before (no protocol h2)."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/h1").status == 200
    rec = tg.wait_access(lambda r: r.get("path") == "/h1")[0]
    assert rec.get("protocol") != "h2" and "stream" not in rec


def test_access_line_of_stream_open_at_close_keeps_tls_fields(hserve, pki):
    """A client (with a certificate) closes its connection while a stream
    waits for the backend: the stream's line still names the TLS session
    and the client certificate, like every other line of the connection."""
    tg, be = hserve(https_listener(mode="mutual"),
                    handler=lambda req: Reply(200, body=b"late", delay=1.0))
    with RawH2(tg.addr(), pki, cert=pki.client("alice")) as c:
        c.request(1, path="/left")
        be.wait_requests(1)
        port = c.port
    rec = h2_recs(tg, port)[0]
    assert rec["outcome"] == "client_closed"
    assert rec["sni"] == "localhost" and rec["tls_version"].startswith("TLS"), rec
    assert "CN=alice" in rec["client_subject"] and rec["client_verify"] == "SUCCESS", rec


# ---- streams do not stall each other ----

def test_slow_backend_stream_does_not_stall_others(hserve, pki):
    """One stream waits 2 s for its backend; five other streams on the same
    connection, one after another, are answered at once meanwhile."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"slow", delay=2.0)
                    if req.target == "/slow" else Reply(200, body=b"fast"))
    with H2Client(tg.addr(), pki) as c:
        t0 = time.monotonic()
        slow = c.start("/slow")
        times = []
        for i in range(5):
            t = time.monotonic()
            st, _, body = c.get(f"/fast{i}")
            times.append(time.monotonic() - t)
            assert (st, body) == (200, b"fast")
        assert slow not in c.ended, "the slow stream ended early"
        assert max(times) < T(0.5), f"fast streams took {times}"
        c.wait_ended([slow], timeout=T(10))
        assert c.status[slow] == 200 and bytes(c.body[slow]) == b"slow"
        assert time.monotonic() - t0 >= 1.9


def test_stalled_upload_does_not_stall_other_streams(tollgate, hbackend, pki):
    """A stream uploads 8 MiB to a backend that reads nothing: tollgate
    stops reopening that stream's window (a bounded amount waits), while
    other streams of the same connection are served at once. When the
    backend reads, the upload completes whole."""
    slow_be, fast_be = hbackend(), hbackend()
    hold = threading.Event()
    slow_be.hold_body = hold
    tg = tollgate({"target_groups": {"g": group(fast_be.address),
                                     "slow": group(slow_be.address)},
                   "listeners": [https_listener(rules=[{"path": "/up",
                                                        "target_group": "slow"}])]})
    total = 8 * MIB
    data = os.urandom(total)
    with H2Client(tg.addr(), pki) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", "/up"),
                                  (":authority", "localhost")])
        c.flush()
        sent = 0
        deadline = time.monotonic() + T(10)
        stalled_at = None
        while sent < total and time.monotonic() < deadline:
            w = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                    total - sent)
            if w <= 0:
                c.pump(0.3)
                if c.conn.local_flow_control_window(sid) <= 0:
                    stalled_at = sent
                    break
                continue
            c.conn.send_data(sid, data[sent:sent + w])
            sent += w
            c.flush()
        assert stalled_at is not None and stalled_at < total, \
            f"the window never closed: {sent} of {total} bytes went in"
        # meanwhile, other streams on this connection
        for i in range(5):
            t = time.monotonic()
            st, _, _ = c.get(f"/fast{i}")
            assert st == 200 and time.monotonic() - t < T(0.5)
        hold.set()
        while sent < total and time.monotonic() < deadline + T(20):
            w = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                    total - sent)
            if w <= 0:
                c.pump(0.2)
                continue
            c.conn.send_data(sid, data[sent:sent + w])
            sent += w
            c.flush()
        c.conn.end_stream(sid)
        c.flush()
        c.wait_ended([sid], timeout=T(20))
        assert c.status[sid] == 200
    req = slow_be.reqs()[0]
    assert req.body_len == total and req.body_digest() == hashlib.sha256(data).hexdigest()
    assert len(fast_be.reqs()) == 5


def test_unread_stream_does_not_stall_others(hserve, pki):
    """The client does not read one stream's 4 MiB response (that stream's
    window stays at 0); other streams on the connection are answered at
    once. When the client reads again the big body arrives whole."""
    total = 4 * MIB
    tg, be = hserve(handler=lambda req: Reply(200, body_size=total)
                    if req.target == "/big" else Reply(200, body=b"small"))
    with H2Client(tg.addr(), pki) as c:
        c.hold.add(1)
        big = c.start("/big")
        assert big == 1
        c.wait(lambda: len(c.body[big]) >= 65535, what="the first window of the big body")
        time.sleep(0.2)
        c.pump(0.1)
        assert len(c.body[big]) == 65535, "more than the window arrived"
        for i in range(5):
            t = time.monotonic()
            st, _, body = c.get(f"/small{i}")
            assert (st, body) == (200, b"small")
            assert time.monotonic() - t < T(0.5)
        assert big not in c.ended
        c.release(big)
        c.wait_ended([big], timeout=T(20))
        assert hashlib.sha256(bytes(c.body[big])).hexdigest() == tg_http.pattern_sha256(total)


# ---- timeouts ----

def test_idle_connection_closes_with_goaway(hserve, pki):
    """An h2 connection whose streams are done closes after idle_timeout
    with GOAWAY(NO_ERROR)."""
    tg, be = hserve(https_listener(idle_timeout="1s"))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/one")
        assert c.response(1, timeout=T(5))[0] == 200
        t0 = time.monotonic()
        g = c.expect_goaway(tg_h2.NO_ERROR, timeout=T(5))
        took = time.monotonic() - t0
    assert 0.7 < took < T(3), took
    assert g.last_stream_id == 1


def test_connection_without_a_stream_closes_after_header_timeout(hserve, pki):
    """A client that completes the handshake and the preface but opens no
    stream waits no longer than an HTTP/1.1 client for its first head:
    header_timeout (here shorter than idle_timeout), then GOAWAY(NO_ERROR)."""
    tg, be = hserve(https_listener(idle_timeout="30s", header_timeout="1s"))
    with RawH2(tg.addr(), pki) as c:
        t0 = time.monotonic()
        g = c.expect_goaway(tg_h2.NO_ERROR, timeout=T(5))
        took = time.monotonic() - t0
    assert 0.7 < took < T(3), took
    assert g.last_stream_id == 0


def test_stream_in_flight_keeps_connection_past_idle_timeout_twin(hserve, pki):
    """Twin: a stream waiting for its response (within response_timeout)
    keeps the connection open past idle_timeout; GOAWAY only after."""
    tg, be = hserve(https_listener(idle_timeout="1s"),
                    handler=lambda req: Reply(200, body=b"late", delay=1.8))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/late")
        st, _, body = c.response(1, timeout=T(5))
        assert (st, body) == (200, b"late")
        assert not [f for f in c.seen if f.type == GOAWAY]
        c.expect_goaway(tg_h2.NO_ERROR, timeout=T(5))


def test_response_timeout_504_other_streams_fine(hserve, pki):
    tg, be = hserve(https_listener(response_timeout="1s"),
                    handler=lambda req: Reply(200, body=b"late", delay=3)
                    if req.target == "/late" else Reply(200, body=b"ok"))
    with H2Client(tg.addr(), pki) as c:
        late = c.start("/late")
        assert c.get("/ok")[0] == 200
        c.wait_ended([late], timeout=T(5))
        assert c.status[late] == 504
        assert c.get("/ok2")[0] == 200
    rec = tg.wait_access(lambda r: r.get("path") == "/late")[0]
    assert rec["outcome"] == "response_timeout"


def test_header_timeout_resets_incomplete_header_block(hserve, pki):
    """A HEADERS without END_HEADERS and no CONTINUATION: the stream is
    reset (CANCEL) after header_timeout, nothing is forwarded."""
    tg, be = hserve(https_listener(header_timeout="1s"))
    with RawH2(tg.addr(), pki) as c:
        t0 = time.monotonic()
        c.send(c.headers_frame(1, req_headers(path="/never"), end_headers=False))
        c.expect_rst(1, tg_h2.CANCEL, timeout=T(5))
        took = time.monotonic() - t0
    assert 0.7 < took < T(3), took
    assert be.reqs() == []


# ---- graceful GOAWAY ----

def test_sigterm_goaway_stream_in_flight_completes(hserve, pki):
    """SIGTERM: the h2 connection gets GOAWAY(NO_ERROR) at once, naming the
    stream in flight as processed; that stream's response still comes
    whole; a stream opened after the GOAWAY is not forwarded; then the
    connection closes and tollgate exits 0."""
    tg, be = hserve(handler=lambda req: Reply(200, body_size=300000, delay=1.0)
                    if req.target == "/slow" else Reply(200, body=b"x"))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/slow")
        be.wait_requests(1)
        t0 = time.monotonic()
        tg.signal(signal.SIGTERM)
        g = c.wait(lambda f: f.type == GOAWAY, timeout=T(5), what="GOAWAY")
        assert time.monotonic() - t0 < T(0.8), "GOAWAY came late"
        assert g.error_code == tg_h2.NO_ERROR and g.last_stream_id == 1
        c.request(3, path="/after-goaway")
        st, _, body = c.response(1, timeout=T(10))
        assert st == 200 and hashlib.sha256(body).hexdigest() == \
            tg_http.pattern_sha256(300000)
        assert c.closed(T(10))
    assert [r.target for r in be.reqs()] == ["/slow"]
    assert tg.wait_exit(T(10)) == 0


def test_sighup_goaway_to_old_generation(hserve, pki):
    """SIGHUP: the old worker's h2 connection gets GOAWAY(NO_ERROR); its
    stream in flight completes; a new connection is served by the new
    generation."""
    tg, be = hserve(handler=lambda req: Reply(200, body=b"slow", delay=1.0)
                    if req.target == "/slow" else Reply(200, body=b"x"))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/slow")
        be.wait_requests(1)
        tg.signal(signal.SIGHUP)
        g = c.wait(lambda f: f.type == GOAWAY, timeout=T(10), what="GOAWAY")
        assert g.error_code == tg_h2.NO_ERROR and g.last_stream_id == 1
        assert c.response(1, timeout=T(10))[:1] == (200,)
        assert c.closed(T(10))
    tg.wait_ready(generation=2)
    with H2Client(tg.addr(), pki) as c2:
        assert c2.get("/new")[0] == 200


# ---- forwarding rules over h2 ----

def test_response_1xx_dropped_hop_by_hop_removed(hserve, pki):
    """1xx from the backend never reach the h2 client; hop-by-hop fields
    (and those Connection names) are removed; names are lower case."""
    tg, be = hserve(handler=lambda req: Reply(
        200, interim=(100, 103), body=b"b",
        headers=[("Connection", "X-Hop"), ("X-Hop", "1"), ("Keep-Alive", "timeout=5"),
                 ("Proxy-Connection", "x"), ("Upgrade", "foo"), ("Trailer", "X-T"),
                 ("X-Keep", "Yes"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]))
    with RawH2(tg.addr(), pki) as c:
        c.request(1)
        st, hdrs, body = c.response(1)
        heads = [f for f in c.seen if f.type == HEADERS]
    assert (st, body) == (200, b"b")
    assert len(heads) == 1, heads  # no interim HEADERS
    names = [n for n, _ in hdrs]
    assert names == [n.lower() for n in names]
    for gone in ("connection", "x-hop", "keep-alive", "proxy-connection", "upgrade", "trailer",
                 "transfer-encoding"):
        assert gone not in names, (gone, hdrs)
    assert ("x-keep", "Yes") in hdrs
    assert [v for n, v in hdrs if n == "set-cookie"] == ["a=1", "b=2"]


def test_max_body_size_with_content_length_413(hserve, pki):
    """A content-length over max_body_size: 413 at once, nothing forwarded."""
    tg, be = hserve(https_listener(max_body_size="1m"))
    with H2Client(tg.addr(), pki) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", "/up"),
                                  (":authority", "localhost"),
                                  ("content-length", str(3 * MIB))])
        c.flush()
        c.wait(lambda: sid in c.status, what="the 413")
        assert c.status[sid] == 413
        assert c.get("/after")[0] == 200
    assert [r.target for r in be.reqs()] == ["/after"]


def upload_without_length(c, path, data, deadline):
    """Sends data on a new stream without content-length, within the flow
    control windows, until done or the stream is answered. Returns sid."""
    sid = c.conn.get_next_available_stream_id()
    c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", path),
                              (":authority", "localhost")])
    c.flush()
    sent = 0
    while sent < len(data) and time.monotonic() < deadline:
        if sid in c.reset or sid in c.ended or sid in c.status:
            return sid
        w = min(c.conn.local_flow_control_window(sid), c.conn.max_outbound_frame_size,
                len(data) - sent)
        if w <= 0:
            c.pump(0.2)
            continue
        c.conn.send_data(sid, data[sent:sent + w])
        sent += w
        c.flush()
    c.conn.end_stream(sid)
    c.flush()
    return sid


def test_max_body_size_without_length_http11_twin(hserve, pki):
    """Twin over HTTP/1.1: a chunked body over max_body_size gets 413."""
    tg, be = hserve(https_listener(max_body_size="1m"))
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            for piece in tg_http.pattern_chunks(3 * MIB, 64 * 1024):
                c.send(b"%x\r\n" % len(piece) + piece + b"\r\n")
            c.send(b"0\r\n\r\n")
        except OSError:
            pass
        assert c.response().status == 413
    assert all(r.body_len <= 1 * MIB for r in be.reqs())


def test_max_body_size_without_length_h2(hserve, pki):
    """An h2 body without content-length that goes over max_body_size (1m):
    like HTTP/1.1, 413, and the backend does not get the whole body."""
    tg, be = hserve(https_listener(max_body_size="1m"))
    data = os.urandom(3 * MIB)
    with H2Client(tg.addr(), pki) as c:
        sid = upload_without_length(c, "/up", data, time.monotonic() + T(15))
        c.wait_ended([sid], timeout=T(10))
        status = c.status.get(sid)
    got = max((r.body_len for r in be.reqs()), default=0)
    assert status == 413 and got < len(data), (status, got)


def test_no_rule_404_over_h2(hserve, pki):
    tg, be = hserve(https_listener(rules=[{"path": "/api/", "target_group": "g"}], default=None))
    with H2Client(tg.addr(), pki) as c:
        assert c.get("/elsewhere")[0] == 404
        assert c.get("/api/x")[0] == 200
    assert [r.target for r in be.reqs()] == ["/api/x"]


def test_header_list_size_setting(hserve, pki):
    """h2_max_header_list_size 1024 is advertised; a header list over it
    gets 431 (not forwarded), one under it is served."""
    tg, be = hserve(https_listener(h2_max_header_list_size=1024))
    with RawH2(tg.addr(), pki) as c:
        assert c.server_settings[tg_h2.MAX_HEADER_LIST_SIZE] == 1024
        c.request(1, path="/big-head", extra=[("x-pad", "p" * 1000)])
        assert c.response(1)[0] == 431
        c.request(3, path="/ok-head", extra=[("x-pad", "p" * 700)])
        assert c.response(3)[0] == 200
    assert [r.target for r in be.reqs()] == ["/ok-head"]


def test_backend_failures_over_h2(hserve, pki):
    """A backend that closes without answering: 502; one that cuts its
    body short: the stream is reset after the bytes it had; HEAD and 204
    come without DATA. The connection serves on after each."""
    def handler(req):
        if req.target == "/abort":
            return Reply(abort=True)
        if req.target == "/trunc":
            return Reply(raw=b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
                         close=True)
        if req.target == "/204":
            return Reply(204)
        return Reply(200, body=b"12345")
    tg, be = hserve(handler=handler)
    with H2Client(tg.addr(), pki) as c:
        assert c.get("/abort")[0] == 502
        sid = c.start("/trunc")
        c.wait_ended([sid])
        assert sid in c.reset and bytes(c.body[sid]) == b"only ten b"
        st, hdrs, body = c.get("/head", method="HEAD")
        assert (st, body) == (200, b"") and ("content-length", "5") in hdrs
        st, _, body = c.get("/204")
        assert (st, body) == (204, b"")
        assert c.get("/ok")[0] == 200
    rec = tg.wait_access(lambda r: r.get("path") == "/trunc")[0]
    assert rec["outcome"] == "backend_truncated"


def test_sticky_cookie_over_h2(tollgate, hbackend, pki):
    """A cookie-sticky group over h2: the first response sets the cookie
    (set-cookie, lower case); a client that sends it back as one crumb
    among others keeps its target and gets no new cookie."""
    bes = {name: hbackend(lambda req, n=name: Reply(200, body=n.encode())) for name in "ab"}
    tg = tollgate({"target_groups": {"g": {
        "targets": [{"address": b.address, "weight": 1} for b in bes.values()],
        "sticky": {"type": "cookie", "ttl": "10m", "name": "sid"}}},
        "listeners": [https_listener()]})
    with H2Client(tg.addr(), pki) as c:
        st, hdrs, first = c.get("/")
        cookies = [v for n, v in hdrs if n == "set-cookie" and v.startswith("sid=")]
        assert st == 200 and len(cookies) == 1, hdrs
        assert "HttpOnly" in cookies[0] and "Secure" in cookies[0]
        sid = cookies[0].split(";")[0]
        for _ in range(6):
            st, hdrs, body = c.get("/", headers=[("cookie", "x=1"), ("cookie", sid),
                                                 ("cookie", "y=2")])
            assert (st, body) == (200, first)
            assert not [v for n, v in hdrs if n == "set-cookie"], hdrs
    seen = [r.get("Cookie") for b in bes.values() for r in b.reqs() if r.get("Cookie")]
    assert seen and all(v == f"x=1; {sid}; y=2" for v in seen), seen


def test_on_reject_page_over_h2(hserve, pki, bad_certs):
    """on_reject: page on an optional mutual listener, over h2: no
    certificate gets 496, an expired one 495, never the backend; the
    access line is the stream's (protocol h2). Twin: a good certificate
    is forwarded."""
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional",
                                   tls_extra={"on_reject": "page"}))
    with H2Client(tg.addr(), pki) as c:
        st, hdrs, body = c.get("/private")
        assert st == 496 and dict(hdrs)["content-type"].startswith("text/html")
        assert b"no_client_cert" in body
        port = c.port
    with H2Client(tg.addr(), pki, cert=bad_certs["expired"]) as c:
        assert c.get("/private")[0] == 495
    assert be.count() == 0
    rec = h2_recs(tg, port)[0]
    assert (rec["status"], rec["outcome"]) == (496, "tls_rejected")
    with H2Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.get("/private")[0] == 200
    assert be.reqs()[0].get("X-Client-Verify") == "SUCCESS"


def test_stale_pooled_backend_retried_over_h2(hserve, pki):
    """A stream given a pooled backend connection that the backend closed
    meanwhile is retried on a fresh one (once): the client sees 200."""
    tg, be = hserve()
    with H2Client(tg.addr(), pki) as c:
        assert c.get("/1")[0] == 200
        be.drop_connections()
        assert c.get("/2")[0] == 200
    assert [q.target for q in be.reqs()] == ["/1", "/2"]
    assert be.count() == 2


def test_discarded_bodies_give_the_connection_window_back(hserve, pki):
    """100 uploads of 16 KiB answered at once (404, no rule) on one
    connection: their bodies are dropped, and the 1.6 MiB they used of the
    connection window (1 MiB) come back, so a last upload of 2 MiB still
    goes through whole."""
    tg, be = hserve(https_listener(rules=[{"path": "/api/", "target_group": "g"}], default=None))
    with H2Client(tg.addr(), pki) as c:
        for i in range(100):
            sid = c.start(f"/nope{i}", method="POST", body=b"x" * 16384)
            c.wait_ended([sid], timeout=T(5))
            assert c.status.get(sid) == 404, (i, c.status.get(sid), c.reset.get(sid))
        body = os.urandom(2 * MIB)
        st, _, data = c.get("/api/up", method="POST", body=body, timeout=T(20))
        assert st == 200
    req = be.reqs()[0]
    assert [q.target for q in be.reqs()] == ["/api/up"]
    assert req.body_digest() == hashlib.sha256(body).hexdigest()


def connect_timeout_case(tollgate, hbackend, pki, busy):
    """A stream to a target whose connect hangs (connect_timeout 1s,
    response_timeout 4s); busy: another stream runs on the connection
    meanwhile. Returns (status, seconds)."""
    hole = tg_h2.Blackhole()
    be = hbackend()
    try:
        tg = tollgate({"target_groups": {"g": group(be.address), "bh": group(hole.address)},
                       "listeners": [https_listener(connect_timeout="1s", response_timeout="4s",
                                                    rules=[{"path": "/hole",
                                                            "target_group": "bh"}])]})
        with H2Client(tg.addr(), pki) as c:
            t0 = time.monotonic()
            sid = c.start("/hole")
            if busy:
                time.sleep(0.1)
                assert c.get("/ok")[0] == 200
                assert time.monotonic() - t0 < T(0.6)
            c.wait_ended([sid], timeout=T(10))
            return c.status.get(sid), time.monotonic() - t0
    finally:
        hole.close()


def test_connect_timeout_http11_twin(tollgate, hbackend, pki):
    """Twin over HTTP/1.1: the same hanging connect ends after
    connect_timeout (1 s) with 503."""
    hole = tg_h2.Blackhole()
    be = hbackend()
    try:
        tg = tollgate({"target_groups": {"g": group(be.address), "bh": group(hole.address)},
                       "listeners": [https_listener(connect_timeout="1s", response_timeout="4s",
                                                    rules=[{"path": "/hole",
                                                            "target_group": "bh"}])]})
        t0 = time.monotonic()
        with Client(tg.addr(), pki) as c:
            st = c.request("GET", "/hole").status
        took = time.monotonic() - t0
    finally:
        hole.close()
    assert st == 503 and 0.8 < took < T(3), (st, took)


@pytest.mark.parametrize("busy", [False, True], ids=["alone", "with_other_streams"])
def test_connect_timeout_over_h2(tollgate, hbackend, pki, busy):
    """A stream whose backend connect hangs ends after connect_timeout
    (1 s) with 503 (no target could be reached), not at response_timeout
    (4 s); alone, or while another stream on the connection is served."""
    st, took = connect_timeout_case(tollgate, hbackend, pki, busy)
    assert st == 503 and 0.8 < took < T(3), (st, took)


def test_sigterm_idle_h2_connection_gets_goaway_and_exit_is_prompt(hserve, pki):
    """SIGTERM with an idle h2 connection open (no stream): GOAWAY(NO_ERROR,
    last stream 0) at once, the connection closes, and tollgate exits long
    before drain_timeout (10 s)."""
    tg, be = hserve()
    with RawH2(tg.addr(), pki) as c:
        t0 = time.monotonic()
        tg.signal(signal.SIGTERM)
        g = c.expect_goaway(tg_h2.NO_ERROR, timeout=T(5))
        assert g.last_stream_id == 0
    assert tg.wait_exit(T(5)) == 0
    assert time.monotonic() - t0 < T(3)


def test_backend_answers_early_while_client_uploads(hserve, pki):
    """The backend answers 413 from the request head and closes while the
    client is still sending its 3 MiB body: the client gets the 413, the
    rest of its body is dropped (the stream is reset NO_ERROR or ends), and
    the connection serves the next stream."""
    tg, be = hserve()
    be.early = lambda req: Reply(413, body=b"too big for me", close=True)
    with H2Client(tg.addr(), pki) as c:
        sid = c.conn.get_next_available_stream_id()
        c.conn.send_headers(sid, [(":method", "POST"), (":scheme", "https"), (":path", "/up"),
                                  (":authority", "localhost")])
        c.body[sid] = bytearray()
        c.flush()
        c.send_body(sid, os.urandom(3 * MIB), timeout=T(20))
        c.wait(lambda: sid in c.status and (sid in c.ended or sid in c.reset), T(10),
               what="the early answer")
        assert c.status[sid] == 413 and bytes(c.body[sid]) == b"too big for me"
        be.early = None
        assert c.get("/next")[0] == 200


def test_response_delimited_by_close_over_h2(hserve, pki):
    """A response without length, ended by the backend closing: the h2
    stream carries the body and ends (END_STREAM) when the backend closes."""
    raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end"
    tg, be = hserve(handler=lambda req: Reply(raw=raw, close=True))
    with H2Client(tg.addr(), pki) as c:
        st, hdrs, body = c.get("/eof")
        assert (st, body) == (200, b"until the end")
        assert c.get("/again")[0] == 200


# ---- response trailers ----

TRAILED = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\nGrpc-Status: 0\r\nX-Checksum:  abc \r\nContent-Length: 99\r\n\r\n")


def test_response_trailers_passed_on(hserve, pki):
    """A chunked response's trailer fields become the stream's trailers
    (a HEADERS frame with END_STREAM after the DATA), names in lower case,
    values trimmed, framing fields (content-length) left out."""
    tg, be = hserve(handler=lambda req: Reply(raw=TRAILED))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/trailed")
        st, _, body = c.response(1)
        ends = [f for f in c.seen if f.type == tg_h2.HEADERS and f.sid == 1 and f.flags & tg_h2.END_STREAM]
    assert st == 200 and body == b"hello"
    assert ends and dict(ends[-1].headers) == {"grpc-status": "0", "x-checksum": "abc"}


def test_chunked_response_without_trailers_twin(hserve, pki):
    """Twin: without trailer fields the last DATA frame ends the stream and
    no HEADERS follows the response head."""
    raw = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5\r\nhello\r\n0\r\n\r\n")
    tg, be = hserve(handler=lambda req: Reply(raw=raw))
    with RawH2(tg.addr(), pki) as c:
        c.request(1, path="/plain")
        st, _, body = c.response(1)
        heads = [f for f in c.seen if f.type == tg_h2.HEADERS and f.sid == 1]
    assert st == 200 and body == b"hello"
    assert len(heads) == 1 and not heads[0].flags & tg_h2.END_STREAM
