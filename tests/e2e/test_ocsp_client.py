"""OCSP for client certificates (client_cas.NAME.ocsp: prefer | require):
each worker asks the responder named in the client certificate (a real
`openssl ocsp` on loopback, or a scripted one), caches the answer, and
holds the handshake while it waits without holding anyone else. Each
accepted case has a refused twin: revoked, responder down under require,
bad responses, a resumption after the revocation is known."""

import datetime
import socket
import ssl
import threading
import time

import pytest

import tg_ocsp
import tg_tls
from tg_proc import T, free_port, listener, run_tollgate, wait_for

UTC = datetime.timezone.utc


def _now():
    return datetime.datetime.now(UTC)


@pytest.fixture
def opki(tmp_path):
    p = tg_ocsp.OcspPki(tmp_path / "ocsp", free_port())
    p.alice = p.client("alice")
    return p


@pytest.fixture
def responders():
    started = []

    def add(r):
        started.append(r)
        return r.start()
    yield add
    for r in started:
        r.stop()


def config(opki, mode="prefer", protocol="tcp_ssl", group="echo", extra_listeners=(),
           handshake_timeout="5s", responder=None, **top):
    ca = {"ca": opki.path("client-ca.crt"), "ocsp": mode}
    if responder is not None:
        ca["ocsp_responder"] = responder
    main = listener(mode="mutual", certs=("site",), client_ca="clients", group=group,
                    handshake_timeout=handshake_timeout)
    if protocol == "https":
        main["protocol"] = "https"
        main.pop("target_group")
        main["rules"] = [{"target_group": group}]
    cfg = {
        # The server certificate staples nothing: only client lookups reach
        # the responder, so its request count is theirs.
        "certificates": {"site": opki.certificate_entry(ocsp="off")},
        "client_cas": {"clients": ca},
        "target_groups": {"echo": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [main, *extra_listeners],
    }
    cfg.update(top)
    return cfg


def ctx(opki, name="alice", version=None):
    c = tg_tls.client_ctx(opki, cert=(opki.path(f"{name}.crt"), opki.path(f"{name}.key")),
                          version=version)
    return c


def https_get(addr, context):
    """One GET over the mutual https listener: (ok, status line or error)."""
    raw = socket.create_connection(addr, timeout=T(10))
    try:
        s = context.wrap_socket(raw, server_hostname="localhost")
        s.sendall(b"GET /ocsp HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while True:
            b = s.recv(65536)
            if not b:
                break
            data += b
        s.close()
        line = data.split(b"\r\n", 1)[0].decode(errors="replace")
        return line.startswith("HTTP/1.1 200"), line
    except (ssl.SSLError, OSError) as e:
        return False, str(e)
    finally:
        raw.close()


# ---- good and revoked ---------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["tcp_ssl", "https"])
def test_good_status_is_accepted(tollgate, opki, responders, protocol):
    r = responders(tg_ocsp.OpensslResponder(opki, certs=[(opki.alice, "good")]))
    tg = tollgate(config(opki, protocol=protocol))
    if protocol == "https":
        ok, detail = https_get(tg.addr(), ctx(opki))
    else:
        ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki), payload=b"hello ocsp\n")
    assert ok, detail
    assert r.requests == 1
    ev = tg.wait_event("ocsp_client_status", status="good")[0]
    assert ev["subject"].startswith("CN=alice"), ev
    assert not tg.rejections()


@pytest.mark.parametrize("protocol", ["tcp_ssl", "https"])
def test_revoked_status_is_refused(serve, opki, responders, protocol):
    """The twin: revoked. Refused in the handshake with cert_revoked, and
    the backend never sees a byte."""
    responders(tg_ocsp.OpensslResponder(opki, certs=[(opki.alice, "revoked")]))
    base = config(opki, protocol=protocol, group="g")
    tg, be = serve(*base["listeners"], certificates=base["certificates"],
                   client_cas=base["client_cas"])
    if protocol == "https":
        ok, detail = https_get(tg.addr(), ctx(opki))
        port = None
    else:
        ok, detail, port = tg_tls.attempt(tg.addr(), ctx(opki))
    assert not ok, detail
    e = tg.wait_rejection(port)
    assert e["reason"] == "cert_revoked" and e["subject"].startswith("CN=alice"), e
    assert tg.wait_event("ocsp_client_status", status="revoked")[0]["_level"] == "warn"
    time.sleep(0.2)  # a wrongly accepted connection would reach the backend by now
    assert be.count() == 0


def test_revoked_refused_over_tls12(tollgate, opki, responders):
    responders(tg_ocsp.OpensslResponder(opki, certs=[(opki.alice, "revoked")]))
    tg = tollgate(config(opki))
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx(opki, version="1.2"))
    assert not ok and "revoked" in detail.lower(), detail
    assert tg.wait_rejection(port)["reason"] == "cert_revoked"


# ---- responder down ------------------------------------------------------------------

def test_responder_down_prefer_accepts_and_logs(tollgate, opki):
    tg = tollgate(config(opki, mode="prefer"))
    for _ in range(3):
        ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki))
        assert ok, detail
    ev = tg.wait_event("ocsp_unavailable")
    assert ev[0]["reason"] == "unreachable" and ev[0]["subject"].startswith("CN=alice"), ev
    # Once per certificate per failure period, not once per handshake.
    assert len(tg.events("ocsp_unavailable")) == 1


def test_responder_down_require_refuses(tollgate, opki):
    tg = tollgate(config(opki, mode="require"))
    for _ in range(2):
        ok, detail, port = tg_tls.attempt(tg.addr(), ctx(opki))
        assert not ok, detail
        assert tg.wait_rejection(port)["reason"] == "ocsp_unavailable"
    assert len(tg.events("ocsp_unavailable")) == 1


def test_no_responder_url_require_refuses_prefer_accepts(tollgate, opki, responders):
    """A certificate without an AIA OCSP URL: unavailable (no_url) unless
    the client CA names a responder (ocsp_responder), which is then asked."""
    opki.client("bob", aia=False)
    tg = tollgate(config(opki, mode="require"))
    ok, _, port = tg_tls.attempt(tg.addr(), ctx(opki, "bob"))
    assert not ok and tg.wait_rejection(port)["reason"] == "ocsp_unavailable"
    assert tg.wait_event("ocsp_unavailable")[0]["reason"] == "no_url"
    tg.stop()
    bob = tg_ocsp.x509.load_pem_x509_certificate(open(opki.path("bob.crt"), "rb").read())
    r = responders(tg_ocsp.OpensslResponder(opki, certs=[(bob, "good")]))
    tg2 = tollgate(config(opki, mode="require", responder=opki.url), name="tg2")
    ok, detail, _ = tg_tls.attempt(tg2.addr(), ctx(opki, "bob"))
    assert ok, detail
    assert r.requests == 1


# ---- the cache -------------------------------------------------------------------------

def test_one_request_per_certificate_until_next_update(tollgate, opki, responders):
    next_in = 4

    def make(req):
        return 200, opki.response("good", leaf=opki.alice,
                                  next_update=_now() + datetime.timedelta(seconds=next_in))
    r = responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki))
    t0 = time.monotonic()
    for _ in range(5):
        ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki))
        assert ok, detail
    assert r.requests == 1
    # Twin: after nextUpdate the cache no longer believes it and asks again.
    wait_for(lambda: time.monotonic() - t0 > next_in + 0.5, T(10), interval=0.1,
             what="nextUpdate passed")
    ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki))
    assert ok, detail
    assert r.requests == 2


def test_concurrent_handshakes_share_one_fetch(tollgate, opki, responders):
    release = threading.Event()

    def make(req):
        release.wait(T(10))
        return 200, opki.response("good", leaf=opki.alice)
    r = responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki))
    results = []

    def one():
        results.append(tg_tls.attempt(tg.addr(), ctx(opki))[0])
    threads = [threading.Thread(target=one) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: r.requests >= 1, T(10), what="the responder asked")
    time.sleep(0.3)  # let every handshake reach the waiter list
    release.set()
    for t in threads:
        t.join(T(20))
    assert results == [True] * 4
    assert r.requests == 1


# ---- a slow responder ------------------------------------------------------------------

def test_slow_responder_does_not_stall_other_clients(tollgate, opki, responders, pki):
    release = threading.Event()

    def make(req):
        release.wait(T(10))
        return 200, opki.response("good", leaf=opki.alice)
    r = responders(tg_ocsp.ScriptedResponder(opki.port, make))
    other = listener(name="other", certs=("site",), group="echo")
    tg = tollgate(config(opki, extra_listeners=[other]))
    done = {}

    def first():
        done["first"] = tg_tls.attempt(tg.addr(), ctx(opki, version="1.2"))
        done["first_at"] = time.monotonic()
    t = threading.Thread(target=first)
    t.start()
    wait_for(lambda: r.requests >= 1, T(10), what="the first handshake's lookup")
    # The same worker (workers: 1) serves another client meanwhile.
    got, _ = tg_tls.roundtrip(tg.addr("other"), tg_tls.client_ctx(opki), payload=b"not held\n")
    other_at = time.monotonic()
    assert got == b"not held\n"
    assert "first" not in done, "the first handshake did not wait for its lookup"
    release.set()
    t.join(T(20))
    assert done["first"][0], done["first"]
    assert done["first_at"] > other_at


def test_client_gone_and_timeout_while_pending(tollgate, opki, responders):
    """A client that leaves while its lookup is pending, and one whose
    handshake_timeout expires first: no crash (run under ASan too), the
    timeout is a refusal, and the worker serves on."""
    release = threading.Event()

    def make(req):
        release.wait(T(10))
        return 200, opki.response("good", leaf=opki.alice)
    r = responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki, handshake_timeout="1s"))
    # TLS 1.3: the client is done with its handshake before the server
    # judges its certificate; it leaves at once.
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    s = ctx(opki).wrap_socket(raw, server_hostname="localhost")
    wait_for(lambda: r.requests >= 1, T(10), what="the lookup")
    s.close()
    # TLS 1.2 waits for the server's Finished: the handshake times out.
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx(opki, version="1.2"))
    assert not ok, detail
    assert tg.wait_rejection(port)["reason"] == "handshake_timeout"
    release.set()
    assert r.requests == 1
    # The answer was cached all the same; the worker is alive and serves.
    ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki))
    assert ok, detail
    assert r.requests == 1
    assert tg.alive()


# ---- resumption ------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_resumption_refused_once_revoked_is_cached(tollgate, opki, responders, version):
    state = {"status": "good"}

    def make(req):
        return 200, opki.response(state["status"], leaf=opki.alice,
                                  next_update=_now() + datetime.timedelta(seconds=3))
    responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki))
    c = ctx(opki, version=version)
    got, info = tg_tls.roundtrip(tg.addr(), c)
    assert got == b"hello tollgate\n" and info["session"] is not None
    # Twin: while the cache says good, the session resumes.
    with tg_tls.connect(tg.addr(), c, session=info["session"]) as s:
        s.sendall(b"x\n")
        assert tg_tls.recv_exact(s, 2) == b"x\n"
        assert s.session_reused
    state["status"] = "revoked"
    time.sleep(3.5)  # the good answer expires at its nextUpdate
    ok, _, port = tg_tls.attempt(tg.addr(), c)  # a full handshake learns of the revocation
    assert not ok and tg.wait_rejection(port)["reason"] == "cert_revoked"
    ok, detail, port = tg_tls.attempt(tg.addr(), c, session=info["session"])
    assert not ok, detail
    ev = tg.wait_event("resumption_refused", reason="cert_revoked")[0]
    assert ev["client"].endswith(f":{port}"), ev
    assert tg.wait_rejection(port)["reason"] == "cert_revoked"


# ---- bad responses ---------------------------------------------------------------------

BAD = {
    "garbage": lambda opki: (200, b"\x30\x03garbage"),
    "oversized": lambda opki: (200, b"\x30" * (16 * 1024 + 1)),
    "wrong_signer": lambda opki: (200, opki.response("good", leaf=opki.alice, signer="wrong")),
    "http_500": lambda opki: (500, b"oops"),
    "unknown": lambda opki: (200, opki.response("unknown", leaf=opki.alice)),
    "other_cert": lambda opki: (200, opki.response("good")),
}
REASON = {"garbage": "malformed", "oversized": "too_large", "wrong_signer": "bad_signature",
          "http_500": "http_status", "unknown": "status_unknown",
          "other_cert": "wrong_certificate"}


@pytest.mark.parametrize("kind", sorted(BAD))
@pytest.mark.parametrize("mode", ["prefer", "require"])
def test_bad_response_is_unavailable(tollgate, opki, responders, kind, mode):
    responders(tg_ocsp.ScriptedResponder(opki.port, lambda req: BAD[kind](opki)))
    tg = tollgate(config(opki, mode=mode))
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx(opki))
    ev = tg.wait_event("ocsp_unavailable")[0]
    assert ev["reason"] == REASON[kind], ev
    if mode == "prefer":
        assert ok, detail
        assert not tg.rejections()
    else:
        assert not ok, detail
        assert tg.wait_rejection(port)["reason"] == "ocsp_unavailable"


def test_delegated_responder_signature_is_accepted(tollgate, opki, responders):
    responders(tg_ocsp.ScriptedResponder(
        opki.port, lambda req: (200, opki.response("good", leaf=opki.alice, signer="responder"))))
    tg = tollgate(config(opki, mode="require"))
    ok, detail, _ = tg_tls.attempt(tg.addr(), ctx(opki))
    assert ok, detail


def test_metrics_count_ocsp_unavailable(tollgate, opki):
    admin = free_port()
    tg = tollgate(config(opki, mode="require", admin={"listen": f"127.0.0.1:{admin}"}))
    ok, _, port = tg_tls.attempt(tg.addr(), ctx(opki))
    assert not ok
    tg.wait_rejection(port)
    import http.client
    c = http.client.HTTPConnection("127.0.0.1", admin, timeout=T(10))
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    assert ('tollgate_tls_handshake_failures_total{listener="main",reason="ocsp_unavailable"} 1'
            in text), [ln for ln in text.splitlines() if "ocsp_unavailable" in ln]


# ---- tollgate check --------------------------------------------------------------------

def test_check_rejects_bad_ocsp_values(tmp_path, opki):
    lines = [
        "certificates:",                                        # 1
        f"  site: {{ cert: {opki.path('server.crt')}, key: {opki.path('server.key')} }}",
        "client_cas:",                                          # 3
        "  clients:",                                           # 4
        f"    ca: {opki.path('client-ca.crt')}",                # 5
        "    ocsp: maybe",                                      # 6
        "    ocsp_responder: https://ocsp.example/",            # 7
        "target_groups:",                                       # 8
        "  g: { targets: [ { address: builtin:echo } ] }",      # 9
        "listeners:",                                           # 10
        "  - name: a",                                          # 11
        "    protocol: tcp_ssl",                                # 12
        f"    listen: 127.0.0.1:{free_port()}",                 # 13
        "    tls: { mode: mutual, certificates: [site], client_ca: clients }",
        "    target_group: g",                                  # 15
    ]
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode != 0
    assert f"{path}:6:5: client_cas.clients.ocsp:" in r.stderr, r.stderr
    assert "maybe" in r.stderr and "prefer" in r.stderr and "require" in r.stderr, r.stderr
    assert f"{path}:7:5: client_cas.clients.ocsp_responder:" in r.stderr, r.stderr
    # Twin: the same with good values passes.
    lines[5] = "    ocsp: require"
    lines[6] = "    ocsp_responder: http://127.0.0.1:9/"
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert "warning" not in r.stderr, r.stderr
    # A client CA with ocsp on that no mutual listener uses: a warning.
    lines[13] = "    tls: { mode: one-way, certificates: [site] }"
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    assert f"{path}:6:5: warning: client_cas.clients.ocsp: no mutual listener" in r.stderr, \
        r.stderr


def test_stop_while_a_handshake_waits(tollgate, opki, responders):
    """SIGTERM while a handshake waits for a responder that never answers in
    time: the worker drains (drain_timeout) and exits cleanly (under ASan:
    no leak or error report), the lookup abandoned."""
    release = threading.Event()

    def make(req):
        release.wait(T(20))
        return 200, opki.response("good", leaf=opki.alice)
    r = responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki, handshake_timeout="30s", drain_timeout="1s"))
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    s = ctx(opki).wrap_socket(raw, server_hostname="localhost")
    wait_for(lambda: r.requests >= 1, T(10), what="the lookup")
    tg.stop()
    release.set()
    s.close()
    assert tg.exit_code == 0, tg.log()[-3000:]
    assert tg.events("drain_timeout")
