"""Requests read one way only: HTTP/1.0 with Transfer-Encoding is refused,
and Host values are read strictly as uri-host [":" port], so that the
parser, routing and the mutual-TLS Host check see the same host."""

import socket
import threading

import pytest

from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T


def get(tg, pki, cert=None, headers=(), host="localhost", target="/"):
    with Client(tg.addr(), pki, cert=cert) as c:
        return c.request("GET", target, host=host, headers=headers)


# ---- B. request framing and Host ----

def raw(tg, pki, data, cert=None):
    with Client(tg.addr(), pki, cert=cert) as c:
        c.send(data)
        return c.response()


BAD_HOSTS = ["[localhost]evil.example", "localhost:evil.example", "localhost:", ":443",
             "localhost:0x50", "localhost:65536", "[v1.x]", "%6cocalhost"]


@pytest.mark.parametrize("mode", ["one-way", "mutual"])
@pytest.mark.parametrize("host", BAD_HOSTS)
def test_host_not_uri_host_is_refused(hserve, pki, mode, host):
    tg, be = hserve(https_listener(mode=mode))
    cert = pki.client("alice") if mode == "mutual" else None
    r = raw(tg, pki, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode(), cert=cert)
    assert r.status == 400, (r.status, r.body)
    tg.wait_event("http_error", status="400")
    # barrier: a good request is served, and it is the only one the backend saw.
    assert get(tg, pki, cert=cert, target="/barrier").status == 200
    assert [q.target for q in be.reqs()] == ["/barrier"]


@pytest.mark.parametrize("host,status", [("localhost:443", 200), ("LOCALHOST.", 200),
                                         ("localhost.:8443", 200), ("localhost..", 421),
                                         ("other.example:443", 421)])
def test_host_vs_sni_reads_the_parsed_host(hserve, pki, host, status):
    """On a mutual listener the Host's name (port ignored, case-insensitive,
    one trailing dot ignored) must be the SNI name; the Host is forwarded
    as sent."""
    tg, be = hserve(https_listener(mode="mutual"))
    r = get(tg, pki, cert=pki.client("alice"), host=host)
    assert r.status == status, (r.status, r.body)
    if status == 200:
        assert be.reqs()[0].get("Host") == host
    else:
        assert be.reqs() == []


@pytest.fixture
def routed(tollgate, hbackend):
    """A mutual listener whose rule for host localhost goes to "site",
    everything else to "rest"."""
    site, rest = hbackend(), hbackend()
    lst = https_listener(mode="mutual", default="rest",
                         rules=[{"host": "localhost", "target_group": "site"}])
    tg = tollgate({"target_groups": {"site": {"targets": [{"address": site.address}]},
                                     "rest": {"targets": [{"address": rest.address}]}},
                   "listeners": [lst]})
    return tg, site, rest


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "localhost:443"])
def test_host_rule_matches_the_checked_host(routed, pki, host):
    """Rules read the Host as the 421 check does: what passed the check as
    localhost is routed as localhost."""
    tg, site, rest = routed
    assert get(tg, pki, cert=pki.client("alice"), host=host).status == 200
    assert len(site.reqs()) == 1 and rest.reqs() == []


def test_http10_transfer_encoding_refused(hserve, pki):
    tg, be = hserve()
    r = raw(tg, pki, b"POST /a HTTP/1.0\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n")
    assert r.status == 400
    tg.wait_event("http_error", status="400")
    # twins: HTTP/1.0 with Content-Length, HTTP/1.1 chunked.
    r = raw(tg, pki, b"POST /b HTTP/1.0\r\nHost: localhost\r\nContent-Length: 3\r\n\r\nabc")
    assert r.status == 200
    r = raw(tg, pki, b"POST /c HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"3\r\nabc\r\n0\r\n\r\n")
    assert r.status == 200
    reqs = be.reqs()
    assert [(q.target, q.version, bytes(q.body)) for q in reqs] == [
        ("/b", "HTTP/1.0", b"abc"), ("/c", "HTTP/1.1", b"abc")]


@pytest.mark.parametrize("version,status", [("1.0", 502), ("1.1", 200)])
def test_http10_transfer_encoding_response_is_502(tollgate, pki, version, status):
    """The same rule for a backend's HTTP/1.0 response (RFC 9112 §6.1)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(T(10))

    def serve_one():
        try:
            s, _ = srv.accept()
        except OSError:
            return
        with s:
            s.settimeout(T(10))
            buf = b""
            while b"\r\n\r\n" not in buf:
                d = s.recv(4096)
                if not d:
                    return
                buf += d
            s.sendall(f"HTTP/{version} 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n0\r\n\r\n".encode())

    t = threading.Thread(target=serve_one, daemon=True)
    t.start()
    host, port = srv.getsockname()
    tg = tollgate({"target_groups": {"g": {"targets": [{"address": f"{host}:{port}"}]}},
                   "listeners": [https_listener()]})
    try:
        r = get(tg, pki)
        assert r.status == status
        assert status != 200 or r.body == b"abc"
    finally:
        t.join(T(10))
        srv.close()
