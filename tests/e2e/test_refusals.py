"""mutual + client_auth: required refuses each kind of bad client during the
handshake, logs the reason, and never opens a backend connection for it."""

import pytest
from cryptography.x509.oid import NameOID

import tg_certs
import tg_tls
from tg_proc import T, listener

CASES = {
    # kind: (reason code, where the cert comes from)
    "no_cert": ("no_client_cert", None),
    "expired": ("cert_expired", "bad"),
    "not_yet_valid": ("cert_not_yet_valid", "bad"),
    "revoked": ("cert_revoked", "pki"),
    "unknown_ca": ("unknown_ca", "foreign"),
    "self_signed": ("self_signed", "bad"),
    "server_only": ("wrong_purpose", "bad"),
}


def cert_for(kind, pki, foreign_pki, bad_certs):
    src = CASES[kind][1]
    if src is None:
        return None
    if src == "pki":
        return pki.client("revoked")
    if src == "foreign":
        return foreign_pki.client("alice")
    return bad_certs[kind]


def cn(path):
    return tg_certs.load_cert(path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def issuer_cn(path):
    return tg_certs.load_cert(path).issuer.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def assert_refused_and_nothing_reached(tg, be, pki, ctx, reason, cert):
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
    assert not ok, f"a bad client was served: {detail}"
    e = tg.wait_rejection(port)
    assert e["reason"] == reason, e["_line"]
    assert be.count() == 0, "the backend saw a connection for a refused client"
    assert e["listener"] == "main"
    assert e["client"] == f"127.0.0.1:{port}"
    assert e["sni"] == "localhost"
    assert e["_level"] in ("warn", "info", "error")
    if cert is not None:
        assert f"CN={cn(cert[0])}" in e["subject"], e["_line"]
        assert f"CN={issuer_cn(cert[0])}" in e["issuer"], e["_line"]
    else:
        assert e["subject"] == ""
    rec = tg.access_for(port)
    assert rec["outcome"] == "tls_rejected" and rec["reason"] == reason, rec
    assert rec["target"] == "" and rec["bytes_in"] == 0, rec

    # Barrier: a good client on the same (single) worker is served after
    # the refusal; by then a backend connection for the bad one would exist.
    good = tg_tls.client_ctx(pki, cert=pki.client("alice"))
    got, _ = tg_tls.roundtrip(tg.addr(), good, b"good client\n")
    assert got == b"good client\n"
    conns = be.wait_conns(1, T(5))
    assert len(conns) == 1, f"backend saw {len(conns)} connections, only the good one belongs"
    assert bytes(conns[0].data) == b"good client\n"
    assert len(tg.rejections(port)) == 1, "one log line per refused handshake"


@pytest.mark.parametrize("kind", list(CASES))
def test_mutual_required_refuses(serve, pki, foreign_pki, bad_certs, kind):
    reason = CASES[kind][0]
    tg, be = serve(listener(mode="mutual", client_auth="required"))
    cert = cert_for(kind, pki, foreign_pki, bad_certs)
    ctx = tg_tls.client_ctx(pki, cert=cert)
    assert_refused_and_nothing_reached(tg, be, pki, ctx, reason, cert)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mutual_refusal_in_both_versions(serve, pki, bad_certs, version):
    """TLS 1.2 refuses inside the handshake, TLS 1.3 after the client's Finished;
    both log the same reason and reach no backend."""
    tg, be = serve(listener(mode="mutual"))
    cert = bad_certs["expired"]
    ctx = tg_tls.client_ctx(pki, cert=cert, version=version)
    assert_refused_and_nothing_reached(tg, be, pki, ctx, "cert_expired", cert)


def test_minted_good_cert_is_accepted(serve, pki, bad_certs):
    """Accepting twin: a certificate made by the same code as the bad ones,
    but valid, passes; so each refusal above is for its one defect."""
    tg, be = serve(listener(mode="mutual"))
    ctx = tg_tls.client_ctx(pki, cert=bad_certs["good_minted"])
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"minted\n")
    assert got == b"minted\n"
    rec = tg.access_for(info["local"][1])
    assert rec["client_verify"] == "SUCCESS" and "CN=goodminted" in rec["client_subject"]
    assert be.count() == 1


@pytest.mark.parametrize("client", ["alice", "bob"])
def test_every_issued_client_is_accepted(serve, pki, client):
    tg, be = serve(listener(mode="mutual"))
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client(client)),
                              b"hi\n")
    assert got == b"hi\n"


def test_foreign_ca_accepted_when_it_is_the_client_ca(tollgate, backend, pki, foreign_pki):
    """Twin of unknown_ca: trust follows client_ca, not anything built in."""
    be = backend()
    cfg = {"client_cas": {"pki": {"ca": foreign_pki.path("root.crt"),
                                  "crl": foreign_pki.path("clients.crl")}},
           "target_groups": {"g": {"targets": [{"address": be.address}]}},
           "listeners": [listener(mode="mutual")]}
    tg = tollgate(cfg)
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=foreign_pki.client("alice")),
                              b"foreign\n")
    assert got == b"foreign\n"
    # ...and then our own alice is the unknown one.
    ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    assert not ok
    assert tg.wait_rejection(port)["reason"] == "unknown_ca"
    assert be.count() == 1


def test_revoked_accepted_without_crl(tollgate, backend, pki):
    """Twin of cert_revoked: it is the CRL that refuses it."""
    be = backend()
    cfg = {"client_cas": {"nocrl": {"ca": pki.path("root.crt")}},
           "target_groups": {"g": {"targets": [{"address": be.address}]}},
           "listeners": [listener(mode="mutual", client_ca="nocrl")]}
    tg = tollgate(cfg)
    got, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("revoked")),
                              b"r\n")
    assert got == b"r\n"


def test_chain_too_long(tollgate, backend, pki, tmp_path):
    """A client two intermediates below its root: refused with verify_depth 1,
    accepted with verify_depth 3 (the same chain, the same CA)."""
    root, leaf = tg_certs.mint_deep_chain(tmp_path)
    be = backend()
    cas = {"deep": {"ca": root}}
    groups = {"g": {"targets": [{"address": be.address}]}}
    tg = tollgate({"client_cas": cas, "target_groups": groups, "listeners": [
        listener(mode="mutual", client_ca="deep", tls_extra={"verify_depth": 1}),
        listener(name="deep", mode="mutual", client_ca="deep", tls_extra={"verify_depth": 3})]})
    ctx = tg_tls.client_ctx(pki, cert=leaf)
    ok, detail, port = tg_tls.attempt(tg.addr("main"), ctx)
    assert not ok, detail
    assert tg.wait_rejection(port)["reason"] == "chain_too_long"
    got, _ = tg_tls.roundtrip(tg.addr("deep"), ctx, b"deep\n")
    assert got == b"deep\n"
    assert be.count() == 1


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_verify_depth_counts_intermediates(tollgate, backend, pki, tmp_path, depth):
    """verify_depth N is the number of intermediates allowed between the
    client's certificate and the root: exactly N intermediates pass (with N
    = 0, a certificate signed by the root itself), N + 1 are refused with
    chain_too_long and reach no backend."""
    root, leaves = tg_certs.mint_chains(tmp_path, depth + 1)
    be = backend()
    tg = tollgate({"client_cas": {"chains": {"ca": root}},
                   "target_groups": {"g": {"targets": [{"address": be.address}]}},
                   "listeners": [listener(mode="mutual", client_ca="chains",
                                          tls_extra={"verify_depth": depth})]})
    got, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=leaves[depth]), b"n\n")
    assert got == b"n\n"
    assert tg.access_for(info["local"][1])["client_verify"] == "SUCCESS"
    assert be.count() == 1

    ok, detail, port = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki, cert=leaves[depth + 1]))
    assert not ok, f"{depth + 1} intermediates passed verify_depth {depth}: {detail}"
    assert tg.wait_rejection(port)["reason"] == "chain_too_long"
    assert be.count() == 1


def test_session_from_one_way_listener_does_not_skip_client_auth(tollgate, backend, pki):
    """Ticket keys are shared by every listener of an instance; a session won
    without a client certificate must not resume on a mutual listener."""
    be = backend()
    tg = tollgate({"target_groups": {"g": {"targets": [{"address": be.address}]}},
                   "listeners": [listener(name="open"), listener(mode="mutual")]})
    for version in ("1.2", "1.3"):
        ctx = tg_tls.client_ctx(pki, version=version)
        _, info = tg_tls.roundtrip(tg.addr("open"), ctx, b"open\n")
        ok, detail, port = tg_tls.attempt(tg.addr("main"), ctx, session=info["session"],
                                          payload=b"sneaked in\n")
        assert not ok, f"TLS {version}: a one-way session got through client auth: {detail}"
        assert tg.wait_rejection(port)["reason"] == "no_client_cert"
        # Twin: the same session does resume where it came from.
        with tg_tls.connect(tg.addr("open"), ctx, session=info["session"]) as s:
            assert s.session_reused
    assert not [c for c in be.snapshot() if b"sneaked" in c.data]
