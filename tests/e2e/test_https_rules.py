"""https/http rules: host (exact, *.suffix, case, port ignored), path prefix,
longest match, respond, redirect, default_target_group, 404; the plain http
listener redirecting to https; builtin:echo."""

import json
import subprocess

import pytest

import tg_http
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, group


def tag_handler(tag):
    """A backend answering with its tag and the request target."""
    def handle(req):
        return tg_http.Reply(200, [("Content-Type", "text/plain")],
                             f"{tag} {req.target}".encode())
    return handle


@pytest.fixture
def routed(tollgate, hbackend):
    """Four backends a..d and one listener with host and path rules."""
    bes = {t: hbackend(tag_handler(t)) for t in "abcd"}
    rules = [
        {"host": "api.example.test", "target_group": "a"},
        {"host": "api.example.test", "path": "/v1/", "target_group": "b"},
        {"host": "api.example.test", "path": "/v1/admin/", "target_group": "c"},
        {"host": "*.example.test", "target_group": "d"},
        {"host": "*.deep.example.test", "path": "/", "target_group": "c"},
        {"path": "/ping", "respond": {"status": 200, "body": "pong\n",
                                      "headers": {"X-Tag": "fixed", "Cache-Control": "no-store"}}},
        {"path": "/teapot", "respond": {"status": 418}},
        {"path": "/json", "respond": {"status": 201, "body": "{}",
                                      "headers": {"Content-Type": "application/json"}}},
        {"path": "/old/", "redirect": {"path": "/new/", "status": 308}},
        {"path": "/elsewhere", "redirect": {"scheme": "http", "host": "other.example.test",
                                            "port": 8080, "status": 302}},
        {"path": "/same", "redirect": {}},
        {"path": "/static/", "target_group": "b"},
    ]
    groups = {t: group(b.address) for t, b in bes.items()}
    tg = tollgate({"target_groups": groups,
                   "listeners": [https_listener(rules=rules, default="a")]})
    return tg, bes


def get(tg, pki, target, host="localhost", method="GET", **kw):
    with Client(tg.addr(), pki) as c:
        return c.request(method, target, host=host, **kw)


@pytest.mark.parametrize("host,target,want", [
    ("api.example.test", "/", "a /"),
    ("api.example.test", "/v1/users", "b /v1/users"),
    ("api.example.test", "/v1", "a /v1"),                       # prefix is literal
    ("api.example.test", "/v1/admin/x?q=1", "c /v1/admin/x?q=1"),  # longest path wins
    ("API.Example.TEST", "/v1/x", "b /v1/x"),                   # case-insensitive host
    ("api.example.test:8443", "/v1/x", "b /v1/x"),              # port ignored
    ("api.example.test.", "/v1/x", "b /v1/x"),                  # trailing dot is the same host
    ("www.example.test", "/v1/x", "d /v1/x"),                   # wildcard
    ("a.b.example.test", "/", "d /"),                           # wildcard, two labels
    ("x.deep.example.test", "/z", "c /z"),                      # longer suffix wins
    ("example.test", "/", "a /"),                               # *.x needs a label: default
    ("api.example.test.evil", "/", "a /"),                      # suffix must end the name
    ("localhost", "/static/app.js", "b /static/app.js"),
    ("localhost", "/staticx", "a /staticx"),
    ("localhost", "/v1/", "a /v1/"),                            # host-bound rules don't apply
])
def test_rule_precedence(routed, pki, host, target, want):
    tg, bes = routed
    r = get(tg, pki, target, host=host)
    assert r.status == 200, r.body
    assert r.body.decode() == want


def test_exact_host_beats_wildcard_and_path_rule_without_host(routed, pki):
    """Host specificity is ranked before path length: an exact-host rule
    with a short path beats a host-less rule with a longer path."""
    tg, bes = routed
    assert get(tg, pki, "/ping", host="api.example.test").body == b"a /ping"
    # twin: without a matching host rule, the path rule answers
    r = get(tg, pki, "/ping", host="localhost")
    assert r.body == b"pong\n"


def test_respond_rule(routed, pki):
    tg, bes = routed
    r = get(tg, pki, "/ping")
    assert r.status == 200 and r.body == b"pong\n"
    assert r.get("X-Tag") == "fixed" and r.get("Cache-Control") == "no-store"
    assert r.get("Content-Type", "").startswith("text/plain")
    assert r.get("Content-Length") == "5"
    r = get(tg, pki, "/teapot")
    assert r.status == 418 and r.body == b""
    r = get(tg, pki, "/json")
    assert r.status == 201 and r.body == b"{}"
    assert r.all("Content-Type") == ["application/json"]
    r = get(tg, pki, "/ping", method="HEAD")
    assert r.status == 200 and r.get("Content-Length") == "5"
    assert sum(len(b.reqs()) for b in bes.values()) == 0, "a fixed response reached a backend"


def test_respond_keeps_connection_and_drains_body(routed, pki):
    """A respond rule answering a request with a body must not read the body
    as the next request."""
    tg, bes = routed
    with Client(tg.addr(), pki) as c:
        smuggled = b"GET /v1/admin/ HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
        r = c.request("POST", "/ping", body=smuggled)
        assert r.status == 200 and r.body == b"pong\n"
        if not c.closed_by_peer(T(2)):
            r2 = c.request("GET", "/v1/x", host="api.example.test")
            assert r2.body == b"b /v1/x"
    assert len(bes["c"].reqs()) == 0, "a request body was taken for a request"


@pytest.mark.parametrize("target,location,status", [
    ("/old/page?x=1&y=2", "https://localhost/new/?x=1&y=2", 308),
    ("/old/", "https://localhost/new/", 308),
    ("/elsewhere/a?b", "http://other.example.test:8080/elsewhere/a?b", 302),
    ("/same/x?q", "https://localhost/same/x?q", 301),
])
def test_redirect_keeps_query(routed, pki, target, location, status):
    tg, bes = routed
    r = get(tg, pki, target)
    assert r.status == status
    assert r.get("Location") == location
    assert sum(len(b.reqs()) for b in bes.values()) == 0


def test_redirect_keeps_port_free_host(routed, pki):
    tg, _ = routed
    r = get(tg, pki, "/same?x", host="LocalHost:4443")
    assert r.status == 301
    assert r.get("Location") == "https://LocalHost/same?x"


def test_no_rule_no_default_gives_404(hserve, pki):
    tg, be = hserve(https_listener(rules=[{"path": "/api/", "target_group": "g"}], default=None))
    r = get(tg, pki, "/other")
    assert r.status == 404
    assert len(be.reqs()) == 0
    # twin: the rule's path reaches the backend
    r = get(tg, pki, "/api/x")
    assert r.status == 200 and r.json()["target"] == "/api/x"
    assert len(be.reqs()) == 1


def test_default_target_group(hserve, pki):
    tg, be = hserve(https_listener(rules=[{"path": "/x", "respond": {"status": 204}}]))
    r = get(tg, pki, "/anything?y")
    assert r.status == 200 and r.json()["target"] == "/anything?y"
    r = get(tg, pki, "/x")
    assert r.status == 204
    assert len(be.reqs()) == 1


def test_http_listener_redirects_to_https(tollgate, hbackend, pki):
    be = hbackend()
    tg = tollgate({
        "target_groups": {"g": group(be.address)},
        "listeners": [
            https_listener(),
            https_listener(name="plain", protocol="http", default=None,
                           rules=[{"redirect": {"scheme": "https", "port": 8443,
                                                "status": 301}}]),
        ]})
    with Client(tg.addr("plain"), tls=False) as c:
        r = c.request("GET", "/path/x?a=b&c", host="shop.example.test:80")
    assert r.status == 301
    assert r.get("Location") == "https://shop.example.test:8443/path/x?a=b&c"
    assert len(be.reqs()) == 0
    # curl follows nothing but reports the same
    out = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}",
                          f"http://127.0.0.1:{tg.addr('plain')[1]}/q?z=1"],
                         capture_output=True, text=True, timeout=T(20)).stdout
    assert out == "301 https://127.0.0.1:8443/q?z=1"


def test_http_listener_proxies_plain(tollgate, hbackend, pki):
    """Twin: a plain http listener without rules proxies, with Proto http."""
    be = hbackend()
    tg = tollgate({"target_groups": {"g": group(be.address)},
                   "listeners": [https_listener(name="plain", protocol="http")]})
    with Client(tg.addr("plain"), tls=False) as c:
        r = c.request("GET", "/p", headers=[("X-Client-Verify", "SUCCESS")])
    assert r.status == 200
    req = be.reqs()[0]
    assert req.get("X-Forwarded-Proto") == "http"
    assert req.get("X-Forwarded-Port") == str(tg.addr("plain")[1])
    assert req.all("X-Client-Verify") == [], "a plain listener forwarded a client's verdict"


def test_builtin_echo_json(tollgate, pki):
    tg = tollgate({"target_groups": {"g": group("builtin:echo")},
                   "listeners": [https_listener()]})
    with Client(tg.addr(), pki) as c:
        port = c.port
        r = c.request("POST", "/echo/me?x=1", headers=[("X-Thing", "a"), ("X-Thing", "b"),
                                                       ("X-Real-IP", "10.9.9.9")],
                      body=b"0123456789")
        assert r.status == 200 and r.get("Content-Type") == "application/json"
        d = r.json()
        r2 = c.request("GET", "/second")
        assert r2.json()["path"] == "/second"
    assert d["method"] == "POST" and d["path"] == "/echo/me?x=1" and d["version"] == "HTTP/1.1"
    h = d["headers"]
    assert h["x-thing"] == "a, b"
    assert h["x-forwarded-for"] == "127.0.0.1"
    assert h["x-real-ip"] == "127.0.0.1", "the client's X-Real-IP was believed"
    assert h["x-forwarded-proto"] == "https"
    assert h["x-client-verify"] == "NONE"
    assert d["client"] == "127.0.0.1"
    assert d["body_bytes"] == 10
    assert d["body_sha256"] == "84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882"
    rec = tg.access_for(port)
    assert rec["target"] == "builtin:echo"


def test_curl_against_builtin_echo(tollgate, pki):
    tg = tollgate({"target_groups": {"g": group("builtin:echo")},
                   "listeners": [https_listener()]})
    port = tg.addr()[1]
    out = subprocess.run(["curl", "-sS", "--cacert", pki.path("root.crt"),
                          "--resolve", f"localhost:{port}:127.0.0.1",
                          f"https://localhost:{port}/hello"],
                         capture_output=True, text=True, timeout=T(20))
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert d["path"] == "/hello" and d["headers"]["host"] == f"localhost:{port}"
    # twin: curl without the CA refuses the server
    bad = subprocess.run(["curl", "-sS", "--resolve", f"localhost:{port}:127.0.0.1",
                          f"https://localhost:{port}/hello"],
                         capture_output=True, text=True, timeout=T(20))
    assert bad.returncode != 0


@pytest.mark.parametrize("target", ["/admin/x", "/x/../admin/x", "/./admin/", "/%61dmin/x",
                                    "/x/%2e%2e/admin/?q", "https://localhost/admin/x"])
def test_path_rule_cannot_be_dodged(hserve, pki, target):
    """A deny rule holds however the path is spelled: the backend would
    act on the normalized path, so the rule is matched on it too."""
    tg, be = hserve(https_listener(rules=[{"path": "/admin/",
                                           "respond": {"status": 403, "body": "no\n"}}]))
    with Client(tg.addr(), pki) as c:
        c.send(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        r = c.response()
    assert r.status == 403, r.body
    assert be.reqs() == []


@pytest.mark.parametrize("target", ["/admin", "/admin/../x", "/Admin/x", "/admin%2Fx",
                                    "https://localhost/x"])
def test_path_rule_twins_pass(hserve, pki, target):
    tg, be = hserve(https_listener(rules=[{"path": "/admin/",
                                           "respond": {"status": 403, "body": "no\n"}}]))
    with Client(tg.addr(), pki) as c:
        c.send(f"GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        r = c.response()
    assert r.status == 200
    assert be.reqs()[0].target == target, "the target must be forwarded as sent"


@pytest.mark.parametrize("status", [100, 101, 199])
def test_respond_rule_with_1xx_is_refused_by_check(tmp_path, pki, status):
    from tg_proc import Tollgate, run_tollgate
    tg = Tollgate(tmp_path, pki)
    path = tg.write_config({"target_groups": {"g": group("builtin:echo")},
                            "listeners": [https_listener(rules=[
                                {"path": "/x", "respond": {"status": status}}])]})
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 1, r.stdout + r.stderr


def test_respond_rule_with_200_passes_check(tmp_path, pki):
    """Twin: a final status passes."""
    from tg_proc import Tollgate, run_tollgate
    tg = Tollgate(tmp_path, pki)
    path = tg.write_config({"target_groups": {"g": group("builtin:echo")},
                            "listeners": [https_listener(rules=[
                                {"path": "/x", "respond": {"status": 200}}])]})
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stdout + r.stderr


def test_builtin_echo_head_has_no_body(tollgate, pki):
    tg = tollgate({"target_groups": {"g": group("builtin:echo")},
                   "listeners": [https_listener()]})
    with Client(tg.addr(), pki) as c:
        r = c.request("HEAD", "/h")
        assert r.status == 200 and int(r.get("Content-Length")) > 0
        # twin: the same path with GET has the body; nothing was left over
        r2 = c.request("GET", "/h")
        assert r2.json()["method"] == "GET"
        assert int(r.get("Content-Length")) == len(r2.body) + 1  # "HEAD" is one longer
