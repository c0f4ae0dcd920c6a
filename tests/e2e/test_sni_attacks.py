"""Hostile clients against per-SNI sites (listeners[].tls.sni).

What is attacked: the choice of the site from the ClientHello's server_name
(malformed, repeated, changed after a HelloRetryRequest or in a
renegotiation), sessions carried from one site to another, and requests
whose Host (or :authority) names another site than the one whose handshake
the connection passed. What must hold: a mutual site's host is never
served without that site's mutual handshake, a session never resumes under
another site, every site judges under its own CA and allow-list, the
worker never dies, and a well-behaved client is served right after.

Raw ClientHellos are built by tg_rawtls: a whole TLS 1.2 handshake driven by
hand, so that a request can follow a malformed hello, and the server's clear
flight (its certificate, whether it asks for a client certificate) says
which site judged it."""

import os
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import tg_certs
import tg_rawtls as raw
import tg_tls
from tg_h2 import RawH2
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, group, listener
from tg_sites import ctx_for, https_get, mint_site_certs, site_top

@pytest.fixture(scope="session")
def certs(pki, tmp_path_factory):
    return mint_site_certs(pki, tmp_path_factory.mktemp("attackcerts"))


def entry(names, cert, mode="mutual", **kw):
    e = {"names": list(names), "certificates": [cert], "mode": mode}
    if mode == "mutual":
        e["client_ca"] = kw.pop("client_ca", "pki")
    e.update(kw)
    return e


# The listener's own site is one-way (localhost, the PKI's ecdsa
# certificate); mtls.test and the api names are mutual sites, other.test a
# one-way site.
DEFAULT_SNI = [entry(["mtls.test"], "mtls"), entry(["api.test", "*.api.test"], "api"),
               entry(["other.test"], "other", mode="one-way")]


def top(pki, certs, foreign_pki=None):
    return site_top(pki, certs, foreign_pki)


def start(hserve, pki, certs, sni=None, tls_extra=None, foreign_pki=None, **lst_kw):
    lst = https_listener(**lst_kw)
    lst["tls"] = {"mode": "one-way", "certificates": ["ecdsa"],
                  "sni": DEFAULT_SNI if sni is None else sni}
    lst["tls"].update(tls_extra or {})
    tg, be = hserve(lst, **top(pki, certs, foreign_pki))
    return tg, be


def good_client_served(tg, pki):
    """A well-behaved client right after an attack: served."""
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "localhost", "localhost", path="/good")
    assert st == 200, "a good client was not served after the attack"


def same_workers(tg, before):
    after = sorted(tg.worker_pids())
    assert after == before, f"a worker died: pids {before} -> {after}"
    assert not tg.events("worker_died")
    assert tg.alive()


def forwarded(be, prefix):
    return [r.target for r in be.reqs() if r.target.startswith(prefix)]


# ---- raw ClientHellos: the server_name extension as an attacker writes it ----

def long_name(n):
    """A host name of n bytes, labels of at most 63."""
    labels, left = [], n
    while left > 0:
        take = min(63, left)
        labels.append("a" * take)
        left -= take + 1
    name = ".".join(labels)
    return (name + "a" * n)[:n]


def sni_len_lies(name, delta):
    body = raw.u8(0) + raw.vec16(name.encode())
    return raw.u16(len(body) + delta) + body


# Each case: the server_name extension's body (None: no extension), extra
# extensions, and what must happen: "refused" (an alert or a close before
# the server's flight), or the site the flight shows: "own" (the
# listener's one-way site: localhost's certificate, no certificate asked)
# or "mtls" (mtls.test's certificate and a certificate asked for).
HELLOS = {
    "list_length_too_long": (sni_len_lies("mtls.test", +1), (), "refused"),
    "list_length_too_short": (sni_len_lies("mtls.test", -1), (), "refused"),
    "list_length_zero": (raw.u16(0), (), "refused"),
    "empty_extension": (b"", (), "refused"),
    "name_length_past_the_end": (raw.vec16(raw.u8(0) + raw.u16(40) + b"mtls.test"), (),
                                 "refused"),
    "name_length_short": (raw.vec16(raw.u8(0) + raw.u16(4) + b"mtls.test"), (), "refused"),
    "zero_length_name": (raw.sni_body(b""), (), "own"),
    "name_with_nul_inside": (raw.sni_body(b"mtls.test\x00.evil"), (), "refused"),
    "name_with_nul_at_end": (raw.sni_body(b"mtls.test\x00"), (), "refused"),
    "name_with_nul_first": (raw.sni_body(b"\x00mtls.test"), (), "refused"),
    "name_of_255_bytes": (raw.sni_body(long_name(255)), (), "own"),
    "name_of_256_bytes": (raw.sni_body(long_name(256)), (), "refused"),
    "name_of_65000_bytes": (raw.sni_body(long_name(65000)), (), "refused"),
    "name_of_255_bytes_ending_in_mtls": (raw.sni_body(long_name(245) + ".mtls.test"), (),
                                         "own"),
    # OpenSSL takes a list of exactly one host_name: a second entry, or
    # any byte after the first, refuses the hello before tollgate's choice
    # (the first host_name) could differ from OpenSSL's.
    "two_names_own_first": (raw.sni_body("localhost", "mtls.test"), (), "refused"),
    "two_names_mutual_first": (raw.sni_body("mtls.test", "localhost"), (), "refused"),
    "two_names_same": (raw.sni_body("mtls.test", "mtls.test"), (), "refused"),
    "other_type_first": (raw.sni_body((1, "localhost"), (0, "mtls.test")), (), "refused"),
    "other_type_only": (raw.sni_body((1, "mtls.test")), (), "refused"),
    "type_255_first": (raw.sni_body((255, "x"), (0, "mtls.test")), (), "refused"),
    "trailing_byte_after_the_name": (raw.vec16(raw.u8(0) + raw.vec16(b"mtls.test") + b"\x00"),
                                     (), "refused"),
    "trailing_garbage_after_own_name": (raw.vec16(raw.u8(0) + raw.vec16(b"localhost") +
                                                  raw.u8(0) + raw.u16(9) + b"mtls.test"),
                                        (), "refused"),
    "duplicate_extension_own_first": (raw.sni_body("localhost"),
                                      ((0, raw.sni_body("mtls.test")),), "refused"),
    "duplicate_extension_mutual_first": (raw.sni_body("mtls.test"),
                                         ((0, raw.sni_body("localhost")),), "refused"),
    "upper_case": (raw.sni_body("MTLS.TEST"), (), "mtls"),
    "one_trailing_dot": (raw.sni_body("mtls.test."), (), "mtls"),
    "two_trailing_dots": (raw.sni_body("mtls.test.."), (), "own"),
    "leading_dot": (raw.sni_body(".mtls.test"), (), "own"),
    "high_bit_byte": (raw.sni_body(b"mtls.test\xff"), (), "own"),
    "utf8_lookalike": (raw.sni_body("mtls.te\u0455t".encode()), (), "own"),
    "space_inside": (raw.sni_body(b"mtls.test x"), (), "own"),
    "with_port": (raw.sni_body("mtls.test:443"), (), "own"),
    "ip_literal": (raw.sni_body("127.0.0.1"), (), "own"),
    "no_extension": (None, (), "own"),
}


def flight_site(t):
    """Which site the server's flight shows: "own", "mtls", "api",
    "other", or what else."""
    names = raw.san_names(t.server_cert)
    if "mtls.test" in names:
        return "mtls"
    if "api.test" in names:
        return "api"
    if "other.test" in names:
        return "other"
    if "localhost" in names:
        return "own"
    return f"unknown certificate {names}"


@pytest.mark.parametrize("case", sorted(HELLOS))
def test_malformed_server_name(hserve, pki, certs, case):
    """A hand-made ClientHello with this server_name extension: either the
    handshake is refused, or the flight is that of the expected site; a
    flight with the mutual site's certificate always asks for a client
    certificate. A client that completes a handshake on the one-way site
    then gets 421 for the mutual host, and the backend sees none of it. The
    worker lives on and serves a good client."""
    body, extra, want = HELLOS[case]
    tg, be = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    with raw.Tls12(tg.addr(), sni=body, extra=extra) as t:
        done = t.handshake()
        if want == "refused":
            assert not done and t.server_cert is None, \
                f"{case}: the server went on with its flight ({t.server_cert and flight_site(t)})"
        else:
            site = flight_site(t) if t.server_cert is not None else f"refused ({t.alert})"
            assert site == want, f"{case}: judged by {site}, expected {want}"
            if site == "mtls":
                assert t.cert_request, "the mutual site's flight asks for no certificate"
                assert not done, "the mutual site let a client without a certificate in"
            else:
                assert not t.cert_request
                assert done, t.alert
                assert t.http_status("mtls.test", path="/sneak") == 421
    if want == "own":
        with raw.Tls12(tg.addr(), sni=body, extra=extra) as t:
            assert t.handshake()
            assert t.http_status("localhost", path="/own") == 200
    assert not forwarded(be, "/sneak")
    good_client_served(tg, pki)
    same_workers(tg, before)


def test_two_names_refused_even_with_a_certificate(hserve, pki, certs):
    """Two host_name entries are refused whichever comes first, even from a
    client that would pass the mutual site: no list of names lets the
    client pick one site for tollgate and another for OpenSSL."""
    tg, be = start(hserve, pki, certs)
    for names in (("mtls.test", "localhost"), ("localhost", "mtls.test")):
        with raw.Tls12(tg.addr(), sni=raw.sni_body(*names), cert=pki.client("alice")) as t:
            assert not t.handshake() and t.server_cert is None, names
            assert t.alert == "decode_error", t.alert
    # the twin: one name, the same client, served
    with raw.Tls12(tg.addr(), sni=raw.sni_body("mtls.test"), cert=pki.client("alice")) as t:
        assert t.handshake(), t.alert
        assert t.http_status("mtls.test", path="/mine") == 200
    assert [r.target for r in be.reqs()] == ["/mine"]


def test_raw_client_twin(hserve, pki, certs):
    """The hand-made client itself: a plain hello for each site gives that
    site's flight, alice passes the mutual one, the one-way site serves."""
    tg, be = start(hserve, pki, certs)
    for sni, site, mutual in (("localhost", "own", False), ("mtls.test", "mtls", True),
                              ("a.api.test", "api", True), ("other.test", "other", False)):
        with raw.Tls12(tg.addr(), sni=raw.sni_body(sni), cert=pki.client("alice")) as t:
            assert t.handshake(), (sni, t.alert)
            assert flight_site(t) == site and t.cert_request == mutual, sni
            assert t.server_name_acked
            assert t.http_status(sni, path=f"/twin-{sni}") == 200, sni
    assert len(forwarded(be, "/twin-")) == 4


def test_many_malformed_hellos_in_a_row(hserve, pki, certs):
    """Every malformed hello of HELLOS, three times over on one worker, with
    a good client in between: no crash, nothing forwarded."""
    tg, be = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    deadline = time.monotonic() + T(60)
    for _ in range(3):
        for case in sorted(HELLOS):
            body, extra, _ = HELLOS[case]
            with raw.Tls12(tg.addr(), sni=body, extra=extra) as t:
                if t.handshake():
                    t.http_status("mtls.test", path="/sneak")
        good_client_served(tg, pki)
        assert time.monotonic() < deadline
    assert not forwarded(be, "/sneak")
    same_workers(tg, before)
    # every access record of those hellos is one JSON object (tg.access parses them)
    assert len(tg.access()) >= 3 * len(HELLOS)


def test_tls13_malformed_server_name(hserve, pki, certs):
    """The same hellos as TLS 1.3: refused ones are refused, the others get
    a ServerHello (their site is judged as in TLS 1.2), nothing crashes."""
    tg, _ = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    for case in sorted(HELLOS):
        body, extra, want = HELLOS[case]
        if extra:
            continue  # hello13_answer has no extra extensions
        got = raw.hello13_answer(tg.addr(), body if body is not None else None)
        if want == "refused":
            assert got != "server_hello", case
        else:
            assert got == "server_hello", (case, got)
    good_client_served(tg, pki)
    same_workers(tg, before)


# ---- HelloRetryRequest: the second ClientHello names another site ----

@pytest.mark.parametrize("sni1,sni2,want", [
    ("localhost", "localhost", "server_hello"),     # twin: the same name again
    ("mtls.test", "mtls.test", "server_hello"),     # twin on the mutual site
    ("mtls.test", "MTLS.TEST.", "server_hello"),    # the same site, spelled otherwise
    ("a.api.test", "b.api.test", "server_hello"),   # the same (wildcard) site
    (None, "localhost", "server_hello"),            # no SNI, then the listener's own name
    ("localhost", "mtls.test", "refused"),
    ("mtls.test", "localhost", "refused"),
    ("mtls.test", None, "refused"),
    (None, "mtls.test", "refused"),
    ("other.test", "mtls.test", "refused"),         # one-way entry, then mutual
    ("mtls.test", "api.test", "refused"),           # one mutual site, then another
    ("nobody.test", "a.api.test", "refused"),
])
def test_hrr_second_hello_names_another_site(hserve, pki, certs, sni1, sni2, want):
    """A TLS 1.3 hello without a key share gets a HelloRetryRequest; the
    second hello names sni2. Another site than the first hello's is refused
    before any ServerHello; the same site goes on."""
    tg, _ = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    first, second = raw.hello13_probe(tg.addr(), sni1, sni2)
    assert first == "hrr", first
    if want == "refused":
        assert second != "server_hello", f"{sni1} -> {sni2}: the second hello was answered"
        assert second in ("alert:illegal_parameter", "eof"), second
    else:
        assert second == "server_hello", f"{sni1} -> {sni2}: {second}"
    good_client_served(tg, pki)
    same_workers(tg, before)


@pytest.mark.parametrize("case,body,want", [
    ("own_name", raw.sni_body("localhost"), "own"),
    ("entry_name", raw.sni_body("mtls.test"), "mtls"),
    ("unknown_name", raw.sni_body("nobody.test"), "refused"),
    ("zero_length_name", raw.sni_body(b""), "refused"),
    ("two_trailing_dots", raw.sni_body("mtls.test.."), "refused"),
    ("no_extension", None, "refused"),
])
def test_strict_sni_with_odd_names(hserve, pki, certs, case, body, want):
    """strict_sni: a server_name tollgate cannot read as a name (empty),
    or none at all, is refused as an unknown one (unknown_sni)."""
    tg, _ = start(hserve, pki, certs, tls_extra={"strict_sni": True})
    with raw.Tls12(tg.addr(), sni=body) as t:
        t.handshake()
        if want == "refused":
            assert t.server_cert is None and t.alert == "unrecognized_name", (case, t.alert)
        else:
            assert t.server_cert is not None and flight_site(t) == want, (case, t.alert)
    if want == "refused":
        tg.wait_event("tls_handshake_failed", reason="unknown_sni")


def test_hrr_strict_sni_second_hello_unknown(hserve, pki, certs):
    """With strict_sni, a known name then an unknown one after the
    HelloRetryRequest is refused too (unknown_sni)."""
    tg, _ = start(hserve, pki, certs, tls_extra={"strict_sni": True})
    assert raw.hello13_probe(tg.addr(), "localhost", "nobody.test")[1] != "server_hello"
    assert raw.hello13_probe(tg.addr(), "localhost", "localhost")[1] == "server_hello"
    tg.wait_event("tls_handshake_failed", reason="unknown_sni")


def s_client_hrr(addr, pki, sni, cert=None, request=None, extra=()):
    """openssl s_client offering a key share for P-521 only (tollgate's
    groups are X25519:P-256:P-384: a HelloRetryRequest), TLS 1.3; returns
    (exit code, stdout, stderr)."""
    cmd = ["openssl", "s_client", "-connect", f"{addr[0]}:{addr[1]}", "-servername", sni,
           "-CAfile", pki.path("root.crt"), "-tls1_3", "-groups", "P-521:X25519", "-msg",
           "-ign_eof", *extra]
    if cert is not None:
        cmd += ["-cert", cert[0], "-key", cert[1], "-cert_chain", cert[0]]
    req = request or f"GET /hrr HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
    p = subprocess.run(cmd, input=req.encode(), capture_output=True, timeout=T(20))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def test_hrr_by_openssl_is_judged_by_the_right_site(hserve, pki, certs):
    """A real client forced into a HelloRetryRequest (s_client -groups
    P-521:X25519): the mutual site still asks for and verifies alice's
    certificate (X-Client-Verify: SUCCESS), refuses a client without one,
    and the one-way site serves anybody."""
    tg, be = start(hserve, pki, certs)
    rc, out, err = s_client_hrr(tg.addr(), pki, "mtls.test", cert=pki.client("alice"))
    # A HelloRetryRequest happened: s_client sent two ClientHellos.
    assert out.count(", ClientHello") == 2, out[-3000:]
    assert "HTTP/1.1 200" in out, (rc, out[-3000:], err[-2000:])
    rc, out, err = s_client_hrr(tg.addr(), pki, "mtls.test")
    assert "HTTP/1.1 200" not in out
    rc, out, err = s_client_hrr(tg.addr(), pki, "localhost")
    assert "HTTP/1.1 200" in out, (rc, out[-3000:], err[-2000:])
    reqs = [r for r in be.reqs() if r.target == "/hrr"]
    assert len(reqs) == 2
    assert reqs[0].get("X-Client-Verify") == "SUCCESS"
    assert "CN=alice" in reqs[0].get("X-Client-Subject")
    tg.wait_event("tls_handshake_failed", reason="no_client_cert")


# ---- sessions carried to another site ----

def two_partner_sites():
    """mtls.test lets alice in, partner.test (same CA) only bob."""
    return [entry(["mtls.test"], "mtls", allow=[{"subject_cn": "alice"}]),
            entry(["partner.test"], "partner", allow=[{"subject_cn": "bob"}])]


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_of_one_mutual_site_on_another_with_the_same_ca(hserve, pki, certs, version):
    """alice's session of mtls.test (whose allow-list names her), offered to
    partner.test (the same client CA, an allow-list without her): not
    resumed, and the full handshake refuses her (not_allowed). The twins:
    her session resumes on mtls.test, bob gets into partner.test."""
    tg, be = start(hserve, pki, certs, sni=two_partner_sites())
    alice = ctx_for(pki, pki.client("alice"), version=version, verify=False)
    st, _, sess = https_get(tg.addr(), alice, "mtls.test", "mtls.test", path="/a1")
    assert st == 200 and sess is not None
    st, reused, _ = https_get(tg.addr(), alice, "mtls.test", "mtls.test", path="/a2",
                              session=sess)
    assert st == 200 and reused, "the twin: alice's session resumes on its own site"
    st, reused, _ = https_get(tg.addr(), alice, "partner.test", "partner.test", path="/steal",
                              session=sess)
    assert not reused, "a session of mtls.test resumed under partner.test"
    assert st is None, "partner.test let alice in"
    tg.wait_event("tls_handshake_failed", reason="not_allowed", sni="partner.test")
    bob = ctx_for(pki, pki.client("bob"), version=version, verify=False)
    assert https_get(tg.addr(), bob, "partner.test", "partner.test", path="/b")[0] == 200
    assert not forwarded(be, "/steal")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_stays_in_its_site_even_between_identical_sites(hserve, pki, certs, version):
    """Two mutual sites with the very same settings (CA, depth, no
    allow-list): alice's session of one is not resumed by the other; she
    gets a full handshake there (and passes it). Only the site in the
    session id context tells them apart."""
    sni = [entry(["mtls.test"], "mtls"), entry(["partner.test"], "partner")]
    tg, be = start(hserve, pki, certs, sni=sni)
    alice = ctx_for(pki, pki.client("alice"), version=version, verify=False)
    st, _, sess = https_get(tg.addr(), alice, "mtls.test", "mtls.test")
    assert st == 200
    st, reused, _ = https_get(tg.addr(), alice, "mtls.test", "mtls.test", session=sess)
    assert st == 200 and reused, "the twin: the session resumes on its own site"
    st, reused, _ = https_get(tg.addr(), alice, "partner.test", "partner.test", session=sess)
    assert st == 200 and not reused, "a session of mtls.test resumed under partner.test"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_mutual_session_on_the_one_way_site_carries_no_identity(hserve, pki, certs, version):
    """alice's session of the mutual site offered with the one-way site's
    SNI: not resumed (a one-way handshake), and the backend gets no trace
    of alice on that connection."""
    tg, be = start(hserve, pki, certs)
    alice = ctx_for(pki, pki.client("alice"), version=version, verify=False)
    st, _, sess = https_get(tg.addr(), alice, "mtls.test", "mtls.test", path="/a")
    assert st == 200
    st, reused, _ = https_get(tg.addr(), alice, "localhost", "localhost", path="/own",
                              session=sess)
    assert st == 200 and not reused
    req = [r for r in be.reqs() if r.target == "/own"][0]
    assert req.get("X-Client-Subject") is None
    assert req.get("X-Client-Verify") in (None, "NONE")
    # ... and a request for the mutual host on that connection is refused
    st, reused, _ = https_get(tg.addr(), alice, "localhost", "mtls.test", path="/sneak",
                              session=sess)
    assert st == 421 and not reused
    assert not forwarded(be, "/sneak")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_one_way_session_with_a_certificate_gets_a_full_mutual_handshake(hserve, pki, certs,
                                                                         version):
    """A session of the one-way site offered to the mutual site by a client
    that has a certificate: not resumed, the full handshake verifies alice
    (X-Client-Verify: SUCCESS), so the mutual site never serves on a
    session it did not judge."""
    tg, be = start(hserve, pki, certs)
    alice = ctx_for(pki, pki.client("alice"), version=version, verify=False)
    st, _, sess = https_get(tg.addr(), alice, "localhost", "localhost")
    assert st == 200
    st, reused, _ = https_get(tg.addr(), alice, "mtls.test", "mtls.test", path="/m",
                              session=sess)
    assert st == 200 and not reused
    assert [r for r in be.reqs() if r.target == "/m"][0].get("X-Client-Verify") == "SUCCESS"


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_optional_site_session_without_certificate_on_a_required_site(hserve, pki, certs,
                                                                      version):
    """An anonymous session of a client_auth optional site (same CA) offered
    to the required site: not resumed, refused without a certificate."""
    sni = DEFAULT_SNI + [entry(["opt.test"], "opt", client_auth="optional")]
    tg, be = start(hserve, pki, certs, sni=sni)
    anon = ctx_for(pki, version=version, verify=False)
    st, _, sess = https_get(tg.addr(), anon, "opt.test", "opt.test", path="/o")
    assert st == 200 and sess is not None
    assert [r for r in be.reqs() if r.target == "/o"][0].get("X-Client-Verify") == "NONE"
    st, reused, _ = https_get(tg.addr(), anon, "opt.test", "opt.test", path="/o2", session=sess)
    assert st == 200 and reused, "the twin: the session resumes on its own site"
    st, reused, _ = https_get(tg.addr(), anon, "mtls.test", "mtls.test", path="/steal",
                              session=sess)
    assert st is None and not reused
    assert not forwarded(be, "/steal")


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_resumes_within_a_wildcard_site_and_host_follows_the_sni(hserve, pki, certs,
                                                                         version):
    """alice's session made for a.api.test, offered with SNI b.api.test
    (the same wildcard site): it is not resumed for another name (RFC 6066
    §3; a full handshake judges alice again), and the Host the connection
    is for is the SNI this client sent: b.api.test is served, a.api.test
    is not another name for it."""
    tg, be = start(hserve, pki, certs)
    alice = ctx_for(pki, pki.client("alice"), version=version, verify=False)
    st, _, sess = https_get(tg.addr(), alice, "a.api.test", "a.api.test", path="/a")
    assert st == 200
    st, reused, _ = https_get(tg.addr(), alice, "b.api.test", "b.api.test", path="/b",
                              session=sess)
    assert st == 200, f"resumed={reused}: b.api.test refused on a connection for b.api.test"
    assert not reused, "a session made for a.api.test resumed for b.api.test"
    st, reused, _ = https_get(tg.addr(), alice, "a.api.test", "a.api.test", path="/a2",
                              session=sess)
    assert st == 200 and reused, "the twin: the session resumes for its own name"
    st, reused, _ = https_get(tg.addr(), alice, "b.api.test", "a.api.test", path="/cross",
                              session=sess)
    assert st == 421, f"resumed={reused}: the Host named another name than the SNI"
    assert not forwarded(be, "/cross")


def test_no_early_data_is_offered(hserve, pki, certs, tmp_path):
    """TLS 1.3 tickets of every site allow no early data (0-RTT could
    carry a request before the site's handshake judged anything)."""
    tg, _ = start(hserve, pki, certs)
    for sni, cert in (("localhost", None), ("mtls.test", pki.client("alice"))):
        sess = tmp_path / f"{sni}.sess"
        cmd = ["openssl", "s_client", "-connect", "%s:%d" % tg.addr(), "-servername", sni,
               "-tls1_3", "-sess_out", str(sess), "-ign_eof"]
        if cert is not None:
            cmd += ["-cert", cert[0], "-key", cert[1], "-cert_chain", cert[0]]
        req = f"GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n"
        p = subprocess.run(cmd, input=req.encode(), capture_output=True, timeout=T(20))
        assert b"HTTP/1.1 200" in p.stdout, p.stdout[-2000:]
        text = subprocess.run(["openssl", "sess_id", "-in", str(sess), "-noout", "-text"],
                              capture_output=True, text=True, timeout=T(10)).stdout
        assert "Max Early Data: 0" in text, text


# ---- Host tricks on a connection judged by the one-way site ----

def head(host_lines, target="/sneak", method="GET", version="HTTP/1.1", extra=""):
    return f"{method} {target} {version}\r\n{host_lines}{extra}Connection: close\r\n\r\n"


# A head sent on a connection whose handshake was the one-way site's
# (SNI localhost), aiming at a mutual site; the statuses it may get.
# Never 200: the backend must not see it.
H1_TRICKS = {
    "exact": (head("Host: mtls.test\r\n"), {421}),
    "upper_case": (head("Host: MTLS.TEST\r\n"), {421}),
    "trailing_dot_and_port": (head("Host: mtls.test.:443\r\n"), {421}),
    "two_trailing_dots": (head("Host: mtls.test..\r\n"), {400, 421}),
    "port": (head("Host: mtls.test:8443\r\n"), {421}),
    "empty_port": (head("Host: mtls.test:\r\n"), {400}),
    "two_ports": (head("Host: mtls.test:443:443\r\n"), {400}),
    "userinfo": (head("Host: x@mtls.test\r\n"), {400}),
    "userinfo_own_name": (head("Host: localhost@mtls.test\r\n"), {400}),
    "blanks_around": (head("Host:    mtls.test   \r\n"), {421}),
    "tabs_around": (head("Host:\tmtls.test\t\r\n"), {421}),
    "blank_inside": (head("Host: mtls.test localhost\r\n"), {400}),
    "percent_dot": (head("Host: mtls%2etest\r\n"), {400}),
    "percent_first": (head("Host: %6dtls.test\r\n"), {400}),
    "bracketed_name": (head("Host: [mtls.test]\r\n"), {400}),
    "backslash": (head("Host: mtls.test\\\r\n"), {400}),
    "ipv6_then_name": (head("Host: [::1]mtls.test\r\n"), {400}),
    "absolute_form_other_authority": (head("Host: localhost\r\n",
                                           target="https://mtls.test/sneak"), {400}),
    "absolute_form_same_authority": (head("Host: mtls.test\r\n",
                                          target="https://mtls.test/sneak"), {421}),
    "absolute_form_http_scheme": (head("Host: mtls.test\r\n", target="http://mtls.test/sneak"),
                                  {421}),
    "absolute_form_userinfo": (head("Host: mtls.test\r\n",
                                    target="https://localhost@mtls.test/sneak"), {400}),
    "absolute_form_no_host_http10": (head("", target="https://mtls.test/sneak",
                                          version="HTTP/1.0"), {400}),
    "duplicate_host_own_first": (head("Host: localhost\r\nHost: mtls.test\r\n"), {400}),
    "duplicate_host_mutual_first": (head("Host: mtls.test\r\nHost: localhost\r\n"), {400}),
    "duplicate_host_other_case": (head("Host: localhost\r\nhOST: mtls.test\r\n"), {400}),
    "obs_fold": (head("Host: localhost\r\n mtls.test\r\n"), {400}),
    "http10_host": (head("Host: mtls.test\r\n", version="HTTP/1.0"), {421}),
    "options_asterisk": (head("Host: mtls.test\r\n", target="*", method="OPTIONS"), {421}),
    "connect": (head("Host: mtls.test:443\r\n", target="mtls.test:443", method="CONNECT"),
                {405, 421}),
    "websocket": (head("Host: mtls.test\r\n", extra="Upgrade: websocket\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n"), {421}),
    "wildcard_site_host": (head("Host: x.api.test\r\n"), {421}),
    "wildcard_site_exact_name": (head("Host: API.TEST.\r\n"), {421}),
    "literal_wildcard_host": (head("Host: *.api.test\r\n"), {421}),
}


@pytest.mark.parametrize("case", sorted(H1_TRICKS))
def test_host_tricks_on_the_one_way_site(hserve, pki, certs, case):
    """HTTP/1.1 on a connection that passed the one-way site's handshake,
    with a Host (or target) aiming at a mutual site: refused (400, 421,
    or 405 for CONNECT), never forwarded."""
    text, want = H1_TRICKS[case]
    tg, be = start(hserve, pki, certs)
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "localhost", None,
                         head=text.replace("/sneak", f"/sneak-{case}"))
    assert st in want, f"{case}: {st}"
    assert not forwarded(be, "/sneak") and not [r for r in be.reqs() if r.method == "OPTIONS"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST.", "localhost:443", "127.0.0.1",
                                  "[::1]", "nobody.test"])
def test_host_twins_on_the_one_way_site(hserve, pki, certs, host):
    """The twins: Hosts of the listener's own site (its name in any
    spelling, an address, a name of no entry) are served on it."""
    tg, be = start(hserve, pki, certs)
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "localhost", host, path="/own")
    assert st == 200
    assert be.reqs()[0].get("Host") == host


def test_pipelined_requests_are_judged_one_by_one(hserve, pki, certs):
    """Keep-alive on the one-way site: the connection's own request is
    served, the mutual host's request pipelined after it gets 421 (and the
    connection may end there); the one after it is never forwarded under
    the mutual host either."""
    tg, be = start(hserve, pki, certs)
    with Client(tg.addr(), pki, sni="localhost") as c:
        c.send(b"GET /own1 HTTP/1.1\r\nHost: localhost\r\n\r\n"
               b"GET /sneak1 HTTP/1.1\r\nHost: mtls.test\r\n\r\n"
               b"GET /sneak2 HTTP/1.1\r\nHost: mtls.test\r\n\r\n")
        assert c.response().status == 200
        assert c.response().status == 421
        try:
            third = c.response().status
        except (EOFError, OSError):
            third = None
        assert third in (421, None)
    assert [r.target for r in be.reqs()] == ["/own1"]


def test_forwarded_host_headers_do_not_name_the_site(hserve, pki, certs):
    """X-Forwarded-Host and Forwarded: host= naming the mutual site are the
    client's words: dropped, the request is the one-way site's own."""
    tg, be = start(hserve, pki, certs)
    st, _, _ = https_get(tg.addr(), ctx_for(pki), "localhost", None, head=head(
        "Host: localhost\r\n", target="/own",
        extra="X-Forwarded-Host: mtls.test\r\nForwarded: host=mtls.test\r\n"))
    assert st == 200
    req = be.reqs()[0]
    assert req.get("Host") == "localhost"
    assert req.all("X-Forwarded-Host") == [] and req.all("Forwarded") == []


H2_TRICKS = {
    "authority": ([(":authority", "mtls.test")], {421}),
    "authority_upper_dot_port": ([(":authority", "MTLS.TEST.:443")], {421}),
    "authority_two_dots": ([(":authority", "mtls.test..")], {400, 421}),
    "authority_own_host_field_mutual": ([(":authority", "localhost"), ("host", "mtls.test")],
                                        {400}),
    "authority_mutual_host_field_own": ([(":authority", "mtls.test"), ("host", "localhost")],
                                        {400, 421}),
    "host_field_only": ([("host", "mtls.test")], {421}),
    "host_field_only_upper": ([("host", "MTLS.Test.")], {421}),
    "two_host_fields": ([("host", "localhost"), ("host", "mtls.test")], {400}),
    "empty_authority_host_field": ([(":authority", ""), ("host", "mtls.test")], {400, 421}),
    "authority_userinfo": ([(":authority", "x@mtls.test")], {400}),
    "authority_percent": ([(":authority", "mtls%2etest")], {400}),
    "authority_wildcard_site": ([(":authority", "b.api.test")], {421}),
}


def h2_status(c, sid, headers, path):
    """Sends one request on a RawH2 connection; its status, or what
    happened instead (("rst", code), ("goaway", code))."""
    hdrs = [(":method", "GET"), (":scheme", "https"), (":path", path)] + headers
    c.send(c.headers_frame(sid, hdrs))
    return c.status_of(sid, T(10))


@pytest.mark.parametrize("case", sorted(H2_TRICKS))
def test_h2_authority_tricks_on_the_one_way_site(hserve, pki, certs, case):
    """HTTP/2 on the one-way site's connection, a stream aiming at the mutual
    site by :authority or host: refused per stream (400/421, or the stream
    reset), never forwarded; the connection's own stream after it is
    served."""
    headers, want = H2_TRICKS[case]
    tg, be = start(hserve, pki, certs)
    with RawH2(tg.addr(), pki, sni="localhost") as c:
        st = h2_status(c, 1, headers, f"/sneak-{case}")
        assert st in want or (isinstance(st, tuple) and st[0] == "rst"), f"{case}: {st}"
        if not isinstance(st, tuple):
            assert h2_status(c, 3, [(":authority", "localhost")], "/own") == 200
    assert not forwarded(be, "/sneak")


def test_h2_host_field_twin(hserve, pki, certs):
    """The twins: a stream with only a host field naming the connection's
    own site is served, as is one whose host field repeats :authority."""
    tg, be = start(hserve, pki, certs)
    with RawH2(tg.addr(), pki, sni="localhost") as c:
        assert h2_status(c, 1, [("host", "localhost")], "/own1") == 200
        assert h2_status(c, 3, [(":authority", "localhost"), ("host", "localhost")],
                         "/own2") == 200
    assert sorted(forwarded(be, "/own")) == ["/own1", "/own2"]


@pytest.mark.parametrize("path,authority,want", [
    ("https://mtls.test/sneak", "localhost", {400}),
    ("https://mtls.test/sneak", "mtls.test", {400, 421}),
])
def test_h2_absolute_path(hserve, pki, certs, path, authority, want):
    """An absolute-form :path naming the mutual host: refused."""
    tg, be = start(hserve, pki, certs)
    with RawH2(tg.addr(), pki, sni="localhost") as c:
        st = h2_status(c, 1, [(":authority", authority)], path)
        assert st in want or (isinstance(st, tuple) and st[0] == "rst"), st
    assert not forwarded(be, "/sneak") and not forwarded(be, "https:")


def test_h2_connect_to_the_mutual_host(hserve, pki, certs):
    """CONNECT mtls.test:443 over HTTP/2 from the one-way site: 405."""
    tg, be = start(hserve, pki, certs)
    with RawH2(tg.addr(), pki, sni="localhost") as c:
        c.send(c.headers_frame(1, [(":method", "CONNECT"), (":authority", "mtls.test:443")],
                               end_stream=False))
        st = c.status_of(1, T(10))
        assert st in (405, 421) or (isinstance(st, tuple) and st[0] == "rst"), st
    assert not be.reqs()


# ---- a mutual site's connection aiming at another site ----

@pytest.mark.parametrize("host,want", [
    ("mtls.test", 200), ("MTLS.test.:443", 200),
    ("localhost", 421), ("other.test", 421), ("api.test", 421), ("a.api.test", 421),
    ("127.0.0.1", 421), ("nobody.test", 421), ("[::1]", 421), ("", 421),
])
def test_mutual_connection_serves_only_its_own_host(hserve, pki, certs, host, want):
    """alice passed mtls.test's handshake: only mtls.test is served on that
    connection, not the one-way names, another mutual site (same CA), an
    address or an unknown name."""
    tg, be = start(hserve, pki, certs)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    st, _, _ = https_get(tg.addr(), alice, "mtls.test", host, path="/p")
    assert st == want, st
    assert len(be.reqs()) == (1 if want == 200 else 0)


def test_mutual_connection_h2_streams_for_other_sites(hserve, pki, certs):
    """HTTP/2 on alice's mtls.test connection: streams for other sites get
    421 one by one, hers are served."""
    tg, be = start(hserve, pki, certs)
    with RawH2(tg.addr(), pki, sni="mtls.test", cert=pki.client("alice")) as c:
        assert h2_status(c, 1, [(":authority", "mtls.test")], "/mine1") == 200
        assert h2_status(c, 3, [(":authority", "api.test")], "/sneak1") == 421
        assert h2_status(c, 5, [(":authority", "localhost")], "/sneak2") == 421
        assert h2_status(c, 7, [("host", "other.test")], "/sneak3") == 421
        assert h2_status(c, 9, [(":authority", "mtls.test")], "/mine2") == 200
    assert sorted(r.target for r in be.reqs()) == ["/mine1", "/mine2"]


# ---- wildcard sites ----

@pytest.mark.parametrize("sni,host,want", [
    ("a.api.test", "a.api.test", 200),
    ("a.api.test", "A.API.TEST.:443", 200),
    ("a.api.test", "b.api.test", 421),      # the same site, another name: Host must be the SNI
    ("a.api.test", "api.test", 421),
    ("api.test", "a.api.test", 421),
    ("a.api.test", "x.a.api.test", 421),    # not in the site: the listener's own
    ("a.api.test", "localhost", 421),
])
def test_mutual_wildcard_site_host_must_be_the_sni(hserve, pki, certs, sni, host, want):
    """On the mutual *.api.test site the Host is the very SNI name, not any
    other name of the site."""
    tg, be = start(hserve, pki, certs)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    st, _, _ = https_get(tg.addr(), alice, sni, host, path="/w")
    assert st == want, st
    assert len(be.reqs()) == (1 if want == 200 else 0)


@pytest.mark.parametrize("sni,mutual", [
    ("*.api.test", True),       # a literal star: the wildcard site, a certificate asked for
    (".api.test", False),       # no first label: the listener's own
    ("a..api.test", True),      # ends in .api.test: the wildcard site, at any depth
    ("x.a.api.test", True),     # two labels: still the wildcard site (as rules read *.)
    ("api.test.", True),
    ("A.Api.Test", True),
])
def test_wildcard_sni_spellings(hserve, pki, certs, sni, mutual):
    """Odd SNI spellings around *.api.test: the flight says which site
    judges each (a certificate asked for or not); a one-way judged
    connection then gets 421 for every api name."""
    tg, be = start(hserve, pki, certs)
    with raw.Tls12(tg.addr(), sni=raw.sni_body(sni)) as t:
        done = t.handshake()
        assert t.server_cert is not None, t.alert
        assert t.cert_request == mutual, sni
        if mutual:
            assert not done
        else:
            assert done, t.alert
            assert t.http_status("api.test", path="/sneak") == 421
    if not mutual:
        for host in ("a.api.test", "API.TEST", "b.api.test."):
            with raw.Tls12(tg.addr(), sni=raw.sni_body(sni)) as t:
                assert t.handshake()
                assert t.http_status(host, path="/sneak") in (400, 421), host
    assert not forwarded(be, "/sneak")


def test_rule_wildcard_deeper_than_the_site_wildcard(tollgate, hbackend, pki, certs):
    """One listener: the listener's own site is one-way, *.api.test is a
    mutual site, and a rule sends *.api.test to the api backend. A client
    that skips the mutual handshake (SNI localhost, or x.a.api.test itself,
    which no entry covers) must not reach the api backend with an api
    host. The twin: a.api.test with alice's certificate reaches it."""
    web, api = hbackend(), hbackend()
    lst = https_listener(rules=[{"host": "*.api.test", "target_group": "api"}])
    lst["tls"] = {"mode": "one-way", "certificates": ["ecdsa"],
                  "sni": [entry(["*.api.test"], "api")]}
    cfg = top(pki, certs)
    cfg["target_groups"] = {"g": group(web.address), "api": group(api.address)}
    cfg["listeners"] = [lst]
    tg = tollgate(cfg)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    assert https_get(tg.addr(), alice, "a.api.test", "a.api.test", path="/twin")[0] == 200
    assert [r.target for r in api.reqs()] == ["/twin"]
    anon = ctx_for(pki, verify=False)
    for sni in ("localhost", "x.a.api.test"):
        st, _, _ = https_get(tg.addr(), anon, sni, "x.a.api.test", path=f"/sneak-{sni}")
        assert not forwarded(api, "/sneak"), \
            f"SNI {sni}: the api backend served x.a.api.test without a certificate ({st})"


# ---- a client_auth optional site with on_reject: page, beside others ----

def optional_sites():
    return DEFAULT_SNI + [entry(["opt.test"], "opt", client_auth="optional",
                                allow=[{"subject_cn": "alice"}])]


@pytest.mark.parametrize("who,sni,host,want", [
    ("anon", "opt.test", "opt.test", {496}),
    ("anon", "opt.test", "mtls.test", {421, 496}),
    ("anon", "opt.test", "localhost", {421, 496}),
    ("anon", "opt.test", "OPT.TEST.:443", {496}),
    ("anon", "localhost", "opt.test", {421}),
    ("anon", "other.test", "opt.test", {421}),
    ("alice", "opt.test", "opt.test", {200}),
    ("alice", "opt.test", "mtls.test", {421}),
    ("alice", "opt.test", "localhost", {421}),
    ("bob", "opt.test", "opt.test", {403}),          # verified, not on opt.test's list
    ("bob", "opt.test", "mtls.test", {403, 421}),
    ("foreign", "opt.test", "opt.test", {495}),
    ("foreign", "opt.test", "mtls.test", {421, 495}),
])
def test_optional_site_with_reject_page_across_sites(hserve, pki, foreign_pki, certs, who, sni,
                                                     host, want):
    """A one-way listener with a mutual required site and a mutual optional
    site (on_reject: page, allow-list alice): a client the optional site did
    not verify gets its page (or 421) whatever Host it names, never the
    backend; alice gets only opt.test's host."""
    tg, be = start(hserve, pki, certs, sni=optional_sites(), foreign_pki=foreign_pki,
                   tls_extra={"on_reject": "page"})
    cert = {"anon": None, "alice": pki.client("alice"), "bob": pki.client("bob"),
            "foreign": foreign_pki.client("alice")}[who]
    st, _, _ = https_get(tg.addr(), ctx_for(pki, cert, verify=False), sni, host, path="/x")
    assert st in want, st
    assert len(be.reqs()) == (1 if want == {200} else 0)
    if want == {200}:
        assert be.reqs()[0].get("X-Client-Verify") == "SUCCESS"


def test_optional_site_h2_streams(hserve, pki, certs):
    """HTTP/2 on an anonymous opt.test connection: every stream gets the
    page (496) or 421, whichever site it names; nothing is forwarded."""
    tg, be = start(hserve, pki, certs, sni=optional_sites(), tls_extra={"on_reject": "page"})
    with RawH2(tg.addr(), pki, sni="opt.test") as c:
        sid = 1
        for authority in ("opt.test", "mtls.test", "localhost", "a.api.test", "opt.test"):
            st = h2_status(c, sid, [(":authority", authority)], f"/x{sid}")
            assert st in (421, 496), (authority, st)
            sid += 2
    assert not be.reqs()


# ---- many sites ----

@pytest.mark.slow
def test_two_hundred_sites(hserve, pki, certs):
    """200 sni entries (even ones one-way, odd ones mutual): tollgate starts,
    each name is judged by its own entry, a cross-site Host gets 421, and
    handshakes for the last entry take no longer than for the first."""
    n = 200
    sni = [entry([f"s{i}.test", f"*.w{i}.test"], "other",
                 mode="one-way" if i % 2 == 0 else "mutual") for i in range(n)]
    t0 = time.monotonic()
    tg, be = start(hserve, pki, certs, sni=sni)
    assert time.monotonic() - t0 < T(30)
    for name, mutual in (("s0.test", False), ("s1.test", True), ("x.w198.test", False),
                         ("x.w199.test", True), ("s199.test", True), ("nobody.test", False)):
        with raw.Tls12(tg.addr(), sni=raw.sni_body(name)) as t:
            t.handshake()
            assert t.server_cert is not None and t.cert_request == mutual, name
    anon = ctx_for(pki, verify=False)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    assert https_get(tg.addr(), anon, "s198.test", "s198.test", path="/ok")[0] == 200
    assert https_get(tg.addr(), anon, "s198.test", "s199.test", path="/sneak")[0] == 421
    assert https_get(tg.addr(), anon, "s198.test", "s196.test", path="/sneak")[0] == 421
    assert https_get(tg.addr(), alice, "s199.test", "s199.test", path="/ok")[0] == 200
    assert https_get(tg.addr(), anon, "s199.test", "s199.test", path="/sneak")[0] is None
    assert not forwarded(be, "/sneak")

    def timed(name, count=40):
        t0 = time.monotonic()
        for _ in range(count):
            with raw.Tls12(tg.addr(), sni=raw.sni_body(name)) as t:
                assert t.handshake()
        return time.monotonic() - t0
    first, last, unknown = timed("s0.test"), timed("s198.test"), timed("nobody.test")
    assert last < T(10) and unknown < T(10)
    assert last < 3 * first + 0.5 and unknown < 3 * first + 0.5, (first, last, unknown)


# ---- a client certificate message over 64 KiB ----

@pytest.fixture(scope="session")
def padded_chains(pki, tmp_path_factory):
    """alice's certificate and chain followed by unrelated self-signed
    certificates of about 10 kB each: one file whose certificate message
    is under 64 KiB, one between 64 KiB and OpenSSL's own default limit
    (100 KiB). The padding is not needed to verify alice."""
    d = tmp_path_factory.mktemp("padded")
    pads = []
    for i in range(8):
        crt, _ = tg_certs.make_cert(d, f"pad{i}", sans=[f"p{i}-{k:03d}-{'x' * 40}.pad.test"
                                                        for k in range(180)])
        pads.append(tg_certs.load_cert(crt))
    alice_pem = Path(pki.client("alice")[0]).read_bytes()
    alice_ders = [c.public_bytes(serialization.Encoding.DER)
                  for c in tg_certs.load_certs(pki.client("alice")[0])]
    out = {}
    for name, n in (("small", 4), ("big", 7)):
        pem = alice_pem + b"".join(p.public_bytes(serialization.Encoding.PEM)
                                   for p in pads[:n])
        path = d / f"alice-{name}.crt"
        path.write_bytes(pem)
        ders = alice_ders + [p.public_bytes(serialization.Encoding.DER) for p in pads[:n]]
        size = 3 + sum(3 + len(x) for x in ders)  # the Certificate message body
        out[name] = ((str(path), pki.client("alice")[1]), size)
    assert out["small"][1] < 64 * 1024 < out["big"][1] < 100 * 1024, \
        (out["small"][1], out["big"][1])
    return out


@pytest.mark.parametrize("where", ["listener", "entry"])
def test_client_certificate_message_over_64_kib(hserve, pki, certs, padded_chains, where):
    """CONFIG.md: a client certificate message over 64 KiB fails the
    handshake (tls_error), on a mutual listener and on a mutual sni entry
    alike. The twin: the same chain under 64 KiB is let in."""
    if where == "listener":
        lst = https_listener(mode="mutual")
        tg, be = hserve(lst, **top(pki, certs))
        sni = "localhost"
    else:
        tg, be = start(hserve, pki, certs)
        sni = "mtls.test"
    small, big = padded_chains["small"][0], padded_chains["big"][0]
    assert https_get(tg.addr(), ctx_for(pki, small, verify=False), sni, sni,
                     path="/small")[0] == 200
    st, _, _ = https_get(tg.addr(), ctx_for(pki, big, verify=False), sni, sni, path="/big")
    assert st is None, f"a {padded_chains['big'][1]}-byte certificate message was let in ({st})"
    assert not forwarded(be, "/big")
    tg.wait_event("tls_handshake_failed", reason="tls_error")


# ---- renegotiation toward another site ----

def test_renegotiation_toward_the_mutual_site_is_refused(hserve, pki, certs):
    """TLS 1.2 on the one-way site, then a second ClientHello on the
    established connection naming mtls.test: no renegotiation happens (a
    no_renegotiation alert, or the connection ends); the connection is still
    the one-way site's, so the mutual host stays 421."""
    tg, be = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    # the mutual host stays 421; the connection's own host is still served
    for host, path, want in (("mtls.test", "/sneak", 421), ("localhost", "/own", 200)):
        with raw.Tls12(tg.addr(), sni=raw.sni_body("localhost")) as t:
            assert t.handshake(), t.alert
            t.send_handshake(raw.client_hello(
                tls13=False, sni="mtls.test",
                renegotiation_info=raw.vec8(t.client_verify_data)))
            try:
                st = t.http_status(host, path=path)
            except raw.Alert as e:
                assert e.name == "no_renegotiation", e.name
                # still the one-way site's connection
                st = t.http_status(host, path=path)
            assert st in (None, want), (host, st)
    assert not forwarded(be, "/sneak")
    good_client_served(tg, pki)
    same_workers(tg, before)


# ---- tcp_ssl: the site is all there is ----

def test_tcp_ssl_malformed_server_name(tollgate, backend, pki, certs):
    """A tcp_ssl listener with a mutual entry: every hello of HELLOS gets
    the flight of its expected site or is refused; a flight with the mutual
    certificate asks for a client certificate; no byte of a client that
    did not pass the mutual handshake reaches the target."""
    be = backend()
    lst = listener()
    lst["tls"] = {"mode": "one-way", "certificates": ["ecdsa"], "sni": DEFAULT_SNI}
    cfg = top(pki, certs)
    cfg.update({"target_groups": {"g": group(be.address)}, "listeners": [lst]})
    tg = tollgate(cfg)
    before = sorted(tg.worker_pids())
    for case in sorted(HELLOS):
        body, extra, want = HELLOS[case]
        with raw.Tls12(tg.addr(), sni=body, extra=extra) as t:
            done = t.handshake()
            if want == "refused":
                assert t.server_cert is None, case
            else:
                assert flight_site(t) == want, case
                assert t.cert_request == (want == "mtls"), case
                assert done == (want != "mtls"), case
                if done:
                    t.send(b"one-way bytes\n")
                    assert t.recv() == b"one-way bytes\n"
    assert all(b"mtls" not in bytes(c.data) for c in be.snapshot())
    ok, _ = tg_tls.roundtrip(tg.addr(), ctx_for(pki), b"good\n")
    assert ok
    same_workers(tg, before)


# ---- each site verifies under its own settings ----

def subject_der(path):
    return tg_certs.load_cert(path).subject.public_bytes()


def test_each_site_names_its_own_cas(hserve, pki, foreign_pki, certs):
    """The CertificateRequest of each mutual site names its own client CA
    only: the CA list follows the site the SSL was moved to."""
    sni = [entry(["mtls.test"], "mtls"), entry(["other.test"], "other", client_ca="foreign")]
    tg, _ = start(hserve, pki, certs, sni=sni, foreign_pki=foreign_pki)
    ours, theirs = subject_der(pki.path("root.crt")), subject_der(foreign_pki.path("root.crt"))
    assert ours != theirs
    for name, want in (("mtls.test", [ours]), ("other.test", [theirs])):
        with raw.Tls12(tg.addr(), sni=raw.sni_body(name)) as t:
            t.handshake()
            assert t.cert_request and t.ca_names == want, name
    with raw.Tls12(tg.addr(), sni=raw.sni_body("localhost")) as t:
        assert t.handshake() and not t.cert_request


@pytest.mark.parametrize("listener_depth,entry_depth", [(3, 0), (0, 3)])
def test_verify_depth_follows_the_site(hserve, pki, certs, listener_depth, entry_depth):
    """alice's chain has one intermediate: verify_depth 0 refuses it
    (chain_too_long), 3 lets it in. The listener is mutual with one depth,
    the mtls.test entry has the other: each judges with its own, whichever
    the SSL was made with."""
    lst = https_listener(mode="mutual", tls_extra={
        "verify_depth": listener_depth,
        "sni": [entry(["mtls.test"], "mtls", verify_depth=entry_depth)]})
    tg, be = hserve(lst, **top(pki, certs))
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    for sni, depth in (("localhost", listener_depth), ("mtls.test", entry_depth)):
        st, _, _ = https_get(tg.addr(), alice, sni, sni, path=f"/{sni}")
        assert st == (200 if depth >= 1 else None), (sni, depth, st)
    tg.wait_event("tls_handshake_failed", reason="chain_too_long")


@pytest.mark.parametrize("crl_on", ["listener", "entry"])
def test_crl_check_follows_the_site(hserve, pki, certs, crl_on):
    """The PKI's revoked client: refused (cert_revoked) by the site whose
    client CA has the CRL, let in by the site whose client CA (the same
    root) has none, whether the CRL is the listener's or the entry's."""
    cas = {"pki": pki.client_cas()["pki"], "nocrl": {"ca": pki.path("root.crt")}}
    own_ca, entry_ca = ("pki", "nocrl") if crl_on == "listener" else ("nocrl", "pki")
    lst = https_listener(mode="mutual", client_ca=own_ca, tls_extra={
        "sni": [entry(["mtls.test"], "mtls", client_ca=entry_ca)]})
    cfg = top(pki, certs)
    cfg["client_cas"] = cas
    tg, be = hserve(lst, **cfg)
    revoked = ctx_for(pki, pki.client("revoked"), verify=False)
    with_crl, without = ("localhost", "mtls.test") if crl_on == "listener" else \
        ("mtls.test", "localhost")
    assert https_get(tg.addr(), revoked, with_crl, with_crl, path="/crl")[0] is None
    tg.wait_event("tls_handshake_failed", reason="cert_revoked")
    assert https_get(tg.addr(), revoked, without, without, path="/nocrl")[0] == 200
    assert [r.target for r in be.reqs()] == ["/nocrl"]


def test_allow_list_inherited_or_own(hserve, pki, certs):
    """A mutual listener lets only alice in; an entry without allow keeps
    that list, an entry with its own (bob) replaces it."""
    lst = https_listener(mode="mutual", tls_extra={
        "allow": [{"subject_cn": "alice"}],
        "sni": [entry(["mtls.test"], "mtls"),
                entry(["partner.test"], "partner", allow=[{"subject_cn": "bob"}])]})
    tg, be = hserve(lst, **top(pki, certs))
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    bob = ctx_for(pki, pki.client("bob"), verify=False)
    for ctx, sni, want in ((alice, "localhost", 200), (bob, "localhost", None),
                           (alice, "mtls.test", 200), (bob, "mtls.test", None),
                           (alice, "partner.test", None), (bob, "partner.test", 200)):
        assert https_get(tg.addr(), ctx, sni, sni, path=f"/{sni}")[0] == want, (sni, want)
    assert len(tg.events("tls_handshake_failed", reason="not_allowed")) == 3


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("who,status", [("bob", 403), ("foreign", 495), ("anon", 496)])
def test_optional_site_refusal_survives_resumption(hserve, pki, foreign_pki, certs, version,
                                                   who, status):
    """On the optional site with on_reject: page, a client refused at its
    full handshake (bob: not on the list; a foreign certificate; none) is
    refused the same way on the connections that resume its session: the
    session carries the verdict, not a pass."""
    tg, be = start(hserve, pki, certs, sni=optional_sites(), foreign_pki=foreign_pki,
                   tls_extra={"on_reject": "page"})
    cert = {"anon": None, "bob": pki.client("bob"), "foreign": foreign_pki.client("alice")}[who]
    ctx = ctx_for(pki, cert, version=version, verify=False)
    st, _, sess = https_get(tg.addr(), ctx, "opt.test", "opt.test", path="/first")
    assert st == status and sess is not None
    for _ in range(2):
        st, reused, sess2 = https_get(tg.addr(), ctx, "opt.test", "opt.test", path="/again",
                                      session=sess)
        assert st == status, (reused, st)
        assert reused, "the session was not resumed: nothing was tested"
        sess = sess2 or sess
    assert not be.reqs()


# ---- a connection judged by a one-way entry, and requests without Host ----

@pytest.mark.parametrize("host,want", [
    ("other.test", 200), ("OTHER.TEST.:443", 200),
    ("localhost", 421),     # the listener's own site, not this entry's
    ("127.0.0.1", 421),     # an address names the listener's own site
    ("mtls.test", 421), ("nobody.test", 421), ("", 421),
])
def test_one_way_entry_serves_only_its_names(hserve, pki, certs, host, want):
    """other.test is a one-way entry: its connection serves its names only."""
    tg, be = start(hserve, pki, certs)
    st, _, _ = https_get(tg.addr(), ctx_for(pki, verify=False), "other.test", host, path="/e")
    assert st == want, st
    assert len(be.reqs()) == (1 if want == 200 else 0)


@pytest.mark.parametrize("sni,cert,want", [
    ("localhost", None, 200),       # the listener's own site: no Host is its own
    ("other.test", None, 421),
    ("mtls.test", "alice", 421),
    ("a.api.test", "alice", 421),
])
def test_http10_without_host(hserve, pki, certs, sni, cert, want):
    """HTTP/1.0 without Host names the listener's own site: served there,
    421 on a connection judged by an entry (a mutual one included)."""
    tg, be = start(hserve, pki, certs)
    ctx = ctx_for(pki, pki.client(cert) if cert else None, verify=False)
    st, _, _ = https_get(tg.addr(), ctx, sni, None, head="GET /nohost HTTP/1.0\r\n\r\n")
    assert st == want, st
    assert len(be.reqs()) == (1 if want == 200 else 0)


SPOOFED = ("X-Client-Verify: SUCCESS\r\nX-Client-Subject: CN=alice\r\n"
           "X-Client-Verify_: SUCCESS\r\nx_client_subject: CN=alice\r\n"
           "Client-Cert: :MIIB:\r\nX-Client-Fingerprint: 00\r\n")


@pytest.mark.parametrize("sni", ["localhost", "other.test", "opt.test"])
def test_identity_headers_cannot_be_spoofed_on_a_one_way_or_anonymous_site(hserve, pki, certs,
                                                                          sni):
    """On a listener where some sites are mutual, a client of a one-way site
    (or an anonymous client of an optional one) sending identity headers:
    the backend sees none of its copies, and never SUCCESS."""
    sites = DEFAULT_SNI + [entry(["opt.test"], "opt", client_auth="optional")]
    tg, be = start(hserve, pki, certs, sni=sites)
    st, _, _ = https_get(tg.addr(), ctx_for(pki, verify=False), sni, None,
                         head=head(f"Host: {sni}\r\n", target="/spoof", extra=SPOOFED))
    assert st == 200
    req = be.reqs()[0]
    assert req.get("X-Client-Verify") in (None, "NONE")
    for name in ("X-Client-Subject", "Client-Cert", "X-Client-Fingerprint", "X-Client-Verify_",
                 "x_client_subject"):
        assert req.all(name) == [], name
    with RawH2(tg.addr(), pki, sni=sni) as c:
        hdrs = [(":authority", sni), ("x-client-verify", "SUCCESS"),
                ("x-client-subject", "CN=alice"), ("client-cert", ":MIIB:")]
        assert h2_status(c, 1, hdrs, "/spoof-h2") == 200
    req = [r for r in be.reqs() if r.target == "/spoof-h2"][0]
    assert req.get("X-Client-Verify") in (None, "NONE")
    assert req.all("X-Client-Subject") == [] and req.all("Client-Cert") == []


# ---- live trust changes reach the sites that use them, only those ----

def tcp_sites(tollgate, backend, pki, certs, tls, cas):
    be = backend()
    lst = listener()
    lst["tls"] = tls
    cfg = top(pki, certs)
    cfg["client_cas"] = cas
    cfg.update({"target_groups": {"g": group(be.address)}, "listeners": [lst]})
    return tollgate(cfg), be


def test_allow_file_change_cuts_the_sites_that_use_it(tollgate, backend, pki, certs, tmp_path):
    """A mutual tcp_ssl listener with an allow file (alice, bob); mtls.test
    keeps that list, partner.test has its own (alice). The file loses
    alice: her connections to the listener's own site and to mtls.test are
    cut, the one to partner.test goes on; new ones follow the same lists."""
    from test_live_trust import echo_ok, is_closed
    allow = tmp_path / "clients.allow"
    allow.write_text("subject_cn alice\nsubject_cn bob\n")
    cas = {"pki": {"ca": pki.path("root.crt"), "crl_check_interval": "1s"}}
    tls = {"mode": "mutual", "client_ca": "pki", "certificates": ["ecdsa"],
           "allow_file": str(allow),
           "sni": [{"names": ["mtls.test"], "certificates": ["mtls"]},
                   {"names": ["partner.test"], "certificates": ["partner"],
                    "allow": [{"subject_cn": "alice"}]}]}
    tg, _ = tcp_sites(tollgate, backend, pki, certs, tls, cas)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    conns = {sni: tg_tls.connect(tg.addr(), alice, server_hostname=sni)
             for sni in ("localhost", "mtls.test", "partner.test")}
    for s in conns.values():
        assert echo_ok(s)
    tmp = tmp_path / "clients.allow.tmp"
    tmp.write_text("subject_cn bob\n")
    os.replace(tmp, allow)
    tg.wait_event("allow_applied", timeout=T(10))
    assert is_closed(conns["localhost"]) and is_closed(conns["mtls.test"])
    assert echo_ok(conns["partner.test"]), "partner.test's own list still lets alice in"
    for sni, ok in (("localhost", False), ("mtls.test", False), ("partner.test", True)):
        assert tg_tls.attempt(tg.addr(), alice, server_hostname=sni)[0] == ok, sni
    for s in conns.values():
        s.close()


def test_crl_change_cuts_only_the_site_whose_ca_has_it(tollgate, backend, pki, certs, tmp_path):
    """Two mutual sites with two client CAs of the same root, each with its
    own CRL file: the CRL of one revokes alice; her connection to that site
    is cut, her connection to the other site goes on."""
    from test_live_trust import echo_ok, is_closed, serial_of, write_crl
    crl_a, crl_b = tmp_path / "a.crl", tmp_path / "b.crl"
    write_crl(pki, crl_a, number=1)
    write_crl(pki, crl_b, number=1)
    cas = {"a": {"ca": pki.path("root.crt"), "crl": str(crl_a), "crl_check_interval": "1s"},
           "b": {"ca": pki.path("root.crt"), "crl": str(crl_b), "crl_check_interval": "1s"}}
    tls = {"mode": "one-way", "certificates": ["ecdsa"],
           "sni": [entry(["mtls.test"], "mtls", client_ca="a"),
                   entry(["partner.test"], "partner", client_ca="b")]}
    tg, _ = tcp_sites(tollgate, backend, pki, certs, tls, cas)
    alice = ctx_for(pki, pki.client("alice"), verify=False)
    conns = {sni: tg_tls.connect(tg.addr(), alice, server_hostname=sni)
             for sni in ("mtls.test", "partner.test")}
    for s in conns.values():
        assert echo_ok(s)
    write_crl(pki, crl_a, revoked=(serial_of(pki.client("alice")[0]),), number=2)
    tg.wait_event("connection_revoked", timeout=T(10))
    assert is_closed(conns["mtls.test"])
    assert echo_ok(conns["partner.test"]), "the other site's CA does not revoke alice"
    assert not tg_tls.attempt(tg.addr(), alice, server_hostname="mtls.test")[0]
    assert tg_tls.attempt(tg.addr(), alice, server_hostname="partner.test")[0]
    for s in conns.values():
        s.close()


@pytest.mark.parametrize("kind,reason", [("server_only", "wrong_purpose"),
                                         ("expired", "cert_expired"),
                                         ("self_signed", "self_signed")])
def test_entry_judges_purpose_and_dates_like_a_listener(hserve, pki, certs, bad_certs, kind,
                                                        reason):
    """A mutual entry of a one-way listener (whose own context verifies
    nothing) refuses what a mutual listener refuses: a server-only
    certificate, an expired one, a self-signed one. The twin, a good
    certificate minted the same way, passes."""
    tg, be = start(hserve, pki, certs)
    st, _, _ = https_get(tg.addr(), ctx_for(pki, bad_certs[kind], verify=False), "mtls.test",
                         "mtls.test", path="/bad")
    assert st is None, st
    ev = tg.wait_event("tls_handshake_failed", sni="mtls.test")[0]
    assert ev["reason"] == reason, ev["reason"]
    st, _, _ = https_get(tg.addr(), ctx_for(pki, bad_certs["good_minted"], verify=False),
                         "mtls.test", "mtls.test", path="/good")
    assert st == 200
    assert [r.target for r in be.reqs()] == ["/good"]


@pytest.mark.parametrize("own,other", [("optional", "required"), ("required", "optional")])
def test_client_auth_follows_the_site(hserve, pki, certs, bad_certs, own, other):
    """The listener is mutual with one client_auth, the mtls.test entry
    has the other: a client without a certificate, or with an expired
    one, is let through (X-Client-Verify NONE / FAILED) only where the site
    says optional."""
    lst = https_listener(mode="mutual", client_auth=own, tls_extra={
        "sni": [entry(["mtls.test"], "mtls", client_auth=other)]})
    tg, be = hserve(lst, **top(pki, certs))
    for sni, auth in (("localhost", own), ("mtls.test", other)):
        for cert, verdict in ((None, "NONE"), (bad_certs["expired"], "FAILED:cert_expired")):
            path = f"/{sni}-{verdict}"
            st, _, _ = https_get(tg.addr(), ctx_for(pki, cert, verify=False), sni, sni,
                                 path=path)
            if auth == "optional":
                assert st == 200, (sni, verdict, st)
                got = [r for r in be.reqs() if r.target == path][0].get("X-Client-Verify")
                assert got == verdict, got
            else:
                assert st is None, (sni, verdict, st)
                assert not [r for r in be.reqs() if r.target == path]


@pytest.mark.parametrize("size", [1, 5, 47])
def test_client_hello_in_small_records(hserve, pki, certs, size):
    """The ClientHello cut into records of a few bytes (the server_name
    split across them): the site is picked from the whole hello as usual."""
    tg, be = start(hserve, pki, certs)
    before = sorted(tg.worker_pids())
    for sni, site in (("mtls.test", "mtls"), ("localhost", "own"), ("a.api.test", "api")):
        with raw.Tls12(tg.addr(), sni=raw.sni_body(sni), hello_record=size) as t:
            done = t.handshake()
            assert t.server_cert is not None and flight_site(t) == site, (sni, t.alert)
            assert t.cert_request == (site != "own") and done == (site == "own")
            if done:
                assert t.http_status("mtls.test", path="/sneak") == 421
    assert not forwarded(be, "/sneak")
    same_workers(tg, before)
