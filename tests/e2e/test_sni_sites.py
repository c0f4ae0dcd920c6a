"""Client trust per server name (listeners[].tls.sni): the ClientHello's SNI
picks the site that judges the handshake; a session never resumes under
another site; an https request whose Host (or :authority) names another
site than the handshake's gets 421 (the CVE-2025-23419 pattern); each site
verifies clients against its own CA."""

import socket

import pytest

import tg_tls
from tg_h2 import H2Client
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, free_port, group, listener, run_tollgate
from tg_sites import ctx_for, https_get, mint_site_certs, site_top


@pytest.fixture(scope="session")
def site_certs(pki, tmp_path_factory):
    return mint_site_certs(pki, tmp_path_factory.mktemp("sitecerts"))


def sites_cfg(site_certs, pki, foreign_pki=None, tls_extra=None, sni=None, protocol="https"):
    """The listener's own site one-way (localhost), one mutual entry for
    mtls.test under the PKI's CA."""
    tls = {"mode": "one-way", "certificates": ["ecdsa"],
           "sni": sni if sni is not None else [
               {"names": ["mtls.test"], "certificates": ["mtls"], "mode": "mutual",
                "client_ca": "pki"}]}
    tls.update(tls_extra or {})
    return tls


def top(site_certs, pki, foreign_pki=None):
    return site_top(pki, site_certs, foreign_pki)


def start_https(hserve, site_certs, pki, foreign_pki=None, **kw):
    lst = https_listener()
    lst["tls"] = sites_cfg(site_certs, pki, **kw)
    return hserve(lst, **top(site_certs, pki, foreign_pki))


# ---- the site is picked by SNI ----

def test_sni_picks_the_mutual_site(hserve, pki, site_certs):
    """SNI localhost is the one-way site: no certificate needed. SNI
    mtls.test is the mutual entry: refused without a certificate
    (no_client_cert), served with alice's, whose identity is forwarded."""
    tg, be = start_https(hserve, site_certs, pki)
    assert https_get(tg.addr(), ctx_for(pki), "localhost", "localhost")[0] == 200
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "mtls.test", "mtls.test")
    assert st is None, "the mutual site served a client without a certificate"
    assert tg.wait_event("tls_handshake_failed", reason="no_client_cert")[0]["sni"] == "mtls.test"
    st, _, _ = https_get(tg.addr(), ctx_for(pki, pki.client("alice")), "mtls.test", "mtls.test",
                         path="/alice")
    assert st == 200
    req = [r for r in be.reqs() if r.target == "/alice"][0]
    assert req.get("X-Client-Verify") == "SUCCESS"
    assert "CN=alice" in req.get("X-Client-Subject")


def test_no_sni_gets_the_listeners_own_site(hserve, pki, site_certs):
    """A client without SNI (it connected by address) is judged by the
    listener's own settings: one-way here."""
    tg, _ = start_https(hserve, site_certs, pki)
    ctx = ctx_for(pki)
    ctx.check_hostname = False
    raw = socket.create_connection(tg.addr(), timeout=T(10))
    with ctx.wrap_socket(raw) as s:  # no server_hostname: no SNI
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        assert s.recv(64).startswith(b"HTTP/1.1 200")


def test_wildcard_entry_covers_every_depth(hserve, pki, site_certs):
    """*.api.test is a site for a.api.test and x.a.api.test (every name
    below api.test, as a rule's *. reads it); api.test (exact, in the same
    entry) too; other names are the listener's own."""
    sni = [{"names": ["api.test", "*.api.test"], "certificates": ["api"], "mode": "mutual",
            "client_ca": "pki"}]
    tg, _ = start_https(hserve, site_certs, pki, sni=sni)
    anon = ctx_for(pki)
    anon.check_hostname = False
    alice = ctx_for(pki, pki.client("alice"))
    alice.check_hostname = False  # the certificate's *.api.test covers one label
    for name in ("a.api.test", "api.test", "B.API.TEST", "x.a.api.test"):
        assert https_get(tg.addr(), anon, name, name)[0] is None, name
        assert https_get(tg.addr(), alice, name.lower(), name.lower())[0] == 200, name
    for name in ("api.test.evil", "xapi.test", "localhost"):
        assert https_get(tg.addr(), anon, name, name)[0] == 200, name


def test_each_site_trusts_its_own_ca(hserve, pki, foreign_pki, site_certs):
    """Two mutual entries under different client CAs: the foreign PKI's
    alice gets into the entry that trusts it and is refused (unknown_ca)
    by the other, and the other way round for our alice."""
    sni = [{"names": ["mtls.test"], "certificates": ["mtls"], "mode": "mutual",
            "client_ca": "pki"},
           {"names": ["other.test"], "certificates": ["other"], "mode": "mutual",
            "client_ca": "foreign"}]
    tg, _ = start_https(hserve, site_certs, pki, foreign_pki=foreign_pki, sni=sni)
    ours, theirs = pki.client("alice"), foreign_pki.client("alice")
    assert https_get(tg.addr(), ctx_for(pki, ours), "mtls.test", "mtls.test")[0] == 200
    assert https_get(tg.addr(), ctx_for(pki, theirs), "other.test", "other.test")[0] == 200
    assert https_get(tg.addr(), ctx_for(pki, theirs), "mtls.test", "mtls.test")[0] is None
    assert https_get(tg.addr(), ctx_for(pki, ours), "other.test", "other.test")[0] is None
    tg.wait_event("tls_handshake_failed", count=2, reason="unknown_ca")


# ---- the CVE-2025-23419 pattern: one site's handshake, another's Host ----

@pytest.mark.parametrize("host", ["mtls.test", "MTLS.TEST", "mtls.test.", "mtls.test:443",
                                  "Mtls.Test.:8443"])
def test_one_way_handshake_cannot_ask_for_the_mutual_host(hserve, pki, site_certs, host):
    """SNI of the one-way site, Host of the mutual one: 421, whatever the
    case, trailing dot or port, and the backend sees nothing."""
    tg, be = start_https(hserve, site_certs, pki)
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "localhost", host, path="/sneak")
    assert st == 421, st
    assert not [r for r in be.reqs() if r.target == "/sneak"], "a misdirected request was forwarded"


def test_mutual_handshake_with_its_own_host_twin(hserve, pki, site_certs):
    """The twin: SNI and Host of the mutual site, with a certificate: 200.
    And SNI of the mutual site with the Host of the one-way site: 421 (a
    verified client's connection must not be used for another site)."""
    tg, be = start_https(hserve, site_certs, pki)
    alice = ctx_for(pki, pki.client("alice"))
    assert https_get(tg.addr(), alice, "mtls.test", "mtls.test", path="/ok")[0] == 200
    assert https_get(tg.addr(), alice, "mtls.test", "localhost", path="/cross")[0] == 421
    assert [r.target for r in be.reqs()] == ["/ok"]


def test_no_sni_cannot_ask_for_an_entry_host(hserve, pki, site_certs):
    """Without SNI the handshake is the listener's own: a Host of an entry
    gets 421; an address Host is served."""
    tg, be = start_https(hserve, site_certs, pki)
    ctx = ctx_for(pki)
    ctx.check_hostname = False
    for host, want in (("mtls.test", 421), ("127.0.0.1", 200)):
        raw = socket.create_connection(tg.addr(), timeout=T(10))
        with ctx.wrap_socket(raw) as s:
            s.sendall(f"GET /x HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            assert s.recv(64).startswith(f"HTTP/1.1 {want}".encode()), host


def test_h2_coalescing_gets_421_per_stream(hserve, pki, site_certs):
    """HTTP/2 on the one-way site's connection: a stream for the mutual
    site's :authority gets 421, the streams for the connection's own site
    are served on the same connection."""
    tg, be = start_https(hserve, site_certs, pki)
    with H2Client(tg.addr(), pki) as c:
        assert c.get("/mine", authority="localhost")[0] == 200
        assert c.get("/theirs", authority="mtls.test")[0] == 421
        assert c.get("/theirs2", authority="MTLS.test.:443")[0] == 421
        assert c.get("/mine2", authority="localhost")[0] == 200
    assert [r.target for r in be.reqs()] == ["/mine", "/mine2"]


# ---- sessions stay in their site ----

@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_never_resumes_under_another_site(hserve, pki, site_certs, version):
    """A session of the one-way site offered with the mutual site's SNI is
    not resumed: the full handshake asks for a certificate (refused
    without one). The twin: the same session resumes on its own site."""
    tg, be = start_https(hserve, site_certs, pki)
    anon = ctx_for(pki, version=version)
    anon.check_hostname = False
    st, _, sess = https_get(tg.addr(), anon, "localhost", "localhost")
    assert st == 200 and sess is not None
    st, reused, _ = https_get(tg.addr(), anon, "localhost", "localhost", session=sess)
    assert st == 200 and reused, "the twin: a session must resume on its own site"
    st, reused, _ = https_get(tg.addr(), anon, "mtls.test", "mtls.test", path="/resumed",
                              session=sess)
    assert not reused, "a one-way site's session resumed under the mutual site"
    assert st is None, "the mutual site served a client without a certificate"
    assert not [r for r in be.reqs() if r.target == "/resumed"]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mutual_session_does_not_carry_into_another_mutual_site(hserve, pki, foreign_pki,
                                                                site_certs, version):
    """alice's session on the site trusting our CA, offered to the site
    trusting the foreign CA, is not resumed: the full handshake judges
    alice under the foreign CA and refuses her."""
    sni = [{"names": ["mtls.test"], "certificates": ["mtls"], "mode": "mutual",
            "client_ca": "pki"},
           {"names": ["other.test"], "certificates": ["other"], "mode": "mutual",
            "client_ca": "foreign"}]
    tg, be = start_https(hserve, site_certs, pki, foreign_pki=foreign_pki, sni=sni)
    alice = ctx_for(pki, pki.client("alice"), version=version)
    alice.check_hostname = False
    st, _, sess = https_get(tg.addr(), alice, "mtls.test", "mtls.test")
    assert st == 200
    st, reused, _ = https_get(tg.addr(), alice, "mtls.test", "mtls.test", session=sess)
    assert st == 200 and reused
    st, reused, _ = https_get(tg.addr(), alice, "other.test", "other.test", path="/x",
                              session=sess)
    assert not reused and st is None
    assert not [r for r in be.reqs() if r.target == "/x"]


# ---- tcp_ssl ----

def test_tcp_ssl_sites(tollgate, backend, pki, site_certs):
    """A tcp_ssl listener with a mutual entry: the one-way name relays
    anybody, the mutual name only a client with a certificate, and not one
    byte of a refused client reaches the target."""
    be = backend()
    lst = listener()
    lst["tls"] = sites_cfg(site_certs, pki)
    cfg = top(site_certs, pki)
    cfg.update({"target_groups": {"g": group(be.address)}, "listeners": [lst]})
    tg = tollgate(cfg)
    anon = ctx_for(pki)
    ok, _ = tg_tls.roundtrip(tg.addr(), anon, b"open\n")
    assert ok
    ok, detail, _ = tg_tls.attempt(tg.addr(), anon, server_hostname="mtls.test")
    assert not ok, detail
    ok, _ = tg_tls.roundtrip(tg.addr(), ctx_for(pki, pki.client("alice")), b"alice\n",
                             server_hostname="mtls.test")
    assert ok
    assert all(b"never reach" not in bytes(c.data) for c in be.snapshot())


# ---- strict_sni ----

def test_strict_sni_knows_entry_names(hserve, pki, site_certs):
    """With strict_sni an entry's name is known even when no certificate
    of the listener covers it; a name in no entry and no certificate is
    refused (unknown_sni)."""
    tg, _ = start_https(hserve, site_certs, pki, tls_extra={"strict_sni": True})
    assert https_get(tg.addr(), ctx_for(pki, pki.client("alice")), "mtls.test",
                     "mtls.test")[0] == 200
    anon = ctx_for(pki)
    anon.check_hostname = False
    assert https_get(tg.addr(), anon, "nobody.test", "nobody.test")[0] is None
    tg.wait_event("tls_handshake_failed", reason="unknown_sni")


# ---- the config ----

def check(tmp_path, pki, site_certs, tls, protocol="https", name="c.yaml"):
    from tg_proc import to_yaml
    lst = https_listener() if protocol == "https" else listener()
    lst["tls"] = tls
    lst["listen"] = "127.0.0.1:%d" % free_port()
    cfg = top(site_certs, pki)
    cfg.update({"target_groups": {"g": group("127.0.0.1:9")}, "listeners": [lst]})
    p = tmp_path / name
    p.write_text(to_yaml(cfg))
    return run_tollgate(["check", "-c", str(p)])


def test_check_refuses_a_name_in_two_entries(tmp_path, pki, site_certs):
    tls = {"certificates": ["ecdsa"], "sni": [
        {"names": ["mtls.test"], "mode": "mutual", "client_ca": "pki"},
        {"names": ["other.test", "MTLS.test"]}]}
    r = check(tmp_path, pki, site_certs, tls)
    assert r.returncode == 1
    assert "is already a name of listeners[0].tls.sni[0]" in r.stderr, r.stderr


def test_check_explains_a_wildcard_over_an_exact_name(tmp_path, pki, site_certs):
    tls = {"certificates": ["ecdsa"], "sni": [
        {"names": ["*.api.test"], "mode": "mutual", "client_ca": "pki"},
        {"names": ["a.api.test"]}]}
    r = check(tmp_path, pki, site_certs, tls)
    assert r.returncode == 0, r.stderr
    assert "exact names win" in r.stderr and "warning" in r.stderr


@pytest.mark.parametrize("tls,needle", [
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.test"], "mode": "mutual"}]},
     "a mutual entry needs client_ca"),
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.test"], "client_ca": "pki"}]},
     "only used with mode: mutual"),
    ({"certificates": ["ecdsa"], "sni": [{"mode": "mutual", "client_ca": "pki"}]},
     "names: required key is missing"),
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.test."]}]}, "is not a server name"),
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.test:443"]}]}, "is not a server name"),
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.*.test"]}]}, "is not a server name"),
    ({"certificates": ["ecdsa"], "sni": [{"names": []}]}, "at least one name"),
    ({"certificates": ["ecdsa"], "sni": [{"names": ["a.test"], "certificates": ["nope"]}]},
     "nope"),
    ({"certificates": ["ecdsa"], "on_revoke": "keep"}, "only used with mode: mutual"),
])
def test_check_refuses_bad_entries(tmp_path, pki, site_certs, tls, needle):
    r = check(tmp_path, pki, site_certs, tls)
    assert r.returncode == 1, r.stderr
    assert needle in r.stderr, r.stderr
    assert "c.yaml:" in r.stderr  # file:line:col


def test_check_takes_mutual_keys_when_an_entry_is_mutual(tmp_path, pki, site_certs):
    """The twin: on_revoke on a one-way listener is fine once an entry is
    mutual; an entry inherits the listener's client_ca."""
    tls = {"certificates": ["ecdsa"], "on_revoke": "keep", "on_expiry": "keep",
           "sni": [{"names": ["a.test"], "mode": "mutual", "client_ca": "pki"}]}
    r = check(tmp_path, pki, site_certs, tls)
    assert r.returncode == 0, r.stderr
    tls = {"certificates": ["ecdsa"], "mode": "mutual", "client_ca": "pki",
           "sni": [{"names": ["a.test"], "mode": "mutual"}]}
    r = check(tmp_path, pki, site_certs, tls, name="d.yaml")
    assert r.returncode == 0, r.stderr


def test_check_tcp_ssl_optional_entry_needs_proxy_v2(tmp_path, pki, site_certs):
    tls = {"certificates": ["ecdsa"], "sni": [
        {"names": ["a.test"], "mode": "mutual", "client_ca": "pki", "client_auth": "optional"}]}
    r = check(tmp_path, pki, site_certs, tls, protocol="tcp_ssl")
    assert r.returncode == 1 and "proxy_protocol: v2" in r.stderr, r.stderr
