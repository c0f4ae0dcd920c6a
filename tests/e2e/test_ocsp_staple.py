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
import time

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
