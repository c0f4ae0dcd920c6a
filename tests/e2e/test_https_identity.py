"""Identity to backends: forwarded headers, spoofed copies removed, RFC 9440
Client-Cert and Client-Cert-Chain, X-Client-*; mutual required and
optional; Host/SNI 421; SNI certificate selection; the access log."""

import base64
import hashlib
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import tg_certs
import tg_http
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T

IDENTITY = ["X-Forwarded-Proto", "X-Forwarded-Port", "X-Real-IP", "Client-Cert",
            "Client-Cert-Chain", "X-Client-Verify", "X-Client-Subject", "X-Client-Issuer",
            "X-Client-Serial", "X-Client-Fingerprint"]
SPOOF = [(n, "spoofed") for n in IDENTITY] + [("x-client-verify", "SUCCESS"),
                                              ("X-CLIENT-SUBJECT", "CN=admin")]


def sf_binary(value):
    """RFC 8941 §3.3.5: ":base64:" -> bytes (strict)."""
    assert value.startswith(":") and value.endswith(":"), value
    return base64.b64decode(value[1:-1], validate=True)


def ders(path):
    return [c.public_bytes(serialization.Encoding.DER) for c in tg_certs.load_certs(path)]


def one(tg, pki, cert=None, target="/", host="localhost", sni="localhost", headers=()):
    with Client(tg.addr(), pki, cert=cert, sni=sni) as c:
        return c.request("GET", target, host=host, headers=headers), c.port


@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_forwarded_headers(hserve, pki, mode):
    tg, be = hserve(https_listener(mode=mode, client_auth="optional" if mode == "mutual" else None))
    cert = pki.client("alice") if mode == "mutual" else None
    r, port = one(tg, pki, cert=cert, headers=[("X-Forwarded-For", "203.0.113.7, 10.0.0.1")])
    assert r.status == 200
    req = be.reqs()[0]
    # The client is no trusted proxy: its list is replaced, not extended.
    assert req.get("X-Forwarded-For") == "127.0.0.1"
    assert req.get("X-Forwarded-Proto") == "https"
    assert req.get("X-Forwarded-Port") == str(tg.addr()[1])
    assert req.get("X-Real-IP") == "127.0.0.1"
    # twin: without a client X-Forwarded-For there is exactly our address
    r, _ = one(tg, pki, cert=cert)
    assert be.reqs()[1].get("X-Forwarded-For") == "127.0.0.1"


def test_forwarded_for_joins_repeated_headers(hserve, pki):
    tg, be = hserve(https_listener(trusted_proxies=["127.0.0.1"]))
    one(tg, pki, headers=[("X-Forwarded-For", "192.0.2.1"), ("X-Forwarded-For", "192.0.2.2")])
    assert be.reqs()[0].all("X-Forwarded-For") == ["192.0.2.1, 192.0.2.2, 127.0.0.1"]


@pytest.mark.parametrize("mode", ["one-way", "mutual-optional", "mutual-required"])
def test_spoofed_identity_headers_removed(hserve, pki, mode):
    if mode == "one-way":
        tg, be = hserve(https_listener())
        cert = None
    else:
        tg, be = hserve(https_listener(mode="mutual", client_auth=mode.split("-")[1]))
        cert = pki.client("bob")
    r, _ = one(tg, pki, cert=cert, headers=SPOOF)
    assert r.status == 200
    req = be.reqs()[0]
    for name in IDENTITY:
        for v in req.all(name):
            assert v != "spoofed", f"{name}: the client's copy reached the backend"
        assert len(req.all(name)) <= 1, f"{name} twice: {req.all(name)}"
    assert req.get("X-Client-Verify") == ("NONE" if cert is None else "SUCCESS")
    if cert is None:
        assert req.all("X-Client-Subject") == [] and req.all("Client-Cert") == []
    else:
        assert "CN=bob" in req.get("X-Client-Subject")
    # The real address is ours, never the client's claim.
    assert req.get("X-Real-IP") == "127.0.0.1"


def test_spoof_removal_twin_other_headers_pass(hserve, pki):
    """Headers that only look alike pass: removal is by name (and prefix)."""
    tg, be = hserve()
    keep = [("X-Forwarded", "h.example"), ("X-Clientele", "yes"), ("Client-Certainty", "1"),
            ("X-Real-IPv6", "::1"), ("Forwarded-By", "x")]
    one(tg, pki, headers=keep)
    req = be.reqs()[0]
    for n, v in keep:
        assert req.get(n) == v, n


def test_client_cert_headers(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual"))
    cert = pki.client("alice")
    r, _ = one(tg, pki, cert=cert)
    assert r.status == 200
    req = be.reqs()[0]
    sent = ders(cert[0])
    assert len(sent) >= 2, "alice.crt should carry its intermediate"
    assert sf_binary(req.get("Client-Cert")) == sent[0]
    chain = [sf_binary(v.strip()) for v in req.get("Client-Cert-Chain").split(",")]
    assert chain == sent[1:]
    leaf = x509.load_der_x509_certificate(sent[0])
    assert req.get("X-Client-Verify") == "SUCCESS"
    assert "CN=alice" in req.get("X-Client-Subject")
    issuer_cn = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert issuer_cn in req.get("X-Client-Issuer")
    serial = req.get("X-Client-Serial").replace(":", "").lower()
    assert int(serial, 16) == leaf.serial_number
    fp = req.get("X-Client-Fingerprint").replace(":", "").lower()
    assert fp == hashlib.sha256(sent[0]).hexdigest()
    # twin: another client gets its own certificate, not alice's
    r, _ = one(tg, pki, cert=pki.client("bob"))
    req2 = be.reqs()[1]
    assert sf_binary(req2.get("Client-Cert")) == ders(pki.client("bob")[0])[0]
    assert sf_binary(req2.get("Client-Cert")) != sent[0]


def test_client_cert_per_request_on_keepalive(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual"))
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        for i in range(3):
            assert c.request("GET", f"/{i}").status == 200
    reqs = be.reqs()
    assert len(reqs) == 3
    for req in reqs:
        assert req.get("X-Client-Verify") == "SUCCESS" and req.get("Client-Cert")


def test_mutual_optional_without_cert(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    r, _ = one(tg, pki)
    assert r.status == 200
    req = be.reqs()[0]
    assert req.get("X-Client-Verify") == "NONE"
    assert req.all("Client-Cert") == [] and req.all("X-Client-Subject") == []


@pytest.mark.parametrize("kind,reason", [("expired", "cert_expired"),
                                         ("self_signed", "self_signed"),
                                         ("foreign", "unknown_ca"),
                                         ("revoked", "cert_revoked")])
def test_mutual_optional_bad_cert_goes_to_backend_as_failed(hserve, pki, foreign_pki, bad_certs,
                                                            kind, reason):
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    cert = {"foreign": foreign_pki.client("alice"),
            "revoked": pki.client("revoked")}.get(kind) or bad_certs[kind]
    r, _ = one(tg, pki, cert=cert)
    assert r.status == 200
    req = be.reqs()[0]
    assert req.get("X-Client-Verify") == f"FAILED:{reason}"
    assert sf_binary(req.get("Client-Cert")) == ders(cert[0])[0]


@pytest.mark.parametrize("kind", ["none", "expired", "foreign"])
def test_mutual_required_refuses_and_backend_sees_nothing(hserve, pki, foreign_pki, bad_certs,
                                                          kind):
    tg, be = hserve(https_listener(mode="mutual", client_auth="required"))
    cert = {"none": None, "expired": bad_certs["expired"],
            "foreign": foreign_pki.client("alice")}[kind]
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, OSError)):
        with Client(tg.addr(), pki, cert=cert) as c:
            c.request("GET", "/")
    rej = tg.wait_rejection()
    assert rej["reason"] in ("no_client_cert", "cert_expired", "unknown_ca")
    # barrier: a good client is served, and it is the only request
    r, _ = one(tg, pki, cert=pki.client("alice"))
    assert r.status == 200
    assert be.count() == 1 and len(be.reqs()) == 1


def test_host_sni_mismatch_421_on_mutual(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual"))
    cert = pki.client("alice")
    r, port = one(tg, pki, cert=cert, host="other.example.test")
    assert r.status == 421
    assert len(be.reqs()) == 0
    ev = tg.wait_event("http_error", status="421")
    assert ev[0]["client"].endswith(f":{port}")
    # twins: matching Host (any case, with a port) passes
    for host in ("localhost", "LOCALHOST", f"localhost:{tg.addr()[1]}"):
        r, _ = one(tg, pki, cert=cert, host=host)
        assert r.status == 200, host
    assert len(be.reqs()) == 3


def test_host_sni_mismatch_second_request_on_connection(hserve, pki):
    """The check is per request: a connection cannot switch hosts later."""
    tg, be = hserve(https_listener(mode="mutual"))
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.request("GET", "/a").status == 200
        assert c.request("GET", "/b", host="evil.example.test").status == 421
    assert [q.target for q in be.reqs()] == ["/a"]


def no_sni_request(tg, pki, host):
    ctx = tg_http.ssl_ctx(pki, pki.client("alice"))
    ctx.check_hostname = False  # no SNI: the client connects by address
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    with ctx.wrap_socket(raw, server_hostname=None) as s:
        s.sendall(tg_http.build("GET", "/nosni", host=host))
        c = Client.__new__(Client)
        c.sock, c.r = s, tg_http._Reader(s)
        return c.response()


def test_no_sni_cannot_dodge_the_host_check(hserve, pki):
    """Leaving SNI out is no way around the mTLS Host check: a named Host
    needs the matching SNI; a client that connected by address may use the
    address."""
    tg, be = hserve(https_listener(mode="mutual"))
    assert no_sni_request(tg, pki, "localhost").status == 421
    assert no_sni_request(tg, pki, "other.example.test").status == 421
    assert be.reqs() == []
    # twins: an address as Host passes, with or without the port
    assert no_sni_request(tg, pki, f"127.0.0.1:{tg.addr()[1]}").status == 200
    assert no_sni_request(tg, pki, "127.0.0.1").status == 200
    assert len(be.reqs()) == 2


def test_host_sni_mismatch_allowed_on_one_way(hserve, pki):
    """Twin: one-way listeners do not tie Host to SNI."""
    tg, be = hserve(https_listener())
    r, _ = one(tg, pki, host="other.example.test")
    assert r.status == 200 and be.reqs()[0].get("Host") == "other.example.test"


# ---- SNI certificate selection ----

@pytest.fixture(scope="module")
def sni_certs(tmp_path_factory, pki):
    d = tmp_path_factory.mktemp("sni")
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    key = serialization.load_pem_private_key(Path(pki.path("intermediate.key")).read_bytes(),
                                             password=None)
    out = {}
    for name, sans in (("exact", ["api.example.test"]), ("wild", ["*.wild.example.test"])):
        crt, k = tg_certs.make_cert(d, name, issuer_cert=inter, issuer_key=key, chain=(inter,),
                                    eku=(ExtendedKeyUsageOID.SERVER_AUTH,), sans=sans)
        out[name] = {"cert": crt, "key": k}
    return out


def sni_cfg(pki, sni_certs, hb, strict=False):
    certs = dict(pki.certificates())
    certs.update(sni_certs)
    tls_extra = {"strict_sni": True} if strict else None
    return {"certificates": certs, "target_groups": {"g": {"targets": [{"address": hb.address}]}},
            "listeners": [https_listener(certs=("ecdsa", "exact", "wild"), tls_extra=tls_extra)]}


def served_cert(addr, pki, sni):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(addr, timeout=T(10)) as raw:
        with ctx.wrap_socket(raw, server_hostname=sni) as s:
            return x509.load_der_x509_certificate(s.getpeercert(binary_form=True))


def sans_of(cert):
    return cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)


@pytest.mark.parametrize("sni,want", [
    ("api.example.test", ["api.example.test"]),
    ("x.wild.example.test", ["*.wild.example.test"]),
    ("localhost", ["localhost"]),
    ("unknown.example.test", ["localhost"]),       # not strict: the first certificate
    (None, ["localhost"]),
])
def test_sni_selects_certificate(tollgate, hbackend, pki, sni_certs, sni, want):
    tg = tollgate(sni_cfg(pki, sni_certs, hbackend()))
    assert sans_of(served_cert(tg.addr(), pki, sni)) == want


def test_sni_selected_certificate_verifies_with_curl(tollgate, hbackend, pki, sni_certs):
    hb = hbackend()
    tg = tollgate(sni_cfg(pki, sni_certs, hb))
    port = tg.addr()[1]
    for name in ("api.example.test", "a.wild.example.test"):
        out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                              "--cacert", pki.path("root.crt"),
                              "--resolve", f"{name}:{port}:127.0.0.1", f"https://{name}:{port}/"],
                             capture_output=True, text=True, timeout=T(20))
        assert out.stdout == "200", out.stderr
    # twin: the wildcard covers one label only
    out = subprocess.run(["curl", "-sS", "-o", "/dev/null", "--cacert", pki.path("root.crt"),
                          "--resolve", f"a.b.wild.example.test:{port}:127.0.0.1",
                          f"https://a.b.wild.example.test:{port}/"],
                         capture_output=True, text=True, timeout=T(20))
    assert out.returncode != 0


def test_strict_sni_refuses_unknown(tollgate, hbackend, pki, sni_certs):
    hb = hbackend()
    tg = tollgate(sni_cfg(pki, sni_certs, hb, strict=True))
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    port = raw.getsockname()[1]
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with pytest.raises((ssl.SSLError, ConnectionError)):
        ctx.wrap_socket(raw, server_hostname="unknown.example.test")
    raw.close()
    e = tg.wait_rejection(port)
    assert e["reason"] == "unknown_sni" and e["sni"] == "unknown.example.test"
    assert len(tg.rejections(port)) == 1
    # twin: a known name still works, and nothing reached the backend before it
    assert sans_of(served_cert(tg.addr(), pki, "x.wild.example.test")) == ["*.wild.example.test"]
    with Client(tg.addr(), pki, sni="api.example.test") as c:
        assert c.request("GET", "/", host="api.example.test").status == 200
    assert hb.count() == 1


# ---- access log ----

def test_access_log_line_per_request(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual", rules=[{"path": "/fixed",
                                                          "respond": {"status": 202}}]))
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        port = c.port
        assert c.request("GET", "/one?x=1").status == 200
        assert c.request("POST", "/two", body=b"abc").status == 200
        assert c.request("GET", "/fixed").status == 202
    recs = tg.wait_access(lambda r: r["client"].endswith(f":{port}"), count=3)
    assert len(recs) == 3, recs
    by_path = {r["path"]: r for r in recs}
    assert set(by_path) == {"/one?x=1", "/two", "/fixed"}
    one_ = by_path["/one?x=1"]
    assert one_["method"] == "GET" and one_["status"] == 200
    assert by_path["/two"]["method"] == "POST" and by_path["/fixed"]["status"] == 202
    assert by_path["/fixed"]["target"] == ""
    for r in recs:
        assert r["listener"] == "main" and r["client"] == f"127.0.0.1:{port}"
        assert r["sni"] == "localhost" and r["tls_version"].startswith("TLSv1.")
        assert r["cipher"] and r["resumed"] is False
        assert "CN=alice" in r["client_subject"] and r["client_issuer"]
        assert r["client_serial"] and r["client_fingerprint"]
        assert r["client_verify"] == "SUCCESS"
        for k in ("handshake_ms", "bytes_in", "bytes_out", "duration_ms", "upstream_ms"):
            assert isinstance(r[k], (int, float)) and r[k] >= 0, k
        assert "time" in r
    assert one_["target"] == be.address
    fp = one_["client_fingerprint"].replace(":", "").lower()
    assert fp == hashlib.sha256(ders(pki.client("alice")[0])[0]).hexdigest()


def test_access_log_refused_request_has_status(hserve, pki):
    tg, be = hserve()
    with Client(tg.addr(), pki) as c:
        port = c.port
        c.send(b"GET / HTTP/1.1\r\n\r\n")
        r = c.response()
    assert r.status == 400
    rec = tg.wait_access(lambda r: r["client"].endswith(f":{port}"))[0]
    assert rec["status"] == 400 and rec["target"] == ""


def test_access_log_bytes_are_per_request(hserve, pki):
    tg, be = hserve(handler=lambda req: tg_http.Reply(200, body=b"x" * 1000))
    with Client(tg.addr(), pki) as c:
        port = c.port
        for i in range(3):
            assert c.request("GET", f"/{i}").status == 200
    recs = tg.wait_access(lambda r: r["client"].endswith(f":{port}"), count=3)
    outs = [r["bytes_out"] for r in recs]
    ins = [r["bytes_in"] for r in recs]
    # Each request and response is the same size, so each line should be too.
    assert max(outs) - min(outs) < 100, outs
    assert max(ins) - min(ins) < 100, ins


def curl(pki, port, *extra, path="/"):
    return subprocess.run(["curl", "-sS", "--cacert", pki.path("root.crt"),
                           "--resolve", f"localhost:{port}:127.0.0.1", *extra,
                           f"https://localhost:{port}{path}"],
                          capture_output=True, text=True, timeout=T(30))


def test_curl_mutual_required(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual", client_auth="required"))
    port = tg.addr()[1]
    crt, key = pki.client("alice")
    out = curl(pki, port, "--cert", crt, "--key", key, path="/with-cert")
    assert out.returncode == 0, out.stderr
    req = be.reqs()[0]
    assert req.get("X-Client-Verify") == "SUCCESS" and "CN=alice" in req.get("X-Client-Subject")
    assert sf_binary(req.get("Client-Cert")) == ders(crt)[0]
    # twin: without a certificate curl is refused and nothing reaches the backend
    out = curl(pki, port, path="/without")
    assert out.returncode != 0
    tg.wait_rejection()
    assert [q.target for q in be.reqs()] == ["/with-cert"]


def test_curl_mutual_optional(hserve, pki):
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    port = tg.addr()[1]
    crt, key = pki.client("bob")
    assert curl(pki, port, "--cert", crt, "--key", key, path="/a").returncode == 0
    assert curl(pki, port, path="/b").returncode == 0
    a, b = be.reqs()
    assert a.get("X-Client-Verify") == "SUCCESS" and "CN=bob" in a.get("X-Client-Subject")
    assert b.get("X-Client-Verify") == "NONE" and b.all("Client-Cert") == []


def test_client_cert_chain_two_intermediates(tollgate, hbackend, pki, tmp_path):
    """Client-Cert-Chain lists every certificate the client sent after its
    leaf, in order (RFC 9440 §2.3)."""
    root, (crt, key) = tg_certs.mint_deep_chain(tmp_path)
    hb = hbackend()
    tg = tollgate({"client_cas": {"deep": {"ca": root}},
                   "target_groups": {"g": {"targets": [{"address": hb.address}]}},
                   "listeners": [https_listener(mode="mutual", client_ca="deep")]})
    r, _ = one(tg, pki, cert=(crt, key))
    assert r.status == 200
    req = hb.reqs()[0]
    sent = ders(crt)
    assert len(sent) == 3
    assert sf_binary(req.get("Client-Cert")) == sent[0]
    chain = [sf_binary(v.strip()) for v in req.get("Client-Cert-Chain").split(",")]
    assert chain == sent[1:]
    # twin: a client of our own PKI is unknown to this listener
    with pytest.raises((ssl.SSLError, ConnectionError, EOFError, OSError)):
        one(tg, pki, cert=pki.client("alice"))
    assert len(hb.reqs()) == 1


def resumed_verdicts(tg, pki, cert, version):
    ctx = tg_http.ssl_ctx(pki, cert)
    v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[version]
    ctx.minimum_version = ctx.maximum_version = v
    sess, reused = None, []
    for i in range(2):
        raw = socket.create_connection(tg.addr(), timeout=T(10))
        with ctx.wrap_socket(raw, server_hostname="localhost", session=sess) as s:
            s.sendall(tg_http.build("GET", f"/{i}"))
            c = Client.__new__(Client)
            c.sock, c.r = s, tg_http._Reader(s)
            assert c.response().status == 200
            reused.append(s.session_reused)
            sess = s.session
    assert reused == [False, True], "the test could not resume a session"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_optional_failed_verdict_survives_resumption(hserve, pki, bad_certs, version):
    """A resumed session never turns a failed certificate into a good one."""
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    resumed_verdicts(tg, pki, bad_certs["expired"], version)
    assert [q.get("X-Client-Verify") for q in be.reqs()] == ["FAILED:cert_expired"] * 2


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_optional_failed_reason_survives_resumption(hserve, pki, bad_certs, version):
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    resumed_verdicts(tg, pki, bad_certs["self_signed"], version)
    assert [q.get("X-Client-Verify") for q in be.reqs()] == ["FAILED:self_signed"] * 2


def test_forwarded_headers_ipv6_client(tollgate, hbackend, pki):
    hb = hbackend()
    lst = https_listener(trusted_proxies=["::1"], add_forwarded_header=True)
    lst["listen"] = "[::1]:auto"
    tg = tollgate({"target_groups": {"g": {"targets": [{"address": hb.address}]}},
                   "listeners": [lst]})
    r, _ = one(tg, pki, host="[::1]", headers=[("X-Forwarded-For", "2001:db8::1")])
    assert r.status == 200
    req = hb.reqs()[0]
    assert req.get("X-Forwarded-For") == "2001:db8::1, ::1"
    assert req.get("X-Real-IP") == "::1"
    assert req.get("Forwarded") == 'for="[::1]";proto=https'  # RFC 7239 §6
    assert req.get("Host") == "[::1]"
