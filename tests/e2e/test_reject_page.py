"""on_reject: page — a refused client certificate on an https listener with
client_auth: optional gets a page that says why (495/496), never the backend."""

import json

import pytest

from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401


def page_listener():
    return https_listener(mode="mutual", client_auth="optional",
                          tls_extra={"on_reject": "page"})


def get(tg, pki, cert=None, accept=None):
    headers = [("Accept", accept)] if accept else []
    with Client(tg.addr(), pki, cert=cert) as c:
        return c.request("GET", "/private", headers=headers)


def test_good_certificate_is_forwarded(hserve, pki):
    """The twin of every refusal below: a good certificate reaches the backend."""
    tg, be = hserve(page_listener())
    r = get(tg, pki, cert=pki.client("alice"))
    assert r.status == 200
    assert be.count() == 1 and be.reqs()[0].get("X-Client-Verify") == "SUCCESS"
    assert not tg.events("tls_handshake_failed")


def test_no_certificate_gets_496_page(hserve, pki):
    tg, be = hserve(page_listener())
    r = get(tg, pki)
    assert r.status == 496
    assert r.get("Content-Type").startswith("text/html")
    body = r.body.decode()
    assert "no_client_cert" in body and "no client certificate was sent" in body
    assert "tollgate dev" in body, "the accepted CA names are listed"
    assert be.count() == 0, "a refused request must never reach a backend"
    ev = tg.wait_event("tls_handshake_failed", reason="no_client_cert")
    assert ev[0]["listener"] == "main"
    rec = tg.wait_access(lambda a: a.get("status") == 496)[0]
    assert rec["outcome"] == "tls_rejected" and rec["reason"] == "no_client_cert"


@pytest.mark.parametrize("bad,reason", [("expired", "cert_expired"),
                                        ("self_signed", "self_signed")])
def test_refused_certificate_gets_495_page(hserve, pki, bad_certs, bad, reason):
    tg, be = hserve(page_listener())
    r = get(tg, pki, cert=bad_certs[bad])
    assert r.status == 495
    body = r.body.decode()
    assert reason in body and "Offered: subject" in body
    assert be.count() == 0
    tg.wait_event("tls_handshake_failed", reason=reason)


def test_json_page_when_asked(hserve, pki, bad_certs):
    tg, be = hserve(page_listener())
    r = get(tg, pki, cert=bad_certs["expired"], accept="application/json")
    assert r.status == 495
    assert r.get("Content-Type").startswith("application/json")
    doc = json.loads(r.body)
    assert doc["reason"] == "cert_expired" and doc["status"] == 495
    assert doc["subject"] and doc["issuer"]
    assert doc["accepted_cas"], doc
    assert be.count() == 0


def test_without_on_reject_the_request_is_forwarded_with_the_verdict(hserve, pki):
    """Twin: optional without on_reject forwards, with X-Client-Verify NONE."""
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    r = get(tg, pki)
    assert r.status == 200
    assert be.reqs()[0].get("X-Client-Verify") == "NONE"


def test_on_reject_needs_optional_mutual_https(tmp_path, pki):
    from tg_proc import Tollgate, group, run_tollgate
    tg = Tollgate(tmp_path, pki)
    lst = https_listener(mode="mutual", client_auth="required", tls_extra={"on_reject": "page"})
    path = tg.write_config({"target_groups": {"g": group("builtin:echo")}, "listeners": [lst]})
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 1 and "on_reject" in r.stderr, r.stderr
