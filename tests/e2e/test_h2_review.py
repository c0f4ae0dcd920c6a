"""HTTP/2 under review as an attacker sees it: the HTTP/2 -> HTTP/1.1
conversion (smuggling, identity fields, the 421 check), the connection's
flow-control accounting when streams end with body bytes still held, and a
revocation cut that lands while a stream's header block is on its way.

Each test that shows a fault in tollgate is marked xfail(strict) with its
cause; the others pin behaviour found sound."""

import struct
import time

import pytest

import tg_h2
from test_live_trust import serial_of, write_crl
from tg_h2 import (CONTINUATION, END_HEADERS, HEADERS, WINDOW_UPDATE, RawH2, data_frame, frame,
                   req_headers, rst_stream)
from tg_http import hbackend, hserve, https_listener, json_reply  # noqa: F401
from tg_proc import T, group


def echo_request(tg, be, pki, headers, authority="localhost", cert=None, sni="localhost",
                 path="/echo"):
    """One GET over h2 with extra header fields; (status, the request the
    backend received or None)."""
    before = be.count()
    with RawH2(tg.addr(), pki, cert=cert, sni=sni) as c:
        c.send(c.headers_frame(1, req_headers(path=path, authority=authority, extra=headers)))
        st = c.status_of(1, timeout=T(10))
    reqs = be.reqs()[before:]
    return st, (reqs[-1] if reqs else None)


# ---- smuggling through the conversion: what the target receives ----

def test_fields_reach_the_target_as_one_clean_head(hserve, pki):
    """Cookie crumbs are joined into one Cookie field, host equal to
    :authority is folded into the one Host, a body without content-length
    is chunked, and a body with one is sent as is: the target sees exactly
    one framing and one Host."""
    tg, be = hserve(handler=json_reply)
    st, r = echo_request(tg, be, pki, [("cookie", "a=1"), ("cookie", "b=2"),
                                       ("host", "LOCALHOST"), ("x-a", "v")])
    assert st == 200
    assert r.all("host") == ["localhost"]
    assert r.all("cookie") == ["a=1; b=2"]
    with RawH2(tg.addr(), pki) as c:
        c.request(1, "POST", "/p1", body=b"hello")
        assert c.response(1)[0] == 200
        c.request(3, "POST", "/p2", extra=[("content-length", "5")], body=b"hello")
        assert c.response(3)[0] == 200
    p1 = [r for r in be.reqs() if r.target == "/p1"][0]
    p2 = [r for r in be.reqs() if r.target == "/p2"][0]
    assert p1.chunked and p1.get("content-length") is None and bytes(p1.body) == b"hello"
    assert not p2.chunked and p2.get("content-length") == "5" and bytes(p2.body) == b"hello"


@pytest.mark.parametrize("fields", [
    [("host", "other.example")],
    [("content-length", "1"), ("content-length", "1")],
    [("transfer-encoding", "chunked")],
    [("x-a", "v\r\nx-injected: 1")],
    [("x-a", " padded ")],
], ids=["host_mismatch", "two_lengths", "te_chunked", "crlf", "padded"])
def test_malformed_requests_never_reach_the_target(hserve, pki, fields):
    """What nghttp2 or make_head must refuse never reaches the target."""
    tg, be = hserve(handler=json_reply)
    with RawH2(tg.addr(), pki) as c:
        try:
            c.send(c.headers_frame(1, req_headers(path="/bad", extra=fields)))
        except ValueError:
            pytest.skip("the hpack encoder refuses this field")
        st = c.status_of(1, timeout=T(10))
    assert st == 400 or st[0] in ("rst", "goaway"), st
    assert not [r for r in be.reqs() if r.target == "/bad"]


def test_identity_fields_from_the_client_are_replaced(hserve, pki):
    """X-Client-* and X-Forwarded-* sent by an h2 client (any case, with
    underscores) are not what the target sees."""
    tg, be = hserve(handler=json_reply)
    forged = [("x-client-cert-subject", "CN=admin"), ("x_client_cert_subject", "CN=admin"),
              ("x-client-verify", "SUCCESS"), ("x-forwarded-for", "10.6.6.6"),
              ("x-forwarded-proto", "http"), ("x-real-ip", "10.6.6.6"),
              ("forwarded", "for=10.6.6.6")]
    st, r = echo_request(tg, be, pki, forged)
    assert st == 200
    for n, v in r.headers:
        assert "CN=admin" not in v and "10.6.6.6" not in v, (n, v)
        assert "_" not in n, (n, v)


# ---- 421 on mutual listeners ----

@pytest.mark.parametrize("authority,fields,want", [
    ("localhost", [], 200),
    ("LOCALHOST.", [], 200),
    ("localhost:443", [], 200),
    ("other.example", [], 421),
    (None, [("host", "other.example")], 421),
    ("", [("host", "other.example")], 421),
    ("localhost", [("host", "other.example")], 400),
    ("localhost@other.example", [], (400, 421)),
], ids=["same", "case_dot", "port", "other", "host_only", "empty_authority", "both_differ",
        "userinfo"])
def test_mutual_listener_host_must_be_the_sni(hserve, pki, authority, fields, want):
    tg, be = hserve(https_listener(mode="mutual"), handler=json_reply)
    try:
        st, r = echo_request(tg, be, pki, fields, authority=authority, cert=pki.client("alice"))
    except ValueError:
        pytest.skip("refused by the client library")
    want = want if isinstance(want, tuple) else (want,)
    if st in ("rst", "goaway") or isinstance(st, tuple):
        assert 200 not in want, st
        return
    assert st in want, st
    if st != 200:
        assert r is None or r.target != "/echo"


# ---- flow control: body bytes held by a stream that ends ----

def conn_window_returned(c, timeout):
    """The connection-level WINDOW_UPDATE increments the server sends
    within timeout."""
    got = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            f = c.read_frame(max(0.05, deadline - time.monotonic()))
        except (TimeoutError, OSError):
            break
        if f is None:
            break
        if f.type == WINDOW_UPDATE and f.sid == 0:
            got += f.increment
    return got


def test_reset_streams_return_their_held_body_to_the_connection_window(tollgate, hbackend, pki):
    """Streams routed to a target whose connect hangs, each sending a full
    stream window of body (16 KiB) and then reset by the client: the
    connection window must come back (a WINDOW_UPDATE on stream 0 for what
    the streams held), else the connection's later uploads stall. nghttp2
    sends the update once half of the 1 MiB window is to be given back, so
    48 streams (768 KiB) are reset and all but that half must come back."""
    hole = tg_h2.Blackhole()
    be = hbackend()
    try:
        tg = tollgate({"target_groups": {"g": group(be.address), "bh": group(hole.address)},
                       "listeners": [https_listener(connect_timeout="20s",
                                                    rules=[{"path": "/hole",
                                                            "target_group": "bh"}])]})
        n, size, batched = 48, 16384, 512 * 1024
        with RawH2(tg.addr(), pki) as c:
            for i in range(n):
                sid = 1 + 2 * i
                c.send(c.headers_frame(sid, req_headers("POST", "/hole"), end_stream=False) +
                       data_frame(sid, b"x" * size))
            # every stream is in its connect, its body held; the window
            # updates sent so far (the connection's initial one) are not counted
            conn_window_returned(c, 0.3)
            c.send(b"".join(rst_stream(1 + 2 * i) for i in range(n)))
            got = conn_window_returned(c, T(2))
            print(f"connection window returned: {got} of {n * size}")
            assert got >= n * size - batched, f"only {got} of {n * size} bytes came back"
    finally:
        hole.close()


# ---- revocation cut with a header block on its way ----

def test_cut_lets_no_request_start_after_revocation(tollgate, hbackend, pki, tmp_path):
    """A revoked client whose stream's header block is only half sent
    (HEADERS without END_HEADERS) when the CRL revoking it is loaded: the
    rest of the block (CONTINUATION) must not become a request forwarded
    with the revoked certificate's identity. HTTP/1.1 closes a connection
    waiting for a head at once (http_on_cut)."""
    crl = tmp_path / "clients.crl"
    write_crl(pki, crl, number=1)
    be = hbackend(json_reply)
    tg = tollgate({"client_cas": {"pki": {"ca": pki.path("root.crt"), "crl": str(crl),
                                          "crl_check_interval": "1s"}},
                   "target_groups": {"g": group(be.address)},
                   "listeners": [https_listener(mode="mutual", response_timeout="10s")]})
    with RawH2(tg.addr(), pki, cert=pki.client("alice")) as c:
        c.send(c.headers_frame(1, req_headers(path="/before")))
        assert c.status_of(1) == 200
        block = c.block_of(req_headers(path="/after-revocation",
                                       extra=[("x-pad", "p" * 64)]))
        c.send(frame(HEADERS, tg_h2.END_STREAM, 3, block[:8]))
        write_crl(pki, crl, revoked=(serial_of(pki.client("alice")[0]),), number=2)
        tg.wait_event("connection_revoked", timeout=T(10))
        c.send(frame(CONTINUATION, END_HEADERS, 3, block[8:]))
        try:
            c.status_of(3, timeout=T(3))
        except (AssertionError, tg_h2.ConnClosed):
            pass
    time.sleep(0.2)
    late = [r for r in be.reqs() if r.target == "/after-revocation"]
    if late:
        print("forwarded after the cut:", late[0].headers)
    assert not late, "a request was forwarded after the client certificate was revoked"
