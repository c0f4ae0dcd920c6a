"""PROXY protocol v1 and v2 towards the backend, and client_auth: optional
passing the verdict to the backend in the v2 SSL TLV."""

import struct

import pytest

import tg_certs
import tg_proxyproto as pp
import tg_tls
from tg_proc import T, listener


def one_conn(tg, be, ctx, payload=b"after the header\n", server_hostname="localhost"):
    got, info = tg_tls.roundtrip(tg.addr(), ctx, payload, server_hostname=server_hostname)
    assert got == payload
    c = be.wait_conns(1, T(5))[-1]
    assert c.proxy_error is None, c.proxy_error
    assert bytes(c.data) == payload, "the client bytes must follow the header unchanged"
    return c, info


# ---- the parser itself (so that a parser bug cannot hide a tollgate bug) ----

def test_parser_accepts_spec_example_and_rejects_truncation():
    body = bytes([127, 0, 0, 1, 10, 0, 0, 1]) + struct.pack(">HH", 1234, 443)
    tlv = bytes([0x02]) + struct.pack(">H", 4) + b"host"
    raw = pp.V2_SIG + bytes([0x21, 0x11]) + struct.pack(">H", len(body + tlv)) + body + tlv
    h = pp.parse(raw)
    assert (h.family, h.src, h.dst) == ("TCP4", ("127.0.0.1", 1234), ("10.0.0.1", 443))
    assert h.tlv(pp.PP2_TYPE_AUTHORITY) == b"host"
    with pytest.raises(pp.ProxyError):
        pp.parse(raw[:-1])
    bad_tlv = bytes([0x02, 0x00, 0x09]) + b"host"  # claims 9 bytes, has 4
    with pytest.raises(pp.ProxyError):
        pp.parse(raw[:14] + struct.pack(">H", len(body + bad_tlv)) + body + bad_tlv)
    h1 = pp.parse(b"PROXY TCP4 127.0.0.1 10.0.0.1 1234 443\r\n")
    assert h1.src == ("127.0.0.1", 1234)
    with pytest.raises(pp.ProxyError):
        pp.parse(b"PROXY TCP4 127.0.0.1 10.0.0.1 01234 443\r\n")


# ---- v1 ----

@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_proxy_v1_line(serve, pki, mode):
    tg, be = serve(listener(mode=mode, proxy="v1"), backend_kw={"proxy": True})
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice") if mode == "mutual" else None)
    c, info = one_conn(tg, be, ctx)
    h = c.proxy
    assert h is not None and h.version == 1
    assert h.family == "TCP4"
    assert h.src == ("127.0.0.1", info["local"][1])
    assert h.dst == ("127.0.0.1", tg.addr()[1])


def test_no_proxy_header_when_none(serve, pki):
    """Twin: proxy_protocol none (the default) sends the client bytes only."""
    tg, be = serve(listener(proxy="none"))
    got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"PLAIN\n")
    assert got == b"PLAIN\n"
    c = be.wait_conns(1, T(5))[0]
    assert bytes(c.data) == b"PLAIN\n"


# ---- v2 ----

@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_proxy_v2_addresses_and_tls_facts(serve, pki, mode):
    tg, be = serve(listener(mode=mode, proxy="v2"), backend_kw={"proxy": True})
    cert = pki.client("alice") if mode == "mutual" else None
    ctx = tg_tls.client_ctx(pki, cert=cert)
    ctx.set_alpn_protocols(["x-e2e"])
    c, info = one_conn(tg, be, ctx)
    h = c.proxy
    assert h.version == 2 and h.command == "PROXY" and h.family == "TCP4"
    assert h.src == ("127.0.0.1", info["local"][1])
    assert h.dst == ("127.0.0.1", tg.addr()[1])
    assert h.tlv(pp.PP2_TYPE_AUTHORITY) == b"localhost"
    assert h.ssl is not None, "SSL TLV missing"
    assert h.ssl["client"] & pp.PP2_CLIENT_SSL
    assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_VERSION) == info["version"].encode()
    assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_CIPHER) == info["cipher"][0].encode()
    if mode == "mutual":
        assert h.ssl["verify"] == 0
        assert h.ssl["client"] & pp.PP2_CLIENT_CERT_CONN
        assert h.ssl["client"] & pp.PP2_CLIENT_CERT_SESS
        assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_CN) == b"alice"
        assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) == tg_certs.der_of(pki.path("alice.crt"))
    else:
        assert h.ssl["verify"] != 0
        assert h.ssl["client"] & (pp.PP2_CLIENT_CERT_CONN | pp.PP2_CLIENT_CERT_SESS) == 0
        assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_CN) is None
        assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) is None


def test_proxy_v2_without_sni_has_no_authority(serve, pki):
    tg, be = serve(listener(proxy="v2"), backend_kw={"proxy": True})
    c, info = one_conn(tg, be, tg_tls.client_ctx(pki), server_hostname="127.0.0.1")
    assert c.proxy.tlv(pp.PP2_TYPE_AUTHORITY) is None
    assert c.proxy.tlv(pp.PP2_TYPE_ALPN) is None


def test_proxy_v2_alpn_only_when_negotiated(serve, pki):
    """ALPN TLV carries the protocol the client offered and the server took;
    with no ALPN there is no TLV (see the test above)."""
    tg, be = serve(listener(proxy="v2"), backend_kw={"proxy": True})
    ctx = tg_tls.client_ctx(pki)
    ctx.set_alpn_protocols(["x-e2e"])
    with tg_tls.connect(tg.addr(), ctx) as s:
        selected = s.selected_alpn_protocol()
        s.sendall(b"a\n")
        assert tg_tls.recv_exact(s, 2) == b"a\n"
    c = be.wait_conns(1, T(5))[0]
    alpn = c.proxy.tlv(pp.PP2_TYPE_ALPN)
    if selected is None:
        assert alpn is None
    else:
        assert alpn == selected.encode()


# ---- client_auth: optional ----

def optional_listener():
    return listener(mode="mutual", client_auth="optional", proxy="v2")


def test_optional_good_cert_verified_and_der_passed(serve, pki):
    tg, be = serve(optional_listener(), backend_kw={"proxy": True})
    c, info = one_conn(tg, be, tg_tls.client_ctx(pki, cert=pki.client("bob")))
    h = c.proxy
    assert h.ssl["verify"] == 0
    assert h.ssl["client"] & pp.PP2_CLIENT_SSL
    assert h.ssl["client"] & pp.PP2_CLIENT_CERT_CONN
    assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) == tg_certs.der_of(pki.path("bob.crt"))
    assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_CN) == b"bob"
    rec = tg.access_for(info["local"][1])
    assert rec["client_verify"] == "SUCCESS"


def test_optional_no_cert_accepted_with_verify_failed(serve, pki):
    tg, be = serve(optional_listener(), backend_kw={"proxy": True})
    c, info = one_conn(tg, be, tg_tls.client_ctx(pki))
    h = c.proxy
    assert h.ssl["verify"] != 0
    assert h.ssl["client"] & pp.PP2_CLIENT_SSL
    assert h.ssl["client"] & (pp.PP2_CLIENT_CERT_CONN | pp.PP2_CLIENT_CERT_SESS) == 0
    assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) is None
    assert tg.rejections() == []
    rec = tg.access_for(info["local"][1])
    assert rec["client_verify"] == "NONE" and rec["outcome"] == "ok"


@pytest.mark.parametrize("kind,reason", [("expired", "cert_expired"),
                                         ("self_signed", "self_signed"),
                                         ("revoked", "cert_revoked"),
                                         ("unknown_ca", "unknown_ca")])
def test_optional_bad_cert_accepted_with_verdict(serve, pki, foreign_pki, bad_certs, kind,
                                                  reason):
    tg, be = serve(optional_listener(), backend_kw={"proxy": True})
    cert = {"revoked": pki.client("revoked"),
            "unknown_ca": foreign_pki.client("alice")}.get(kind) or bad_certs[kind]
    c, info = one_conn(tg, be, tg_tls.client_ctx(pki, cert=cert))
    h = c.proxy
    assert h.ssl["verify"] != 0, "a bad certificate must not be reported as verified"
    assert h.ssl["client"] & pp.PP2_CLIENT_CERT_CONN
    assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) == tg_certs.der_of(cert[0])
    rec = tg.access_for(info["local"][1])
    assert rec["client_verify"] == reason, rec
    assert rec["outcome"] == "ok"


def test_required_refuses_what_optional_accepts(serve, pki, bad_certs):
    """Twin of the optional tests: the same cert on a required listener."""
    tg, be = serve(listener(mode="mutual", client_auth="required", proxy="v2"),
                   backend_kw={"proxy": True})
    ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki,
                                                                   cert=bad_certs["expired"]))
    assert not ok
    assert tg.wait_rejection(port)["reason"] == "cert_expired"
    c, _ = one_conn(tg, be, tg_tls.client_ctx(pki, cert=pki.client("alice")))
    assert be.count() == 1


def test_proxy_v2_header_precedes_backend_first_bytes_even_when_backend_speaks_first(serve, pki):
    """A server-speaks-first backend: the client reads the greeting, and the
    backend still got the header before anything else."""
    tg, be = serve(listener(proxy="v2"), backend_kw={"proxy": True, "greeting": b"220 hi\r\n",
                                                     "mode": "sink"})
    with tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki)) as s:
        assert tg_tls.recv_exact(s, 8) == b"220 hi\r\n"
    c = be.wait_conns(1, T(5))[0]
    assert c.proxy is not None and c.proxy.version == 2 and c.proxy_error is None


def test_proxy_v2_on_a_resumed_mutual_session(serve, pki):
    """Resumed: no certificate on this connection (CERT_CONN clear), but the
    session has one (CERT_SESS), still verified, still forwarded."""
    tg, be = serve(listener(mode="mutual", proxy="v2"), backend_kw={"proxy": True})
    ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version="1.3")
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"first\n")
    with tg_tls.connect(tg.addr(), ctx, session=info["session"]) as s:
        assert s.session_reused
        port = s.getsockname()[1]
        s.sendall(b"again\n")
        assert tg_tls.recv_exact(s, 6) == b"again\n"
    first, second = be.wait_conns(2, T(5))[:2]
    assert first.proxy.ssl["client"] & pp.PP2_CLIENT_CERT_CONN
    h = second.proxy
    assert h.ssl["verify"] == 0
    assert h.ssl["client"] & pp.PP2_CLIENT_CERT_SESS
    assert not h.ssl["client"] & pp.PP2_CLIENT_CERT_CONN
    assert h.tlv(pp.PP2_TYPE_CLIENT_CERT) == tg_certs.der_of(pki.path("alice.crt"))
    assert h.ssl_sub(pp.PP2_SUBTYPE_SSL_CN) == b"alice"
    rec = tg.access_for(port)
    assert rec["resumed"] is True and rec["client_verify"] == "SUCCESS"


@pytest.mark.parametrize("proto", ["v1", "v2"])
def test_proxy_header_for_ipv6_client(serve, pki, proto):
    tg, be = serve(listener(proxy=proto, listen="[::1]:auto"), backend_kw={"proxy": True})
    got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"six\n")
    assert got == b"six\n"
    h = be.wait_conns(1, T(5))[0].proxy
    assert h is not None and h.family == "TCP6"
    assert h.src == ("::1", info["local"][1])
    assert h.dst == ("::1", tg.addr()[1])
