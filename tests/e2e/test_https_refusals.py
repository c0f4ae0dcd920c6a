"""Requests refused before any backend sees them: ambiguous framing
(request smuggling vectors, RFC 9112) and limits (414, 431, 413, 408).
Each is answered with its status, logs one line, and the backend receives
nothing; each has an accepted twin."""

import time

import pytest

import tg_http
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T

H = b"Host: localhost\r\n"

SMUGGLING = {
    "cl_and_te": b"POST / HTTP/1.1\r\n" + H +
                 b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_and_cl": b"POST / HTTP/1.1\r\n" + H +
                 b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
    "repeated_cl_equal": b"POST / HTTP/1.1\r\n" + H +
                         b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    "conflicting_cl": b"POST / HTTP/1.1\r\n" + H +
                      b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    "cl_list": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3, 3\r\n\r\nabc",
    "cl_not_a_number": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3x\r\n\r\nabc",
    "cl_negative": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -1\r\n\r\n",
    "obs_fold": b"GET / HTTP/1.1\r\n" + H + b"X-A: one\r\n two\r\n\r\n",
    "obs_fold_tab": b"GET / HTTP/1.1\r\n" + H + b"X-A: one\r\n\ttwo\r\n\r\n",
    "te_not_final_chunked": b"POST / HTTP/1.1\r\n" + H +
                            b"Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
    "te_gzip_only": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip\r\n\r\nabc",
    "te_identity": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n",
    "te_repeated": b"POST / HTTP/1.1\r\n" + H +
                   b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "te_xchunked": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
    "bad_header_name_space": b"GET / HTTP/1.1\r\n" + H + b"X A: b\r\n\r\n",
    "space_before_colon": b"GET / HTTP/1.1\r\n" + H + b"Content-Length : 0\r\n\r\n",
    "bad_header_name_char": b"GET / HTTP/1.1\r\n" + H + b"X(A): b\r\n\r\n",
    "empty_header_name": b"GET / HTTP/1.1\r\n" + H + b": b\r\n\r\n",
    "bad_header_value_nul": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\x00b\r\n\r\n",
    "bad_header_value_cr": b"GET / HTTP/1.1\r\n" + H + b"X-A: a\rb\r\n\r\n",
    "bare_lf_line": b"GET / HTTP/1.1\n" + b"Host: localhost\n\n",
    "missing_host": b"GET / HTTP/1.1\r\nX-A: b\r\n\r\n",
    "repeated_host": b"GET / HTTP/1.1\r\n" + H + b"Host: evil.example\r\n\r\n",
    "invalid_host": b"GET / HTTP/1.1\r\nHost: local host\r\n\r\n",
    "absolute_form_other_host": b"GET https://evil.example/x HTTP/1.1\r\n" + H + b"\r\n",
    "absolute_form_userinfo": b"GET https://u@localhost/x HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk_without_options": b"GET * HTTP/1.1\r\n" + H + b"\r\n",
    "http09_with_headers": b"GET /\r\n" + H + b"\r\n",
    "bad_version": b"GET / HTTP/1.7\r\n" + H + b"\r\n",
    "bad_method": b"G@T / HTTP/1.1\r\n" + H + b"\r\n",
}

# Each accepted twin differs from its refused case only in the one defect.
ACCEPTED = {
    "cl": b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 3\r\n\r\nabc",
    "te": b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "te_case": b"POST / HTTP/1.1\r\n" + H +
               b"Transfer-Encoding: Chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    "header_value_spaces": b"GET / HTTP/1.1\r\n" + H + b"X-A:   a b  \r\n\r\n",
    "header_name_tchars": b"GET / HTTP/1.1\r\n" + H + b"X-!#$%&'*+.^_`|~: b\r\n\r\n",
    "http10_no_host": b"GET / HTTP/1.0\r\n\r\n",
    "absolute_form_same_host": b"GET https://LOCALHOST/x HTTP/1.1\r\n" + H + b"\r\n",
    "asterisk_options": b"OPTIONS * HTTP/1.1\r\n" + H + b"\r\n",
}


def refused(tg, be, pki, data, status):
    """Sends data on a fresh connection; asserts the status, that the
    connection closes, one http_error line, and nothing at the backend."""
    before = len(tg.events("http_error"))
    with Client(tg.addr(), pki) as c:
        c.send(data)
        r = c.response()
        assert r.status == status, (r.status, r.body)
        assert r.get("Connection", "").lower() == "close"
        assert c.closed_by_peer(T(10)), "the connection stayed open after a refusal"
        port = c.port
    evs = tg.wait_event("http_error", count=before + 1)
    mine = [e for e in evs if e.get("client", "").endswith(f":{port}")]
    assert len(mine) == 1, f"{len(mine)} log lines for one refusal"
    assert mine[0]["status"] == str(status)
    # barrier: a good request on a new connection is served; by then the
    # bad one would have reached the backend.
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/barrier").status == 200
    reqs = be.reqs()
    assert [q.target for q in reqs] == ["/barrier"], [q.describe() for q in reqs]
    assert be.count() == 1, "a backend connection was opened for a refused request"
    assert b"/barrier" in bytes(be.raw[0]) and len(be.raw) == 1
    return r


@pytest.mark.parametrize("case", list(SMUGGLING))
def test_smuggling_refused(hserve, pki, case):
    tg, be = hserve()
    refused(tg, be, pki, SMUGGLING[case], 400)


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_well_formed_twins_accepted(hserve, pki, case):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(ACCEPTED[case])
        r = c.response()
    assert r.status == 200
    req = be.wait_requests(1)[0]
    if case in ("cl", "te", "te_case"):
        assert req.body_len == 3 and bytes(req.body) == b"abc"
    if case == "header_value_spaces":
        assert req.get("X-A") == "a b"


def test_bad_chunk_in_streamed_body(hserve, pki):
    """A chunked body is streamed, so its head may already be on its way
    when a bad chunk shows up: the client gets 400, the backend connection
    is closed (never reused) and the backend never gets a whole request."""
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /bad HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\nzz\r\nabc\r\n0\r\n\r\n")
        r = c.response()
        assert r.status == 400
        assert c.closed_by_peer(T(10))
    tg.wait_event("http_error", status="400")
    assert be.reqs() == []
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/next").status == 200
    assert [q.target for q in be.reqs()] == ["/next"]
    assert be.reqs()[0].conn_no == be.count() and be.count() in (1, 2)


def test_repeated_host_cannot_dodge_the_mtls_host_check(hserve, pki):
    """On a mutual listener the first Host matches the SNI name; a second
    one (which some backends prefer) must not get through."""
    tg, be = hserve(https_listener(mode="mutual"))
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        c.send(SMUGGLING["repeated_host"])
        assert c.response().status == 400
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        c.send(SMUGGLING["absolute_form_other_host"])
        assert c.response().status == 400
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.request("GET", "/fine").status == 200
    assert [q.target for q in be.reqs()] == ["/fine"]


def test_request_trailers_refused(hserve, pki):
    """Trailer fields would carry identity headers past the rewriting: a
    request with trailers is refused and never reaches the backend whole."""
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /t HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\nClient-Cert: :AAAA:\r\nX-Client-Verify: SUCCESS\r\n\r\n")
        assert c.response().status == 400
        assert c.closed_by_peer(T(10))
    tg.wait_event("http_error", status="400")
    assert be.reqs() == []
    for raw in be.raw:
        assert b"Client-Cert: :AAAA:" not in bytes(raw)
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /t HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
        assert c.response().status == 200
    assert [q.body_len for q in be.reqs()] == [3]


def test_smuggled_second_request_never_reaches_backend(hserve, pki):
    """The classic CL.TE attack: the 'body' holds a second request."""
    tg, be = hserve()
    inner = b"GET /admin HTTP/1.1\r\nHost: localhost\r\n\r\n"
    body = b"0\r\n\r\n" + inner
    data = (b"POST / HTTP/1.1\r\n" + H + b"Content-Length: %d\r\n" % len(body) +
            b"Transfer-Encoding: chunked\r\n\r\n" + body)
    refused(tg, be, pki, data, 400)
    assert all("/admin" not in q.target for q in be.reqs())


def test_request_line_too_long_414(hserve, pki):
    tg, be = hserve()
    refused(tg, be, pki, b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n" + H + b"\r\n", 414)


def test_request_line_long_but_allowed(hserve, pki):
    tg, be = hserve()
    target = "/" + "a" * 7000
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", target).status == 200
    assert be.reqs()[0].target == target


def test_header_bytes_431(hserve, pki):
    tg, be = hserve()
    refused(tg, be, pki, b"GET / HTTP/1.1\r\n" + H + b"X-Big: " + b"v" * 17000 + b"\r\n\r\n", 431)


def test_header_bytes_431_many_small(hserve, pki):
    tg, be = hserve()
    hdrs = b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 300) for i in range(60))
    refused(tg, be, pki, b"GET / HTTP/1.1\r\n" + H + hdrs + b"\r\n", 431)


def test_header_count_431(hserve, pki):
    tg, be = hserve()
    hdrs = b"".join(b"X-H%d: v\r\n" % i for i in range(120))
    refused(tg, be, pki, b"GET / HTTP/1.1\r\n" + H + hdrs + b"\r\n", 431)


def test_header_limits_twin_accepted(hserve, pki):
    tg, be = hserve()
    hdrs = [(f"X-H{i}", "v" * 100) for i in range(90)]
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/", headers=hdrs).status == 200
    assert len(be.reqs()[0].all("X-H89")) == 1


def test_body_over_max_body_size_413(hserve, pki):
    tg, be = hserve(https_listener(max_body_size="1k"))
    refused(tg, be, pki, b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 1025\r\n\r\n" +
            b"x" * 1025, 413)


def test_chunked_body_over_max_body_size_413(hserve, pki):
    """A chunked body has no declared size: the limit hits while streaming;
    the client still gets 413 if nothing of the response was sent yet, and
    the backend never gets a complete request."""
    tg, be = hserve(https_listener(max_body_size="1k"))
    with Client(tg.addr(), pki) as c:
        c.send(b"POST /up HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            c.send(b"200\r\n" + b"y" * 512 + b"\r\n")
        c.send(b"0\r\n\r\n")
        try:
            r = c.response()
            assert r.status == 413
        except (EOFError, OSError):
            pass
        assert c.closed_by_peer(T(10))
    tg.wait_event("http_error", status="413")
    for q in be.reqs():
        assert q.target != "/up", "a request over max_body_size reached the backend whole"


def test_body_at_max_body_size_accepted(hserve, pki):
    tg, be = hserve(https_listener(max_body_size="1k"))
    with Client(tg.addr(), pki) as c:
        assert c.request("POST", "/", body=b"x" * 1024).status == 200
        c.send(b"POST /c HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
               b"400\r\n" + b"y" * 1024 + b"\r\n0\r\n\r\n")
        assert c.response().status == 200
    assert [q.body_len for q in be.reqs()] == [1024, 1024]


def test_header_timeout_408(hserve, pki):
    tg, be = hserve(https_listener(header_timeout="1s"))
    with Client(tg.addr(), pki) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: loc")
        r = c.response()
        assert r.status == 408
        assert c.closed_by_peer(T(10))
    tg.wait_event("http_error", status="408")
    assert be.count() == 0


def test_header_timeout_twin_slow_but_in_time(hserve, pki):
    tg, be = hserve(https_listener(header_timeout="10s"))
    with Client(tg.addr(), pki) as c:
        for part in (b"GET / HTTP/1.1\r\n", b"Host: localhost\r\n", b"\r\n"):
            c.send(part)
        assert c.response().status == 200


def test_idle_keepalive_closed_quietly(hserve, pki):
    """An idle keep-alive connection after a complete request is closed
    without an error page (no 408 to a client that sent nothing)."""
    tg, be = hserve(https_listener(idle_timeout="1s", header_timeout="1s"))
    with Client(tg.addr(), pki) as c:
        assert c.request("GET", "/").status == 200
        assert c.closed_by_peer(T(10))
        assert not c.r.buf
    assert tg.events("http_error") == []


def test_connect_method_refused(hserve, pki):
    tg, be = hserve()
    refused(tg, be, pki, b"CONNECT localhost:443 HTTP/1.1\r\n" + H + b"\r\n", 405)


def test_error_pages_leak_nothing(hserve, pki):
    tg, be = hserve()
    r = refused(tg, be, pki, SMUGGLING["cl_and_te"], 400)
    body = r.body.decode()
    assert body.startswith("400 Bad Request")
    assert "127.0.0.1" not in body and be.address not in body and "llhttp" not in body.lower()


def test_header_timeout_for_a_pipelined_partial_head(hserve, pki):
    """A partial head left behind a complete request gets header_timeout,
    not the (much longer) idle timeout."""
    tg, be = hserve(https_listener(header_timeout="1s", idle_timeout="60s"))
    with Client(tg.addr(), pki, timeout=T(30)) as c:
        c.send(tg_http.build("GET", "/full") + b"GET /partial HTTP/1.1\r\nHo")
        assert c.response().status == 200
        t0 = time.monotonic()
        r = c.response()
        assert r.status == 408
        assert time.monotonic() - t0 < T(15)
    assert [q.target for q in be.reqs()] == ["/full"]


def test_header_timeout_twin_next_request_on_keepalive(hserve, pki):
    """Twin: a keep-alive connection may stay idle longer than
    header_timeout between requests (idle_timeout applies)."""
    tg, be = hserve(https_listener(header_timeout="1s", idle_timeout="60s"))
    with Client(tg.addr(), pki, timeout=T(30)) as c:
        assert c.request("GET", "/1").status == 200
        assert not c.closed_by_peer(2.5)
        assert c.request("GET", "/2").status == 200


@pytest.mark.parametrize("protocol", ["https", "http"])
def test_early_413_survives_the_rest_of_the_upload(hserve, pki, tmp_path, protocol):
    """An upload refused from its Content-Length alone: tollgate answers 413
    while curl is still sending 8 MiB. A lingering close (read and discard,
    bounded) lets curl finish and read the answer every time, instead of a
    reset that can lose it."""
    import subprocess
    tg, be = hserve(https_listener(protocol=protocol, max_body_size="1k"))
    body = tmp_path / "body"
    body.write_bytes(b"z" * (8 << 20))
    port = tg.addr()[1]
    for _ in range(8):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "--cacert", pki.path("root.crt"),
                            "--resolve", f"localhost:{port}:127.0.0.1",
                            "--data-binary", f"@{body}", "-H", "Expect:",
                            f"{protocol}://localhost:{port}/up"],
                           capture_output=True, text=True, timeout=T(30))
        assert (r.returncode, r.stdout) == (0, "413"), r.stderr
    assert be.count() == 0


@pytest.mark.parametrize("protocol", ["https", "http"])
def test_backend_early_answer_reaches_a_client_still_uploading(hserve, pki, tmp_path, protocol):
    """The backend answers 413 from the head alone and closes while curl is
    still sending 8 MiB: tollgate stops forwarding the body, passes the
    backend's answer on (with Connection: close) instead of a 502, and
    lingers so that curl reads it."""
    import subprocess
    tg, be = hserve(https_listener(protocol=protocol))
    be.early = lambda req: tg_http.Reply(413, body=b"too big\n", close=True)
    be.continue_100 = False
    body = tmp_path / "body"
    body.write_bytes(b"z" * (8 << 20))
    port = tg.addr()[1]
    codes = []
    for _ in range(8):
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            "--cacert", pki.path("root.crt"),
                            "--resolve", f"localhost:{port}:127.0.0.1",
                            "--data-binary", f"@{body}", "-H", "Expect:",
                            f"{protocol}://localhost:{port}/up"],
                           capture_output=True, text=True, timeout=T(30))
        codes.append((r.returncode, r.stdout))
    assert codes == [(0, "413")] * 8, codes
