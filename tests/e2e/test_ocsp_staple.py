"""OCSP stapling of server certificates: the master asks the responder
named in the certificate (a real `openssl ocsp` on loopback, or a scripted
one) or reads ocsp_file, checks the response, and workers staple it for
clients that ask (openssl s_client -status, tollgate probe). Each accepted
case has a refused twin: revoked, responder down, expired, wrong signer,
garbage, oversize, a client that does not ask."""

import datetime
import http.client
import json
import re
import signal
import subprocess

import pytest

import tg_ocsp
from tg_proc import T, free_port, listener, run_tollgate, wait_for

UTC = datetime.timezone.utc


def _now():
    return datetime.datetime.now(UTC)


@pytest.fixture
def opki(tmp_path):
    return tg_ocsp.OcspPki(tmp_path / "ocsp", free_port())


@pytest.fixture
def responders():
    """Started responders are stopped after the test."""
    started = []

    def add(r):
        started.append(r)
        return r.start()
    yield add
    for r in started:
        r.stop()


def config(opki, admin_port=None, **entry):
    cfg = {
        "certificates": {"site": opki.certificate_entry(**entry)},
        "target_groups": {"g": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [listener(certs=("site",))],
    }
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def admin_get(port, path):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=T(10))
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def staple(tg, opki, **kw):
    return tg_ocsp.stapled_status(tg_ocsp.s_client_status(tg.addr(), opki, **kw))


def wait_staple(tg, opki, want, timeout=None, **kw):
    return wait_for(lambda: staple(tg, opki, **kw) == want, timeout or T(15),
                    interval=0.2, what=f"stapled status {want}")


def probe(tg, opki):
    host, port = tg.addr()
    r = run_tollgate(["probe", f"{host}:{port}", "--sni", "localhost", "--ca",
                      opki.path("root.crt"), "--json"])
    return r.returncode, json.loads(r.stdout)


# ---- from the responder named in the certificate ------------------------------------

def test_good_response_is_stapled(tollgate, opki, responders):
    responders(tg_ocsp.OpensslResponder(opki, "good"))
    admin = free_port()
    tg = tollgate(config(opki, admin))
    ev = tg.wait_event("ocsp_updated", cert="site")[0]
    assert ev["status"] == "good" and ev["source"] == "responder", ev
    for tls in ("-tls1_3", "-tls1_2"):
        assert staple(tg, opki, tls=tls) == "good", tls
    rc, j = probe(tg, opki)
    st = j["ocsp_staple"]
    assert rc == 0 and j["ok"] is True, j
    assert st["stapled"] is True and st["status"] == "good" and st["verdict"] == "pass", st
    assert st["next_update"] and st["this_update"], st
    code, text = admin_get(admin, "/metrics")
    m = re.search(r'^tollgate_ocsp_staple_next_update_seconds\{certificate="site"\} (-?\d+)$',
                  text, re.M)
    assert code == 200 and m and 0 < int(m.group(1)) <= 3600, text[-2000:]
    assert 'tollgate_ocsp_staple_status{certificate="site",status="good"} 1' in text
    code, body = admin_get(admin, "/status")
    leaf = [c for c in json.loads(body)["certificates"]
            if c["name"] == "site" and c["role"] == "leaf"][0]
    assert leaf["ocsp"]["status"] == "good" and leaf["ocsp"]["stapled"] is True, leaf
    host, port = tg.addr()
    r = run_tollgate(["probe", f"{host}:{port}", "--sni", "localhost", "--ca",
                      opki.path("root.crt")])
    assert r.returncode == 0 and "OCSP staple: good" in r.stdout, r.stdout


def test_revoked_response_is_stapled_as_revoked_and_logged(tollgate, opki, responders):
    """The twin: the responder says revoked. tollgate staples that signed
    answer (never a good one), logs it as an error, and probe fails."""
    responders(tg_ocsp.OpensslResponder(opki, "revoked"))
    admin = free_port()
    tg = tollgate(config(opki, admin))
    ev = tg.wait_event("ocsp_revoked", cert="site")[0]
    assert ev["_level"] == "error" and ev["action"] == "staple_revoked", ev
    assert not tg.events("ocsp_updated")
    assert staple(tg, opki) == "revoked"
    rc, j = probe(tg, opki)
    assert rc == 1 and j["ok"] is False, j
    assert j["ocsp_staple"]["verdict"] == "fail" and j["ocsp_staple"]["reason"] == "cert_revoked"
    _, text = admin_get(admin, "/metrics")
    assert 'tollgate_ocsp_staple_status{certificate="site",status="revoked"} 1' in text
    assert 'tollgate_ocsp_staple_status{certificate="site",status="good"} 0' in text


def test_responder_down_at_start_then_back(tollgate, opki, responders):
    admin = free_port()
    tg = tollgate(config(opki, admin))
    ev = tg.wait_event("ocsp_fetch_failed", cert="site")[0]
    assert ev["reason"] == "unreachable" and ev["action"] == "no_staple", ev
    # The listener serves all the same, without a staple.
    text = tg_ocsp.s_client_status(tg.addr(), opki)
    assert "Verification: OK" in text or "Verify return code: 0" in text, text[-2000:]
    assert tg_ocsp.stapled_status(text) is None
    _, m = admin_get(admin, "/metrics")
    assert 'tollgate_ocsp_staple_next_update_seconds{certificate="site"} -1' in m
    _, body = admin_get(admin, "/status")
    leaf = [c for c in json.loads(body)["certificates"] if c["name"] == "site"][0]
    assert leaf["ocsp"]["status"] == "none" and "unreachable" in leaf["ocsp"]["last_error"]
    # The responder comes back: the next retry (2 s, then 4 s...) staples.
    responders(tg_ocsp.OpensslResponder(opki, "good"))
    wait_staple(tg, opki, "good", timeout=T(20))
    assert tg.events("ocsp_updated", cert="site", status="good")


def _short_lived(opki, state, seconds=8, signer="ca"):
    """A scripted responder: good responses valid for `seconds`, or HTTP 500
    once state["down"] is set."""
    def make(req):
        if state.get("down"):
            return 500, b"down"
        now = _now()
        return 200, opki.response(this_update=now - datetime.timedelta(seconds=2),
                                  next_update=now + datetime.timedelta(seconds=seconds),
                                  signer=signer)
    return tg_ocsp.ScriptedResponder(opki.port, make)


def test_responder_down_after_good_keeps_last_until_it_expires(tollgate, opki, responders):
    state = {}
    responders(_short_lived(opki, state, seconds=8))
    tg = tollgate(config(opki))
    tg.wait_event("ocsp_updated", cert="site")
    assert staple(tg, opki) == "good"
    state["down"] = True
    # The refresh (half-way, about 3 s in) fails: the last response stays.
    ev = tg.wait_event("ocsp_fetch_failed", cert="site", timeout=T(15))[0]
    assert ev["reason"] == "http_status" and ev["action"] == "keep_last", ev
    assert staple(tg, opki) == "good"
    # ... until its nextUpdate: an expired response is never stapled.
    tg.wait_event("ocsp_expired", cert="site", timeout=T(15))
    assert staple(tg, opki) is None


@pytest.mark.parametrize("signer,accepted", [("ca", True), ("responder", True),
                                             ("wrong", False)])
def test_only_the_issuer_or_its_responder_may_sign(tollgate, opki, responders, signer,
                                                   accepted):
    def make(req):
        return 200, opki.response(signer=signer)
    responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki))
    if accepted:
        tg.wait_event("ocsp_updated", cert="site")
        assert staple(tg, opki) == "good"
        return
    ev = tg.wait_event("ocsp_fetch_failed", cert="site")[0]
    assert ev["reason"] == "bad_signature" and ev["action"] == "no_staple", ev
    assert staple(tg, opki) is None


def test_oversize_and_garbage_answers_are_refused(tollgate, opki, responders):
    answers = iter([b"\x30" * (20 * 1024), b"not an OCSP response"])
    seen = []

    def make(req):
        seen.append(req)
        body = next(answers, None)
        return 200, body if body is not None else opki.response()
    responders(tg_ocsp.ScriptedResponder(opki.port, make))
    tg = tollgate(config(opki))
    evs = tg.wait_event("ocsp_fetch_failed", cert="site", count=2, timeout=T(15))
    assert [e["reason"] for e in evs[:2]] == ["too_large", "malformed"], evs
    assert staple(tg, opki) is None
    # The twin: the third answer is a good one, and it is stapled.
    tg.wait_event("ocsp_updated", cert="site", timeout=T(15))
    assert staple(tg, opki) == "good"
    # What was asked: RFC 6960 Appendix A, a POST of a DER request.
    from cryptography.x509 import ocsp as x509_ocsp
    req = x509_ocsp.load_der_ocsp_request(seen[0])
    assert req.serial_number == opki.leaf.serial_number


def test_ocsp_off_asks_nothing_and_staples_nothing(tollgate, opki, responders):
    """The twin of test_good_response_is_stapled, with ocsp: off."""
    r = responders(tg_ocsp.OpensslResponder(opki, "good"))
    admin = free_port()
    tg = tollgate(config(opki, admin, ocsp="off"))
    assert staple(tg, opki) is None
    assert r.requests == 0
    assert not tg.events("ocsp_updated") and not tg.events("ocsp_fetch_failed")
    _, body = admin_get(admin, "/status")
    leaf = [c for c in json.loads(body)["certificates"] if c["name"] == "site"][0]
    assert leaf["ocsp"]["status"] == "off" and leaf["ocsp"]["stapled"] is False, leaf
    _, text = admin_get(admin, "/metrics")
    assert "tollgate_ocsp_staple_next_update_seconds" not in text


def test_client_that_does_not_ask_gets_no_status(tollgate, opki, responders):
    responders(tg_ocsp.OpensslResponder(opki, "good"))
    tg = tollgate(config(opki))
    tg.wait_event("ocsp_updated", cert="site")
    asked = tg_ocsp.s_client_status(tg.addr(), opki, tls="-tls1_2", ask=True)
    assert "CertificateStatus" in asked, asked[-3000:]
    silent = tg_ocsp.s_client_status(tg.addr(), opki, tls="-tls1_2", ask=False)
    assert "CertificateStatus" not in silent and "ServerHelloDone" in silent, silent[-3000:]


def test_reload_keeps_stapling(tollgate, opki, responders):
    r = responders(tg_ocsp.OpensslResponder(opki, "good"))
    tg = tollgate(config(opki))
    tg.wait_event("ocsp_updated", cert="site")
    asked = r.requests
    r.stop()
    tg.signal(signal.SIGHUP)
    tg.wait_ready(generation=2)
    ev = tg.wait_event("ocsp_updated", cert="site", source="previous_generation")[0]
    assert ev["status"] == "good"
    assert staple(tg, opki) == "good"
    assert r.requests == asked


def test_missing_issuer_is_reported(tollgate, opki, tmp_path):
    leaf_only = tmp_path / "leaf-only.crt"
    leaf_only.write_bytes(opki.leaf.public_bytes(tg_ocsp.serialization.Encoding.PEM))
    cfg = config(opki)
    cfg["certificates"]["site"]["cert"] = str(leaf_only)
    tg = tollgate(cfg)
    ev = tg.wait_event("ocsp_unavailable", cert="site")[0]
    assert ev["reason"] == "no_issuer", ev
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0 and "certificates.site.cert" in r.stderr and "OCSP" in r.stderr, \
        r.stderr


# ---- from a file ---------------------------------------------------------------------

def test_ocsp_file_is_stapled_and_reread(tollgate, opki):
    first = _now() - datetime.timedelta(minutes=5)
    path = opki.write_atomic("site.ocsp", opki.response(this_update=first, signer="responder"))
    tg = tollgate(config(opki, ocsp_file=path))
    ev = tg.wait_event("ocsp_updated", cert="site", source="file")[0]
    assert ev["status"] == "good"
    _, j = probe(tg, opki)
    assert j["ocsp_staple"]["verdict"] == "pass", j["ocsp_staple"]
    t1 = j["ocsp_staple"]["this_update"]
    # A new response in the file is stapled without a reload.
    second = _now() - datetime.timedelta(minutes=1)
    opki.write_atomic("site.ocsp", opki.response(this_update=second))
    tg.wait_event("ocsp_updated", cert="site", source="file", count=2)
    _, j = probe(tg, opki)
    t2 = j["ocsp_staple"]["this_update"]
    assert t2 != t1 and j["ocsp_staple"]["verdict"] == "pass", (t1, t2)
    # Garbage is refused with a log line, and the last good one stays.
    opki.write_atomic("site.ocsp", b"garbage, not DER")
    ev = tg.wait_event("ocsp_fetch_failed", cert="site", source="file")[0]
    assert ev["reason"] == "malformed" and ev["action"] == "keep_last", ev
    _, j = probe(tg, opki)
    assert j["ocsp_staple"]["this_update"] == t2 and j["ocsp_staple"]["status"] == "good"
    assert not tg.events("reload_start")


@pytest.mark.parametrize("kind,reason", [("expired", "expired"), ("wrong_key", "bad_signature"),
                                         ("other_cert", "wrong_certificate"),
                                         ("unknown", "status_unknown")])
def test_bad_ocsp_file_is_never_stapled(tollgate, opki, kind, reason):
    now = _now()
    if kind == "expired":
        der = opki.response(this_update=now - datetime.timedelta(hours=2),
                            next_update=now - datetime.timedelta(hours=1))
    elif kind == "wrong_key":
        der = opki.response(signer="wrong")
    elif kind == "other_cert":
        der = opki.response(leaf=opki.resp)
    else:
        der = opki.response(status="unknown")
    path = opki.write_atomic("site.ocsp", der)
    tg = tollgate(config(opki, ocsp_file=path))
    ev = tg.wait_event("ocsp_fetch_failed", cert="site", source="file")[0]
    assert ev["reason"] == reason and ev["action"] == "no_staple", ev
    assert staple(tg, opki) is None
    # The twin: a good response in its place is taken up.
    opki.write_atomic("site.ocsp", opki.response())
    wait_staple(tg, opki, "good")


# ---- tollgate probe on a server that staples something bad ----------------------------

@pytest.mark.parametrize("signer", ["ca", "wrong"])
def test_probe_checks_the_staple(opki, signer, tmp_path):
    resp = opki.write_atomic("staple.der", opki.response(signer=signer))
    port = free_port()
    srv = subprocess.Popen(
        ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", opki.path("server.crt"),
         "-cert_chain", opki.path("ca.crt"), "-key", opki.path("server.key"), "-status_file",
         resp, "-quiet"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tg_ocsp._wait_port(port, srv)
        r = run_tollgate(["probe", f"127.0.0.1:{port}", "--sni", "localhost", "--ca",
                          opki.path("root.crt"), "--json"])
    finally:
        srv.kill()
        srv.wait()
    j = json.loads(r.stdout)
    st = j["ocsp_staple"]
    assert st["stapled"] is True, st
    if signer == "ca":
        assert st["verdict"] == "pass" and st["status"] == "good", st
    else:
        assert st["verdict"] == "fail" and st["reason"] == "ocsp_bad_signature", st
        assert r.returncode == 1 and j["ok"] is False


# ---- tollgate check -------------------------------------------------------------------

def test_check_reports_bad_ocsp_values(opki, tmp_path):
    good = tmp_path / "good.yaml"
    bad = tmp_path / "bad.yaml"
    body = ("certificates:\n  site:\n    cert: {cert}\n    key: {key}\n    ocsp: {ocsp}\n"
            "target_groups:\n  g:\n    targets: [{{address: 'builtin:echo'}}]\n"
            "listeners:\n  - name: main\n    protocol: tcp_ssl\n    listen: 127.0.0.1:{port}\n"
            "    tls: {{certificates: [site]}}\n    target_group: g\n")
    fill = dict(cert=opki.path("server.crt"), key=opki.path("server.key"), port=free_port())
    good.write_text(body.format(ocsp="off", **fill))
    bad.write_text(body.format(ocsp="sometimes", **fill))
    r = run_tollgate(["check", "-c", str(good)])
    assert r.returncode == 0, r.stderr
    r = run_tollgate(["check", "-c", str(bad)])
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(bad))}:5:5: certificates\.site\.ocsp: unknown value "
                     r"\"sometimes\" \(expected auto or off\)", r.stderr), r.stderr
    both = tmp_path / "both.yaml"
    both.write_text(body.format(ocsp="off", **fill).replace(
        "    ocsp: off\n", f"    ocsp: off\n    ocsp_file: {opki.path('server.crt')}\n"))
    r = run_tollgate(["check", "-c", str(both)])
    assert r.returncode == 1 and "ocsp_file is set but ocsp is off" in r.stderr, r.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(body.format(ocsp="auto", **fill).replace("    ocsp: auto\n",
                                                               "    ocsp_fle: x\n"))
    r = run_tollgate(["check", "-c", str(typo)])
    assert r.returncode == 1 and "ocsp_file" in r.stderr, r.stderr
