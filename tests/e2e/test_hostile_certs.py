"""Hostile client certificates: serials of 120 and 300 octets, 300 SANs and
40 OU components, an embedded NUL and a BMPString in the CN, a CN of 300 characters. On tcp_ssl and
https, client_auth optional and required: the worker never dies (its pid is
the same after the attack), a valid client's connection opened before the
attack still works after it, and each certificate gets the verdict it
deserves. A valid client with a large certificate is served whole, and
client_cert_header chooses what of it the backend gets."""

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import serialization

import tg_certs
import tg_hostile
import tg_proxyproto as pp
import tg_tls
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, listener, wait_for


@pytest.fixture(scope="module")
def hostile(pki, tmp_path_factory):
    issuer = (pki.path("intermediate.crt"), pki.path("intermediate.key"))
    return tg_hostile.mint(tmp_path_factory.mktemp("hostile"), issuer)


def expected_verdict(kind, how):
    """What X-Client-Verify (or the refusal) says about a certificate."""
    if kind in tg_hostile.REFUSED:
        return tg_hostile.REFUSED[kind]
    return "SUCCESS" if how == "ca" else "self_signed"


def sf_binary(value):
    assert value.startswith(":") and value.endswith(":"), value[:80]
    return base64.b64decode(value[1:-1], validate=True)


def leaf_der(path):
    return tg_certs.load_certs(path)[0].public_bytes(serialization.Encoding.DER)


def same_workers(tg, before):
    after = sorted(tg.worker_pids())
    assert after == before, f"a worker died: pids {before} -> {after}"
    assert not tg.events("worker_died")


# ---- tcp_ssl (PROXY v2 carries the verdict) ----

@pytest.mark.parametrize("auth", ["optional", "required"])
def test_tcp_ssl_survives_hostile_certificates(serve, pki, hostile, auth):
    tg, be = serve(listener(mode="mutual", client_auth=auth, proxy="v2"),
                   backend_kw={"proxy": True}, workers=1)
    before = sorted(tg.worker_pids())
    assert len(before) == 1
    good = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    try:
        good.sendall(b"before\n")
        assert tg_tls.recv_exact(good, 7) == b"before\n"
        n_conns = 1
        for kind in tg_hostile.KINDS:
            for how in ("ca", "self"):
                want = expected_verdict(kind, how)
                ctx = tg_tls.client_ctx(pki, cert=hostile[(kind, how)])
                ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
                if auth == "required" and want != "SUCCESS":
                    assert not ok, f"{kind}/{how} was relayed: {detail}"
                    assert tg.wait_rejection(port)["reason"] == want, (kind, how)
                else:
                    assert ok, f"{kind}/{how}: {detail}"
                    n_conns += 1
                    c = be.wait_conns(n_conns, T(5))[-1]
                    assert c.proxy is not None and c.proxy.ssl is not None, c.proxy_error
                    assert (c.proxy.ssl["verify"] == 0) == (want == "SUCCESS"), (kind, how)
                    if kind == "nul_cn":
                        # The NUL is shown, never taken as the end of the name.
                        cn = c.proxy.ssl_sub(pp.PP2_SUBTYPE_SSL_CN)
                        assert cn == b"alice\\00.evil.example", cn
                    if kind == "bmp_cn":
                        cn = c.proxy.ssl_sub(pp.PP2_SUBTYPE_SSL_CN)
                        assert cn == tg_hostile.BMP_CN.encode(), cn
                # The valid connection opened before is still served.
                good.sendall(kind.encode() + b"\n")
                assert tg_tls.recv_exact(good, len(kind) + 1) == kind.encode() + b"\n"
                same_workers(tg, before)
    finally:
        good.close()
    # And a new valid client after all of it.
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("bob")), b"x\n")
    assert got == b"x\n"
    same_workers(tg, before)


# ---- https (the verdict and facts in headers) ----

@pytest.mark.parametrize("auth", ["optional", "required"])
def test_https_survives_hostile_certificates(hserve, pki, hostile, auth):
    tg, be = hserve(https_listener(mode="mutual", client_auth=auth), workers=1)
    before = sorted(tg.worker_pids())
    assert len(before) == 1
    n_reqs = 0
    with Client(tg.addr(), pki, cert=pki.client("alice")) as good:
        assert good.request("GET", "/before").status == 200
        n_reqs += 1
        for kind in tg_hostile.KINDS:
            for how in ("ca", "self"):
                want = expected_verdict(kind, how)
                cert = hostile[(kind, how)]
                if auth == "required" and want != "SUCCESS":
                    with pytest.raises(OSError):
                        with Client(tg.addr(), pki, cert=cert) as c:
                            c.request("GET", "/attack")
                    wait_for(lambda: any(e.get("reason") == want
                                         for e in tg.events("tls_handshake_failed")),
                             T(5), what=f"rejection {want}")
                else:
                    with Client(tg.addr(), pki, cert=cert) as c:
                        r = c.request("GET", f"/{kind}-{how}")
                    assert r.status == 200, (kind, how, r.status)
                    n_reqs += 1
                    req = be.wait_requests(n_reqs, T(5))[-1]
                    verify = req.get("X-Client-Verify")
                    assert verify == (want if want == "SUCCESS" else f"FAILED:{want}"), \
                        (kind, how, verify)
                    if kind == "nul_cn":
                        assert "CN=alice\\00.evil.example" in req.get("X-Client-Subject")
                    if kind == "bmp_cn":
                        assert f"CN={tg_hostile.BMP_CN}" in \
                            req.get("X-Client-Subject").encode("latin-1").decode()
                    if kind.startswith("serial"):
                        assert req.get("X-Client-Serial") == ""
                assert good.request("GET", f"/after-{kind}-{how}").status == 200
                n_reqs += 1
                same_workers(tg, before)
    same_workers(tg, before)
    # Every access line is one JSON object, whatever the certificate held.
    for rec in tg.access():
        assert isinstance(rec, dict)


def test_valid_large_certificate_is_forwarded_whole(hserve, pki, hostile):
    """A CA-issued certificate with 300 SANs and 40 OUs: its Client-Cert
    alone is ~17 kB of base64, more than the 16 KiB head a request may have."""
    tg, be = hserve(https_listener(mode="mutual"))
    cert = hostile[("many_names", "ca")]
    with Client(tg.addr(), pki, cert=cert) as c:
        r = c.request("GET", "/large")
        assert r.status == 200, r.status
        assert c.request("GET", "/again").status == 200
    req = be.wait_requests(2, T(5))[0]
    der = leaf_der(cert[0])
    assert len(req.get("Client-Cert")) > 16384
    assert sf_binary(req.get("Client-Cert")) == der
    assert req.get("X-Client-Verify") == "SUCCESS"
    assert req.get("X-Client-Subject").count("OU=") == tg_hostile.N_OUS
    assert req.get("X-Client-Fingerprint") == hashlib.sha256(der).hexdigest()
    # twin: an ordinary certificate on the same listener is forwarded as before
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.request("GET", "/small").status == 200
    assert sf_binary(be.wait_requests(3, T(5))[-1].get("Client-Cert")) == \
        leaf_der(pki.client("alice")[0])


def test_valid_large_certificate_over_tcp_ssl_proxy_v2(serve, pki, hostile):
    """The PROXY v2 header with a 12 kB certificate TLV is sent whole."""
    tg, be = serve(listener(mode="mutual", proxy="v2"), backend_kw={"proxy": True})
    cert = hostile[("many_names", "ca")]
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=cert), b"big\n")
    assert got == b"big\n"
    c = be.wait_conns(1, T(5))[0]
    assert c.proxy.ssl["verify"] == 0
    assert c.proxy.tlv(pp.PP2_TYPE_CLIENT_CERT) == leaf_der(cert[0])


@pytest.mark.parametrize("what,present,absent", [
    ("full", ["Client-Cert", "Client-Cert-Chain", "X-Client-Subject", "X-Client-Fingerprint"], []),
    ("leaf", ["Client-Cert", "X-Client-Subject", "X-Client-Fingerprint"], ["Client-Cert-Chain"]),
    ("hash", ["X-Client-Subject", "X-Client-Serial", "X-Client-Fingerprint"],
     ["Client-Cert", "Client-Cert-Chain"]),
    ("off", [], ["Client-Cert", "Client-Cert-Chain", "X-Client-Subject", "X-Client-Issuer",
                 "X-Client-Serial", "X-Client-Fingerprint"]),
])
def test_client_cert_header_modes(hserve, pki, what, present, absent):
    tg, be = hserve(https_listener(mode="mutual", tls_extra={"client_cert_header": what}))
    with Client(tg.addr(), pki, cert=pki.client("alice")) as c:
        assert c.request("GET", "/").status == 200
    req = be.wait_requests(1, T(5))[0]
    assert req.get("X-Client-Verify") == "SUCCESS"
    for n in present:
        assert req.get(n), f"{what}: {n} missing"
    for n in absent:
        assert req.all(n) == [], f"{what}: {n} sent"
    if what == "hash":
        der = leaf_der(pki.client("alice")[0])
        assert req.get("X-Client-Fingerprint") == hashlib.sha256(der).hexdigest()


def test_client_cert_header_needs_https_mutual(tollgate, pki):
    """Twin of the modes: the key is refused where it means nothing."""
    cfg = {"target_groups": {"g": {"targets": [{"address": "127.0.0.1:9"}]}},
           "listeners": [listener(mode="mutual", tls_extra={"client_cert_header": "hash"})]}
    with pytest.raises(AssertionError) as e:
        tollgate(cfg)
    assert "client_cert_header" in str(e.value) and "only used with protocol https" in \
        str(e.value)


def test_access_log_of_a_hostile_certificate_is_json(hserve, pki, hostile):
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional"))
    for kind in ("serial300", "nul_cn", "many_names"):
        with Client(tg.addr(), pki, cert=hostile[(kind, "self")]) as c:
            assert c.request("GET", f"/{kind}").status == 200
    recs = tg.wait_access(lambda r: r.get("path", "").startswith("/"), count=3)
    by_path = {r["path"]: r for r in recs}
    assert by_path["/serial300"]["client_serial"] == ""
    assert by_path["/serial300"]["client_verify"] == "serial_too_long"
    assert "alice\\00.evil.example" in by_path["/nul_cn"]["client_subject"]
    assert by_path["/many_names"]["client_subject"].count("OU=") == tg_hostile.N_OUS
    json.dumps(recs)  # round-trips
