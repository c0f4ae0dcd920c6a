"""Identity the backend cannot be misled about, and requests read one way
only: client copies of identity headers in any spelling (X_Client_Verify,
Forwarded, X-Forwarded-Host, ...), header names with '_'
(allow_underscores_in_headers), the client's X-Forwarded-For (replaced
unless the client is in trusted_proxies), HTTP/1.0 with Transfer-Encoding,
and Host values read strictly as uri-host [":" port] so that routing and
the mutual-TLS Host check see the same host."""

import socket
import threading

import pytest

from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, free_port, run_tollgate


def get(tg, pki, cert=None, headers=(), host="localhost", target="/"):
    with Client(tg.addr(), pki, cert=cert) as c:
        return c.request("GET", target, host=host, headers=headers)


# ---- A. identity spoofing through header spellings ----

def folded(name):
    """A header name as a CGI-style backend reads it."""
    return name.lower().replace("_", "-")


def values(req, name):
    """Every value the backend got under name, in any spelling."""
    return [v for n, v in req.headers if folded(n) == folded(name)]


def mutual(**extra):
    return https_listener(mode="mutual", client_auth="optional", **extra)


SPELLINGS = [
    ("X_Client_Verify", "SUCCESS"),
    ("x_client_subject", "CN=admin"),
    ("X-Client_Verify", "SUCCESS"),
    ("X_Real_IP", "10.6.6.6"),
    ("Client_Cert", ":AAAA:"),
    ("X_Forwarded_Proto", "http"),
    ("Forwarded", "for=10.6.6.6;proto=https"),
    ("X-Forwarded-Host", "admin.internal"),
    ("X-Forwarded-Client-Cert", 'Hash=00;Subject="CN=admin"'),
    ("X-Forwarded-Server", "admin.internal"),
]


@pytest.mark.parametrize("name,value", SPELLINGS, ids=[n for n, _ in SPELLINGS])
def test_identity_spelling_never_reaches_backend(hserve, pki, name, value):
    tg, be = hserve(mutual())
    r = get(tg, pki, headers=[(name, value), ("X-Custom", "kept")])
    assert r.status == 200
    req = be.reqs()[0]
    assert value not in values(req, name), f"the client's {name} reached the backend"
    assert len(values(req, name)) <= 1, values(req, name)
    # What a backend reads under that name is ours, never the client's.
    assert values(req, "X-Client-Verify") == ["NONE"]
    assert values(req, "X-Real-IP") == ["127.0.0.1"]
    # twin: an ordinary header with a dash passes.
    assert req.get("X-Custom") == "kept"


def test_underscore_names_dropped_by_default(hserve, pki):
    tg, be = hserve()
    get(tg, pki, headers=[("X_Custom", "1"), ("X-Custom", "2")])
    req = be.reqs()[0]
    assert "x_custom" not in req.names()
    assert req.get("X-Custom") == "2"


def test_allow_underscores_in_headers_keeps_ordinary_names_only(hserve, pki):
    tg, be = hserve(mutual(allow_underscores_in_headers=True))
    r = get(tg, pki, headers=[("X_Custom", "1"), ("X_Client_Verify", "SUCCESS"),
                              ("X_Forwarded_For", "10.6.6.6"), ("Transfer_Encoding", "chunked"),
                              ("Content_Length", "5")])
    assert r.status == 200
    req = be.reqs()[0]
    assert req.get("X_Custom") == "1"
    assert values(req, "X-Client-Verify") == ["NONE"]
    assert values(req, "X-Forwarded-For") == ["127.0.0.1"]
    assert values(req, "Transfer-Encoding") == [] and values(req, "Content-Length") == []
    assert req.body_len == 0


def test_forwarded_for_replaced_for_untrusted_client(hserve, pki):
    tg, be = hserve()
    get(tg, pki, headers=[("X-Forwarded-For", "10.6.6.6"), ("X-Forwarded-For", "10.7.7.7")])
    assert be.reqs()[0].all("X-Forwarded-For") == ["127.0.0.1"]


@pytest.mark.parametrize("nets,trusted", [(["127.0.0.1/8"], True),
                                          (["10.0.0.0/8", "::1", "127.0.0.2"], False)])
def test_forwarded_for_appended_only_for_trusted_proxy(hserve, pki, nets, trusted):
    tg, be = hserve(https_listener(trusted_proxies=nets))
    get(tg, pki, headers=[("X-Forwarded-For", "203.0.113.9, 10.0.0.1")])
    want = "203.0.113.9, 10.0.0.1, 127.0.0.1" if trusted else "127.0.0.1"
    req = be.reqs()[0]
    assert req.all("X-Forwarded-For") == [want]
    # Our own facts never come from the trusted proxy.
    assert req.get("X-Real-IP") == "127.0.0.1"


@pytest.mark.parametrize("add", [True, False])
def test_forwarded_header_is_ours_only_when_asked(hserve, pki, add):
    tg, be = hserve(https_listener(add_forwarded_header=add, trusted_proxies=["127.0.0.1"]))
    get(tg, pki, headers=[("Forwarded", "for=10.6.6.6;proto=https")])
    req = be.reqs()[0]
    assert req.all("Forwarded") == (["for=127.0.0.1;proto=https"] if add else [])


def check_lines(pki, listener_extra):
    port = free_port()
    return [
        "certificates:",                                              # 1
        f"  site: {{ cert: {pki.path('server-ecdsa.crt')}, key: {pki.path('server-ecdsa.key')} }}",
        "target_groups:",                                             # 3
        "  web: { targets: [ { address: 127.0.0.1:9 } ] }",           # 4
        "listeners:",                                                 # 5
        "  - name: api",                                              # 6
        "    protocol: https",                                        # 7
        f"    listen: 127.0.0.1:{port}",                              # 8
        "    tls: { certificates: [site] }",                          # 9
        "    default_target_group: web",                              # 10
    ] + listener_extra                                                # 11...


def test_trusted_proxies_bad_cidr_is_a_config_error(tmp_path, pki):
    path = tmp_path / "tollgate.yaml"
    path.write_text("\n".join(check_lines(pki, [
        "    trusted_proxies:",
        "      - 10.0.0.0/8",
        "      - 10.0.0.0/33",
        "      - 'fe80::/129'",
        "      - 10.0.0",
        "    allow_underscores_in_headers: maybe",
    ])) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode != 0
    err = r.stderr
    assert f"{path}:13:9: listeners[0].trusted_proxies[1]: not a prefix length 0-32" in err, err
    assert f"{path}:14:9: listeners[0].trusted_proxies[2]: not a prefix length 0-128" in err, err
    assert f"{path}:15:9: listeners[0].trusted_proxies[3]: not an IPv4 or IPv6 address" in err, err
    assert f"{path}:16:5: listeners[0].allow_underscores_in_headers: " in err, err
    assert "trusted_proxies[0]" not in err
    # twin: the good entries alone pass.
    path.write_text("\n".join(check_lines(pki, [
        "    trusted_proxies: [ 10.0.0.0/8, '2001:db8::/32', 127.0.0.1, '::1' ]",
        "    allow_underscores_in_headers: true",
    ])) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr


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
