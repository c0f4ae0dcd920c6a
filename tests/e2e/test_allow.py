"""Allow-lists (tls.allow, tls.allow_file, sni entries, rules' client)
end to end, trying to get the wrong client in: every matcher field with
clients it lets in and twins it keeps out, over tcp_ssl and https; AND
within a matcher, OR across the list; client_auth optional (the verdict to
the backend, the 403 page, PROXY v2, resumed sessions); allow files edited,
broken, emptied and deleted under live connections, sessions and a
handshake in progress; a reload; the sites of sni entries; routing on the
client identity; and `tollgate check` on bad allow config."""

import base64
import json
import os
import signal
import socket
import ssl
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.hazmat.primitives import serialization

import tg_certs
import tg_proxyproto as pp
import tg_tls
from test_admin import metric, scrape
from test_live_trust import echo_ok, is_closed
from tg_h2 import H2Client
from tg_http import Client, Reply, build, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, free_port, group, listener, run_tollgate, wait_for

WEB = "spiffe://prod.example/ns/default/sa/web"
DB = "spiffe://prod.example/ns/data/sa/db"
PAYLOAD = b"should never reach a backend\n"


# ---- identities: the run's idents plus certificates made to trip matchers ----

def load_key(path):
    return serialization.load_pem_private_key(Path(path).read_bytes(), password=None)


@pytest.fixture(scope="module")
def who(pki, idents, tmp_path_factory):
    """name -> (cert, key): tg_certs.IDENTS and
    web_rekeyed  spiffe_web's key in another certificate (CN ident-web-rekeyed)
    dns_deep     DNS a.svc.partner.example (two labels below partner.example)
    ip_near      IP 10.1.3.3;  ip_mapped: IP ::ffff:10.1.2.3 (10.1.2.3 as IPv6)
    uri_nul      URI WEB + NUL + ".evil.example"
    uri_evil     URI spiffe://prod.example.evil/...;  mail_evil: alice@partner.example.evil
    inter2       URI WEB, issued by a second intermediate (CN allow-inter2)
    comma        CN "ident,comma" (CN=ident\\,comma in X-Client-Subject)
    db_self      CN and URI of spiffe_db, self-signed
    _inter       the intermediate that signs the others (not a client)"""
    d = tmp_path_factory.mktemp("allowcerts")
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    signed = dict(issuer_cert=inter, issuer_key=load_key(pki.path("intermediate.key")),
                  chain=(inter,))
    root = tg_certs.load_cert(pki.path("root.crt"))
    inter2, inter2_key = tg_certs.make_ca(d, "allow-inter2", root, load_key(pki.path("root.key")))
    out = dict(idents)
    mk = tg_certs.make_cert
    out["web_rekeyed"] = mk(d, "web-rekeyed", cn="ident-web-rekeyed", sans=[("uri", WEB)],
                            key=load_key(idents["spiffe_web"][1]), **signed)
    for name, sans in {"dns_deep": ["a.svc.partner.example"], "ip_near": [("ip", "10.1.3.3")],
                       "ip_mapped": [("ip", "::ffff:10.1.2.3")],
                       "uri_nul": [("uri", WEB + "\0.evil.example")],
                       "uri_evil": [("uri", "spiffe://prod.example.evil/ns/default/sa/web")],
                       "mail_evil": [("email", "alice@partner.example.evil")]}.items():
        out[name] = mk(d, name, cn="ident-" + name.replace("_", "-"), sans=sans, **signed)
    out["comma"] = mk(d, "comma", cn="ident,comma", **signed)
    out["inter2"] = mk(d, "inter2", cn="ident-inter2", sans=[("uri", WEB)], issuer_cert=inter2,
                       issuer_key=inter2_key, chain=(inter2,))
    out["db_self"] = mk(d, "db-self", cn="ident-spiffe-db", sans=[("uri", DB)])
    out["_inter"] = (pki.path("intermediate.crt"), pki.path("intermediate.key"))
    return out


def cn(who, name):
    return tg_certs.load_cert(who[name][0]).subject.rfc4514_string().split(",")[0]


def issuer_of(who, name):
    return tg_certs.load_cert(who[name][0]).issuer.rfc4514_string()


def pairs(hexstr):
    return ":".join(hexstr[i:i + 2] for i in range(0, len(hexstr), 2))


def spki_b64(path):
    return base64.b64encode(bytes.fromhex(tg_certs.spki_sha256(path))).decode()


# ---- clients ----

def ctx_of(pki, who, name, version=None):
    ctx = tg_tls.client_ctx(pki, cert=who[name] if name else None, version=version)
    ctx.check_hostname = False  # the sni tests ask for names the server certificate lacks
    return ctx


def https_get(addr, ctx, path="/", session=None):
    """One GET with Connection: close: .status (None when the handshake or
    the exchange failed), .port (the client's), .body, .reused, .session."""
    raw = socket.create_connection(addr, timeout=T(10))
    r = SimpleNamespace(status=None, port=raw.getsockname()[1], body=b"", reused=False,
                        session=None)
    data = b""
    try:
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(build("GET", path, "localhost", [("Connection", "close")]))
            while b := s.recv(65536):
                data += b
            r.reused, r.session = s.session_reused, s.session
    except (ssl.SSLError, OSError):
        return r
    finally:
        raw.close()
    if data.startswith(b"HTTP/1.1 "):
        r.status, r.body = int(data.split(b" ", 2)[1]), data.partition(b"\r\n\r\n")[2]
    return r


def nothing_relayed(be):
    return all(PAYLOAD not in bytes(c.data) for c in be.snapshot())


def write_allow(path, *lines):
    """An allow file written atomically (a temporary file, then rename)."""
    tmp = Path(str(path) + ".tmp")
    tmp.write_text("".join(f"{ln}\n" for ln in lines))
    os.replace(tmp, path)


def wait_metric(port, want, name, **labels):
    """Waits for name{labels} == want (counted just after the log line)."""
    wait_for(lambda: metric(scrape(port), name, **labels) == want, T(10),
             what=f"{name}{labels} == {want}")


def refused(tg, port, subject):
    """The refusal of the connection from port: not_allowed, naming subject
    (so its chain verified: only the allow-list kept it out)."""
    ev = tg.wait_rejection(port)
    assert ev["reason"] == "not_allowed", ev["_line"]
    assert subject in ev["subject"], ev["_line"]
    return ev


# ---- 1-3: every field, AND, OR, SPIFFE: tcp_ssl and https, one tollgate ----

def _fp(who, n):
    return tg_certs.fingerprint_sha256(who[n][0])


# (allow-list, or a function of `who` giving it; let in; kept out)
LISTS = {
    "cn_exact": ([{"subject_cn": "ident-mail"}], ["mail"], ["dns"]),
    "cn_glob": ([{"subject_cn": "ident-spiffe-*"}], ["spiffe_db", "spiffe_other"],
                ["partner_api"]),
    "cn_is_case_sensitive": ([{"subject_cn": "Ident-Mail"}, {"subject_cn": "ident-dns"}],
                             ["dns"], ["mail"]),
    "cn_is_the_leafs_not_the_intermediates": (
        [{"subject_cn": "tollgate dev*"}, {"subject_cn": "ident-mail"}], ["mail"], ["spiffe_web"]),
    "cn_is_escaped_as_in_the_subject_header": ([{"subject_cn": "ident\\,comma"}], ["comma"],
                                               ["mail"]),
    "cn_unescaped_comma_never_matches": ([{"subject_cn": "ident,comma"},
                                          {"subject_cn": "ident-mail"}], ["mail"], ["comma"]),
    "dns_one_label": ([{"san_dns": "*.partner.example"}], ["dns"], ["dns_deep", "mail"]),
    "dns_case_insensitive": ([{"san_dns": "SVC.Partner.Example"}], ["dns"], ["mail"]),
    "dns_is_not_the_cn": ([{"san_dns": "ident-dns"}, {"subject_cn": "ident-mail"}], ["mail"],
                          ["dns"]),
    "uri_exact": ([{"san_uri": WEB}], ["spiffe_web"], ["spiffe_db"]),
    "uri_case_sensitive": ([{"san_uri": "SPIFFE://prod.example/*"},
                            {"san_uri": "spiffe://prod.example/ns/data/*"}],
                           ["spiffe_db"], ["spiffe_web"]),
    "uri_nul_never_matches": ([{"san_uri": "spiffe://prod.example/*"}], ["spiffe_web"],
                              ["uri_nul"]),
    "email_glob": ([{"san_email": "*@partner.example"}], ["mail"],
                   ["mail_evil", "dns", "partner_api"]),
    "email_case_insensitive": ([{"san_email": "ALICE@Partner.EXAMPLE"}], ["mail"],
                               ["spiffe_web"]),
    "ip_v4_network": ([{"san_ip": "10.1.2.0/24"}], ["ip"], ["ip_near"]),
    "ip_v4_is_not_v4_mapped": ([{"san_ip": "10.0.0.0/8"}], ["ip"], ["ip_mapped"]),
    "ip_v6_address": ([{"san_ip": "2001:db8::7"}], ["ip"], ["spiffe_web"]),
    "ip_v6_network": ([{"san_ip": "2001:db8::/32"}], ["ip"], ["ip_mapped"]),
    "fingerprint_pairs_upper": (lambda w: [{"fingerprint_sha256": pairs(_fp(w, "spiffe_web"))
                                            .upper()}], ["spiffe_web"], ["web_rekeyed"]),
    "fingerprint_bare": (lambda w: [{"fingerprint_sha256": _fp(w, "mail")}], ["mail"], ["dns"]),
    "spki_hex_survives_renewal": (
        lambda w: [{"spki_sha256": tg_certs.spki_sha256(w["spiffe_web"][0])}],
        ["spiffe_web", "web_rekeyed"], ["spiffe_db"]),
    "spki_base64": (lambda w: [{"spki_sha256": spki_b64(w["spiffe_db"][0])}], ["spiffe_db"],
                    ["spiffe_web"]),
    "issuer_glob": ([{"issuer": "CN=allow-inter2,*"}], ["inter2"], ["spiffe_web"]),
    "issuer_exact": (lambda w: [{"issuer": issuer_of(w, "spiffe_web")}], ["spiffe_web"],
                     ["inter2"]),
    "serial_pairs_upper": (
        lambda w: [{"serial": pairs(tg_certs.serial_hex(w["spiffe_db"][0])).upper()}],
        ["spiffe_db"], ["spiffe_web"]),
    "pins_of_the_intermediate_admit_no_leaf": (lambda w: [
        {"fingerprint_sha256": _fp(w, "_inter")}, {"spki_sha256": tg_certs.spki_sha256(
            w["_inter"][0])}, {"serial": tg_certs.serial_hex(w["_inter"][0])},
        {"subject_cn": "ident-mail"}], ["mail"], ["spiffe_web", "spiffe_db"]),
    "serial_bare": (lambda w: [{"serial": tg_certs.serial_hex(w["mail"][0]).lstrip("0")}],
                    ["mail"], ["dns"]),
    # a matcher is an AND: one field matching is not enough
    "and_cn_not_uri": ([{"subject_cn": "ident-spiffe-*", "san_uri": DB.replace("sa/db", "*")}],
                       ["spiffe_db"], ["spiffe_web", "spiffe_other"]),
    "and_uri_not_cn": ([{"subject_cn": "ident-spiffe-db", "san_uri": "spiffe://prod.example/*"}],
                       ["spiffe_db"], ["spiffe_web", "web_rekeyed"]),
    "and_issuer": ([{"san_uri": WEB, "issuer": "CN=allow-inter2,*"}], ["inter2"],
                   ["spiffe_web"]),
    # a list is an OR
    "or": ([{"san_email": "*@partner.example"}, {"san_dns": "svc.partner.example"},
            {"san_ip": "10.1.2.3"}], ["mail", "dns", "ip"], ["spiffe_web", "ip_near"]),
    # SPIFFE trust domains and namespaces
    "spiffe_trust_domain": ([{"san_uri": "spiffe://prod.example/*"}], ["spiffe_web", "spiffe_db"],
                            ["spiffe_other", "uri_evil"]),
    "spiffe_namespace": ([{"san_uri": "spiffe://prod.example/ns/default/*"}], ["spiffe_web"],
                         ["spiffe_db", "spiffe_other"]),
    "spiffe_any_namespace": ([{"san_uri": "spiffe://prod.example/ns/*/sa/web"}], ["spiffe_web"],
                             ["spiffe_db", "spiffe_other"]),
}


def two_listeners(tollgate, backend, hbackend, pki, allow):
    """tcp_ssl "tcp" (echo backend) and https "web" (HTTP backend), both
    mutual required with `allow`; the client CA without a CRL (the second
    intermediate has none). Returns (tg, tcp backend, http backend, admin port)."""
    be, hb, port = backend(), hbackend(), free_port()
    tls = {"allow": allow}
    cfg = {"admin": {"listen": f"127.0.0.1:{port}"},
           "client_cas": {"pki": {"ca": pki.path("root.crt")}},
           "target_groups": {"g": group(be.address), "h": group(hb.address)},
           "listeners": [listener(name="tcp", mode="mutual", tls_extra=tls),
                         https_listener(name="web", mode="mutual", default="h", tls_extra=tls)]}
    return tollgate(cfg), be, hb, port


@pytest.mark.parametrize("case", sorted(LISTS))
def test_allow_list(tollgate, backend, hbackend, pki, who, case):
    allow, oks, kos = LISTS[case]
    allow = allow(who) if callable(allow) else allow
    tg, be, hb, admin = two_listeners(tollgate, backend, hbackend, pki, allow)
    for n in oks:
        got, _ = tg_tls.roundtrip(tg.addr("tcp"), ctx_of(pki, who, n), f"in {n}\n".encode())
        assert got == f"in {n}\n".encode(), f"{n} not relayed"
        assert https_get(tg.addr("web"), ctx_of(pki, who, n), f"/in/{n}").status == 200, n
    for n in kos:
        ok, detail, port = tg_tls.attempt(tg.addr("tcp"), ctx_of(pki, who, n), PAYLOAD)
        assert not ok, f"{n} got through tcp_ssl: {detail}"
        refused(tg, port, cn(who, n))
        r = https_get(tg.addr("web"), ctx_of(pki, who, n), f"/out/{n}")
        assert r.status is None, f"{n} was served ({r.status}) over https"
        refused(tg, r.port, cn(who, n))
    for lst in ("tcp", "web"):
        wait_metric(admin, len(kos), "tollgate_tls_handshake_failures_total", listener=lst,
                    reason="not_allowed")
    assert {e["reason"] for e in tg.rejections()} == {"not_allowed"}
    assert nothing_relayed(be), "a refused client's bytes reached the tcp_ssl target"
    assert sorted(r.target for r in hb.reqs()) == sorted(f"/in/{n}" for n in oks)


# ---- 4: client_auth optional ----

def optional_https(tls_extra=None, **kw):
    return https_listener(mode="mutual", client_auth="optional",
                          tls_extra={"allow": [{"san_uri": "spiffe://prod.example/*"}],
                                     **(tls_extra or {})}, **kw)


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_optional_lets_a_not_allowed_client_through_with_its_verdict(hserve, pki, who, version):
    """optional: spiffe_other (verified, not allowed) is forwarded with
    X-Client-Verify: FAILED:not_allowed, never SUCCESS, also when it
    resumes its session; the allowed twin gets SUCCESS, a client without
    certificate NONE. A client rule matching spiffe_other's URI does not
    route it (no verified identity)."""
    rules = [{"client": {"san_uri": "spiffe://staging.example/*"}, "respond": {"status": 418}}]
    tg, be = hserve(optional_https(rules=rules))
    for n, path in (("spiffe_other", "/other"), ("spiffe_web", "/web"), (None, "/anon")):
        assert https_get(tg.addr(), ctx_of(pki, who, n), path).status == 200, n
    ctx = ctx_of(pki, who, "spiffe_other", version)
    r = https_get(tg.addr(), ctx, "/other2", https_get(tg.addr(), ctx, "/other1").session)
    assert r.reused and r.status == 200, (r.reused, r.status)
    got = {r.target: r for r in be.reqs()}
    for path in ("/other", "/other1", "/other2"):
        assert got[path].get("X-Client-Verify") == "FAILED:not_allowed", path
    assert "CN=ident-spiffe-other" in got["/other"].get("X-Client-Subject")
    assert got["/web"].get("X-Client-Verify") == "SUCCESS"
    assert got["/anon"].get("X-Client-Verify") == "NONE"
    recs = {r["path"]: r for r in tg.wait_access(lambda r: r.get("path"), count=3)}
    assert recs["/other"]["client_verify"] == "not_allowed"
    assert recs["/web"]["client_verify"] == "SUCCESS"


def test_optional_on_reject_page_is_403_naming_the_identity(hserve, pki, who, bad_certs):
    """optional + on_reject: page: each request of a not-allowed client
    gets 403 (HTML, or JSON when asked) with its subject and not_allowed,
    nothing is forwarded, and the refusal is logged and counted. Twins: the
    allowed client is forwarded; no certificate is 496, an expired one 495."""
    port = free_port()
    tg, be = hserve(optional_https(tls_extra={"on_reject": "page"}),
                    admin={"listen": f"127.0.0.1:{port}"})
    rs, ports = [], []
    for method, path, headers, body in (("GET", "/a", [], None),
                                        ("GET", "/b", [("Accept", "application/json")], None),
                                        ("POST", "/c", [], b"data")):
        with Client(tg.addr(), pki, cert=who["spiffe_other"]) as c:
            rs.append(c.request(method, path, headers=headers, body=body))
            ports.append(c.port)
    r1, r2, r3 = rs
    assert (r1.status, r2.status, r3.status) == (403, 403, 403)
    assert r1.get("Content-Type").startswith("text/html")
    html = r1.body.decode()
    assert "not_allowed" in html and "CN=ident-spiffe-other" in html and "403 Forbidden" in html
    doc = json.loads(r2.body)
    assert doc["status"] == 403 and doc["reason"] == "not_allowed"
    assert doc["subject"].startswith("CN=ident-spiffe-other")
    assert doc["issuer"] == issuer_of(who, "spiffe_other")
    assert be.count() == 0 and be.reqs() == [], "a not-allowed client's request was forwarded"
    ctx = ctx_of(pki, who, "spiffe_other")
    r = https_get(tg.addr(), ctx, "/r2", https_get(tg.addr(), ctx, "/r1").session)
    assert r.reused and r.status == 403, "a resumed session got past the page"
    for p in ports:
        refused(tg, p, "CN=ident-spiffe-other")
    wait_metric(port, 5, "tollgate_tls_handshake_failures_total", listener="main",
                reason="not_allowed")
    assert https_get(tg.addr(), ctx_of(pki, who, "spiffe_web"), "/ok").status == 200
    assert https_get(tg.addr(), ctx_of(pki, who, None), "/none").status == 496
    assert https_get(tg.addr(), tg_tls.client_ctx(pki, cert=bad_certs["expired"])).status == 495
    assert [r.target for r in be.reqs()] == ["/ok"]


def test_h2_not_allowed_gets_403_per_stream(hserve, pki, who):
    """HTTP/2 on optional + on_reject: every stream of the not-allowed
    client gets its 403; the allowed client's streams are forwarded."""
    tg, be = hserve(optional_https(tls_extra={"on_reject": "page"}))
    with H2Client(tg.addr(), pki, cert=who["spiffe_other"]) as c:
        sids = [c.start(f"/s{i}") for i in range(3)]
        sids.append(c.start("/json", headers=[("accept", "application/json")]))
        assert set(c.wait_ended(sids).values()) == {403}
        assert all(b"not_allowed" in bytes(c.body[s]) for s in sids)
        assert json.loads(bytes(c.body[sids[-1]]))["reason"] == "not_allowed"
    assert be.reqs() == []
    with H2Client(tg.addr(), pki, cert=who["spiffe_web"]) as c:
        assert c.get("/h2ok")[0] == 200 and c.get("/h2ok2")[0] == 200
    assert [r.target for r in be.reqs()] == ["/h2ok", "/h2ok2"]
    assert be.reqs()[0].get("X-Client-Verify") == "SUCCESS"


def test_tcp_ssl_optional_passes_not_allowed_in_the_ssl_tlv(serve, pki, who):
    """tcp_ssl optional + PROXY v2: the not-allowed client is relayed with
    a non-zero verify result in the SSL TLV (its certificate passed along),
    also when it resumes; the allowed twin's is 0."""
    lst = listener(mode="mutual", client_auth="optional", proxy="v2",
                   tls_extra={"allow": [{"san_uri": "spiffe://prod.example/*"}]})
    tg, be = serve(lst, backend_kw={"proxy": True})
    ctx = {n: ctx_of(pki, who, n) for n in ("spiffe_other", "spiffe_web")}
    sess = {}
    for i, n in enumerate(("spiffe_other", "spiffe_web", "spiffe_other")):
        with tg_tls.connect(tg.addr(), ctx[n], session=sess.get(n)) as s:
            assert echo_ok(s, f"{i}\n".encode())
            sess[n], reused, port = s.session, s.session_reused, s.getsockname()[1]
        assert reused == (i == 2)
        c = [c for c in be.wait_conns(i + 1, T(5)) if bytes(c.data) == f"{i}\n".encode()][0]
        assert c.proxy_error is None, c.proxy_error
        assert c.proxy.tlv(pp.PP2_TYPE_CLIENT_CERT) == tg_certs.der_of(who[n][0])
        want = "not_allowed" if n == "spiffe_other" else "SUCCESS"
        assert tg.access_for(port)["client_verify"] == want
        assert (c.proxy.ssl["verify"] == 0) == (want == "SUCCESS"), \
            f"{n}: verify={c.proxy.ssl['verify']} for {want}"


# ---- 5: allow files ----

def file_cfg(pki):
    """The client CA, looked at (its files and the allow files) every second."""
    return {"pki": {"ca": pki.path("root.crt"), "crl": pki.path("clients.crl"),
                    "crl_check_interval": "1s"}}


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_allow_file_edit_under_live_connections_and_sessions(tollgate, backend, pki, who,
                                                             tmp_path, version):
    """An allow file lists spiffe_web and spiffe_db. Removing spiffe_db
    (without a reload): the master logs allow_reloaded, spiffe_db's live
    connection is cut (connection_revoked reason=not_allowed, outcome
    revoked, counted), its new handshakes are refused and its session no
    longer resumes (resumption_refused reason=not_allowed). Twin:
    spiffe_web's connection stays and its session resumes and stays
    connected. Adding spiffe_db back lets it in again. Two workers: each
    judges its own connections."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, "# e2e", f"san_uri {WEB}", f"san_uri  {DB}  ")
    be, port = backend(), free_port()
    tg = tollgate({"workers": 2, "admin": {"listen": f"127.0.0.1:{port}"},
                   "client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
                   "listeners": [listener(mode="mutual", tls_extra={"allow_file": str(allow)})]})
    ctx = {n: ctx_of(pki, who, n, version) for n in ("spiffe_web", "spiffe_db", "spiffe_other")}
    assert not tg_tls.attempt(tg.addr(), ctx["spiffe_other"])[0], "not in the file, let in"
    sessions = {n: tg_tls.roundtrip(tg.addr(), ctx[n], b"s\n")[1]["session"]
                for n in ("spiffe_web", "spiffe_db")}
    live = {n: tg_tls.connect(tg.addr(), ctx[n]) for n in sessions}
    dbs = [live["spiffe_db"]] + [tg_tls.connect(tg.addr(), ctx["spiffe_db"]) for _ in range(3)]
    assert all(echo_ok(s) for s in [live["spiffe_web"], *dbs])

    write_allow(allow, f"san_uri {WEB}")
    ev = tg.wait_event("allow_reloaded", timeout=T(10))[0]
    assert ev["listener"] == "main" and ev["allow_file"] == str(allow)
    tg.wait_event("allow_applied", timeout=T(10), count=2)
    for cut in tg.wait_event("connection_revoked", timeout=T(10), count=4):
        assert cut["reason"] == "not_allowed" and "CN=ident-spiffe-db" in cut["subject"]
        assert cut["action"] == "close"
    assert all(is_closed(s) for s in dbs), "a removed identity's connection is still open"
    assert echo_ok(live["spiffe_web"]), "the twin: a listed identity's connection was cut"
    rec = tg.wait_access(lambda r: r.get("outcome") == "revoked")[0]
    assert rec["reason"] == "not_allowed" and "ident-spiffe-db" in rec["client_subject"]
    ok, _, p = tg_tls.attempt(tg.addr(), ctx["spiffe_db"])
    assert not ok, "a removed identity made a new handshake"
    refused(tg, p, "CN=ident-spiffe-db")
    ok, _, p = tg_tls.attempt(tg.addr(), ctx["spiffe_db"], session=sessions["spiffe_db"])
    assert not ok, "a removed identity resumed its session"
    tg.wait_event("resumption_refused", reason="not_allowed")
    refused(tg, p, "CN=ident-spiffe-db")
    resumed = tg_tls.connect(tg.addr(), ctx["spiffe_web"], session=sessions["spiffe_web"])
    assert resumed.session_reused and echo_ok(resumed), "the twin: a listed identity resumes"
    assert len(tg.events("resumption_refused")) == 1
    wait_metric(port, 4, "tollgate_connections_cut_total", listener="main", reason="not_allowed")

    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    tg.wait_event("allow_reloaded", timeout=T(10), count=2)
    tg.wait_event("allow_applied", timeout=T(10), count=4)
    assert tg_tls.attempt(tg.addr(), ctx["spiffe_db"], b"back\n")[0], "added back, still out"
    for s in (live["spiffe_web"], resumed):
        assert echo_ok(s), "a listed identity's connection was cut by a later edit"
        s.close()
    assert len(tg.events("connection_revoked")) == 4
    assert nothing_relayed(be)


def test_allow_file_https_request_in_flight_then_close(hserve, pki, who, tmp_path):
    """https: removing spiffe_db from the file closes its idle keep-alive
    connection at once and its busy one after the response in flight;
    spiffe_web's keep-alive connection keeps serving."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    gate = threading.Event()

    def handler(req):
        if req.target == "/slow":
            gate.wait(T(10))
        return Reply(body=b"done")
    tg, be = hserve(https_listener(mode="mutual", tls_extra={"allow_file": str(allow)}),
                    handler=handler, client_cas=file_cfg(pki))
    web = Client(tg.addr(), pki, cert=who["spiffe_web"])
    idle = Client(tg.addr(), pki, cert=who["spiffe_db"])
    busy = Client(tg.addr(), pki, cert=who["spiffe_db"])
    assert web.request("GET", "/w").status == 200 and idle.request("GET", "/i").status == 200
    busy.send(build("GET", "/slow"))
    wait_for(lambda: any(q.target == "/slow" for q in be.reqs()), T(10), what="/slow at backend")
    write_allow(allow, f"san_uri {WEB}")
    tg.wait_event("connection_revoked", timeout=T(10), action="close", reason="not_allowed")
    tg.wait_event("connection_revoked", timeout=T(10), action="close_after_request",
                  reason="not_allowed")
    assert idle.closed_by_peer(), "the idle keep-alive connection is still open"
    gate.set()
    r = busy.response()
    assert r.status == 200 and r.body == b"done", "the request in flight was cut"
    assert busy.closed_by_peer(), "the connection stayed open after its request"
    assert web.request("GET", "/w2").status == 200, "the twin: spiffe_web was cut"
    assert https_get(tg.addr(), ctx_of(pki, who, "spiffe_db"), "/new").status is None
    assert not [q for q in be.reqs() if q.target == "/new"]
    for c in (web, idle, busy):
        c.close()


def test_optional_removed_identity_is_never_verified_again(hserve, pki, who, tmp_path):
    """optional: once spiffe_db is removed from the file, its keep-alive
    connection is closed and the session it made while listed does not
    resume: its next request says FAILED:not_allowed, never SUCCESS.
    Twin: spiffe_web resumes with SUCCESS."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    tg, be = hserve(https_listener(mode="mutual", client_auth="optional",
                                   tls_extra={"allow_file": str(allow)}),
                    client_cas=file_cfg(pki))
    ctx = {n: ctx_of(pki, who, n, "1.3") for n in ("spiffe_web", "spiffe_db")}
    sess = {n: https_get(tg.addr(), c, f"/first/{n}").session for n, c in ctx.items()}
    kept = Client(tg.addr(), pki, cert=who["spiffe_db"])
    assert kept.request("GET", "/kept").status == 200
    write_allow(allow, f"san_uri {WEB}")
    tg.wait_event("allow_applied", timeout=T(10))
    assert kept.closed_by_peer(), "a removed identity's connection stayed verified"
    kept.close()
    for n, c in ctx.items():
        r = https_get(tg.addr(), c, f"/again/{n}", sess[n])
        assert r.status == 200 and r.reused == (n == "spiffe_web"), (n, r.status, r.reused)
    got = {r.target: r.get("X-Client-Verify") for r in be.reqs()}
    assert got["/first/spiffe_db"] == "SUCCESS" and got["/first/spiffe_web"] == "SUCCESS"
    assert got["/again/spiffe_db"] == "FAILED:not_allowed", got
    assert got["/again/spiffe_web"] == "SUCCESS"
    assert sorted(got) == ["/again/spiffe_db", "/again/spiffe_web", "/first/spiffe_db",
                           "/first/spiffe_web", "/kept"]


def test_bad_allow_file_is_refused_and_the_previous_list_stays(tollgate, backend, pki, who,
                                                               tmp_path):
    """A new allow file with a bad line is refused (allow_reload_failed with
    FILE:LINE:COL, action=keep_previous): spiffe_web (listed) still gets in,
    spiffe_db (removed earlier, back in the bad file) stays out, a live
    connection is untouched. The inline allow still counts beside the file.
    A deleted file is refused the same way. A good file after it is loaded."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    be = backend()
    tls = {"allow_file": str(allow), "allow": [{"san_email": "*@partner.example"}]}
    tg = tollgate({"client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
                   "listeners": [listener(mode="mutual", tls_extra=tls)]})
    ctx = {n: ctx_of(pki, who, n) for n in ("spiffe_web", "spiffe_db", "mail", "spiffe_other")}
    write_allow(allow, f"san_uri {WEB}")
    tg.wait_event("allow_applied", timeout=T(10))
    live = tg_tls.connect(tg.addr(), ctx["spiffe_web"])
    assert echo_ok(live)

    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}", "san_ur spiffe://x/*",
                "san_ip 10.0.0.0/33")
    ev = tg.wait_event("allow_reload_failed", timeout=T(10))[0]
    assert ev["action"] == "keep_previous" and ev["listener"] == "main", ev["_line"]
    assert ev["error"].startswith(f"{allow}:3:1: "), ev["_line"]
    assert 'did you mean "san_uri"' in ev["error"], ev["_line"]
    assert tg_tls.attempt(tg.addr(), ctx["spiffe_web"], b"ok\n")[0], "the previous list left"
    assert not tg_tls.attempt(tg.addr(), ctx["spiffe_db"])[0], "a bad file was half applied"
    assert tg_tls.attempt(tg.addr(), ctx["mail"], b"ok\n")[0], "the inline allow stopped counting"
    assert not tg_tls.attempt(tg.addr(), ctx["spiffe_other"])[0]
    assert echo_ok(live), "a refused file touched a live connection"
    assert len(tg.events("allow_reloaded")) == 1
    assert all(e["reason"] == "not_allowed" for e in tg.rejections())

    allow.unlink()
    ev = tg.wait_event("allow_reload_failed", timeout=T(10), count=2)[1]
    assert "cannot read" in ev["error"] and ev["action"] == "keep_previous", ev["_line"]
    assert tg_tls.attempt(tg.addr(), ctx["spiffe_web"], b"ok\n")[0], "a deleted file let nobody in"
    assert not tg_tls.attempt(tg.addr(), ctx["spiffe_other"])[0], "a deleted file let all in"
    assert echo_ok(live)

    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    tg.wait_event("allow_reloaded", timeout=T(10), count=2)
    tg.wait_event("allow_applied", timeout=T(10), count=2)
    assert tg_tls.attempt(tg.addr(), ctx["spiffe_db"], b"back\n")[0], "the good file: still out"
    assert echo_ok(live)
    live.close()
    assert not tg.events("connection_revoked")


@pytest.mark.parametrize("how", ["empty_list", "null", "emptied_file"])
def test_an_empty_allow_list_lets_nobody_in(tollgate, backend, pki, who, tmp_path, how):
    """`allow: []`, `allow:` (null) and an allow file emptied under a live
    connection fail closed: the client is refused (its connection cut),
    never let in as if there were no list."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, f"san_uri {WEB}")
    tls = {"empty_list": {"allow": []}, "null": {"allow": None},
           "emptied_file": {"allow_file": str(allow)}}[how]
    be = backend()
    tg = tollgate({"client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
                   "listeners": [listener(mode="mutual", tls_extra=tls)]})
    ctx = ctx_of(pki, who, "spiffe_web")
    if how == "emptied_file":
        live = tg_tls.connect(tg.addr(), ctx)
        assert echo_ok(live), "the twin: listed in the file, let in"
        write_allow(allow, "# nobody", "")
        tg.wait_event("allow_applied", timeout=T(10))
        assert tg.wait_event("connection_revoked", timeout=T(10))[0]["reason"] == "not_allowed"
        assert is_closed(live)
    ok, _, port = tg_tls.attempt(tg.addr(), ctx, PAYLOAD)
    assert not ok, "an empty allow-list let a client in"
    refused(tg, port, "CN=ident-spiffe-web")
    assert nothing_relayed(be)


def test_allow_file_change_during_a_handshake(tollgate, backend, pki, who, tmp_path):
    """spiffe_db's certificate judged while listed, removed from the file
    before its Finished: refused when the handshake ends ("judged again"),
    not one byte relayed. Twin: the same held handshake with no change."""
    allow = tmp_path / "clients.allow"
    write_allow(allow, f"san_uri {WEB}", f"san_uri {DB}")
    be = backend()
    tg = tollgate({"client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
                   "listeners": [listener(mode="mutual", tls_extra={"allow_file": str(allow)})]})

    def held(change, payload):
        return tg_tls.held_handshake(tg.addr(), ctx_of(pki, who, "spiffe_db", "1.3"), change,
                                     payload, pause=0.2)

    assert held(lambda: None, b"held\n") == b"held\n", "the twin: a held handshake completes"

    def remove():
        write_allow(allow, f"san_uri {WEB}")
        tg.wait_event("allow_applied", timeout=T(10))
    assert held(remove, PAYLOAD) == b"", "a client removed during its handshake got through"
    rej = wait_for(lambda: tg.rejections(), T(10), what="the late refusal")[0]
    assert rej["reason"] == "not_allowed" and "judged again" in rej["detail"], rej["_line"]
    assert nothing_relayed(be)


def test_reload_judges_old_sessions_under_the_new_inline_list(tollgate, backend, pki, who):
    """A reload that drops spiffe_db from `allow`: its session from the old
    generation does not resume in the new one (resumption_refused
    not_allowed, then refused); spiffe_web's still resumes (twin)."""
    be = backend()
    cfg = {"client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
           "listeners": [listener(mode="mutual",
                                  tls_extra={"allow": [{"san_uri": WEB}, {"san_uri": DB}]})]}
    tg = tollgate(cfg)
    ctx = {n: ctx_of(pki, who, n, "1.3") for n in ("spiffe_web", "spiffe_db")}
    sess = {n: tg_tls.roundtrip(tg.addr(), c, b"a\n")[1]["session"] for n, c in ctx.items()}
    cfg["listeners"][0]["tls"]["allow"] = [{"san_uri": WEB}]
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("ready", generation=2)
    ok, _, port = tg_tls.attempt(tg.addr(), ctx["spiffe_db"], PAYLOAD, session=sess["spiffe_db"])
    assert not ok, "a session outlived its identity's removal from the list"
    assert tg.wait_event("resumption_refused")[0]["reason"] == "not_allowed"
    refused(tg, port, "CN=ident-spiffe-db")
    with tg_tls.connect(tg.addr(), ctx["spiffe_web"], session=sess["spiffe_web"]) as s:
        assert s.session_reused and echo_ok(s), "the twin: spiffe_web's session must resume"
    assert nothing_relayed(be)


# ---- 6: sni entries ----

def test_sni_entries_own_and_inherited_lists(tollgate, backend, pki, who, tmp_path):
    """The listener: allow {subject_cn: ident-mail} and a file (spiffe_web,
    spiffe_db). inherit.test sets neither: it takes both. own.test has its
    own allow (ns/data only); file.test its own allow_file (the DNS
    identity): neither takes anything of the listener's. Then removing
    spiffe_db from the listener's file cuts its connection judged under
    inherit.test and not the one under own.test."""
    lfile, efile = tmp_path / "listener.allow", tmp_path / "entry.allow"
    write_allow(lfile, f"san_uri {WEB}", f"san_uri {DB}")
    write_allow(efile, "san_dns svc.partner.example")
    be = backend()
    tls = {"allow": [{"subject_cn": "ident-mail"}], "allow_file": str(lfile), "sni": [
        {"names": ["inherit.test"]},
        {"names": ["own.test"], "allow": [{"san_uri": "spiffe://prod.example/ns/data/*"}]},
        {"names": ["file.test"], "allow_file": str(efile)}]}
    tg = tollgate({"client_cas": file_cfg(pki), "target_groups": {"g": group(be.address)},
                   "listeners": [listener(mode="mutual", tls_extra=tls)]})
    want = {"localhost": ({"spiffe_web", "spiffe_db", "mail"}, {"dns", "spiffe_other"}),
            "inherit.test": ({"spiffe_web", "spiffe_db", "mail"}, {"dns", "spiffe_other"}),
            "own.test": ({"spiffe_db"}, {"spiffe_web", "mail"}),
            "file.test": ({"dns"}, {"spiffe_web", "mail", "spiffe_db"})}
    for sni, (ins, outs) in want.items():
        for n in sorted(ins):
            got, _ = tg_tls.roundtrip(tg.addr(), ctx_of(pki, who, n), b"in\n",
                                      server_hostname=sni)
            assert got == b"in\n", f"{n} refused under {sni}"
        for n in sorted(outs):
            ok, _, p = tg_tls.attempt(tg.addr(), ctx_of(pki, who, n), PAYLOAD,
                                      server_hostname=sni)
            assert not ok, f"{n} let in under {sni}"
            assert refused(tg, p, cn(who, n))["sni"] == sni
    assert nothing_relayed(be)

    ctx = ctx_of(pki, who, "spiffe_db", "1.3")
    via = {sni: tg_tls.connect(tg.addr(), ctx, server_hostname=sni)
           for sni in ("inherit.test", "own.test")}
    assert all(echo_ok(s) for s in via.values())
    write_allow(lfile, f"san_uri {WEB}")
    tg.wait_event("allow_applied", timeout=T(10))
    cut = tg.wait_event("connection_revoked", timeout=T(10))[0]
    assert cut["reason"] == "not_allowed"
    assert is_closed(via["inherit.test"]), "the inherited list's change spared a connection"
    assert echo_ok(via["own.test"]), "a site with its own list was judged by the listener's"
    assert not tg_tls.attempt(tg.addr(), ctx, server_hostname="inherit.test")[0]
    assert tg_tls.attempt(tg.addr(), ctx, b"ok\n", server_hostname="own.test")[0]
    assert len(tg.events("connection_revoked")) == 1
    via["own.test"].close()


# ---- 7: rules on the client identity ----

def routed(hserve, hbackend, listener_dict):
    """tollgate with groups g (backend a, the default) and db (backend b)."""
    a, b = hbackend(), hbackend()
    tg, _ = hserve(listener_dict, groups={"g": group(a.address), "db": group(b.address)})
    return tg, a, b


def test_client_rules_route_on_the_identity(hserve, hbackend, pki, who):
    """{client: ns/data/*} sends spiffe_db to db, spiffe_web to the
    default; on /api a client rule beats the same rule without client
    (listed first); a longer path without client beats it on /api/v2."""
    rules = [{"path": "/api", "target_group": "g"},
             {"client": {"san_uri": "spiffe://prod.example/ns/data/*"}, "target_group": "db"},
             {"path": "/api", "client": {"san_uri": "spiffe://prod.example/ns/data/*"},
              "target_group": "db"},
             {"path": "/api/v2", "target_group": "g"}]
    tg, a, b = routed(hserve, hbackend, https_listener(mode="mutual", rules=rules))
    for n in ("spiffe_db", "spiffe_web"):
        for path in ("/x", "/api/x", "/api/v2/x"):
            assert https_get(tg.addr(), ctx_of(pki, who, n), f"{path}/{n}").status == 200
    assert sorted(r.target for r in b.reqs()) == ["/api/x/spiffe_db", "/x/spiffe_db"]
    assert sorted(r.target for r in a.reqs()) == ["/api/v2/x/spiffe_db", "/api/v2/x/spiffe_web",
                                                  "/api/x/spiffe_web", "/x/spiffe_web"]


def test_client_rule_needs_a_verified_certificate(hserve, hbackend, pki, who):
    """optional, no allow-list: the rule {client: {san_uri: DB}} routes
    spiffe_db (verified) to db; a client without certificate, and a
    self-signed certificate carrying the same CN and URI (FAILED), go to
    the default, on HTTP/1.1 and per HTTP/2 stream."""
    rules = [{"client": {"san_uri": DB, "subject_cn": "ident-spiffe-db"}, "target_group": "db"}]
    tg, a, b = routed(hserve, hbackend,
                      https_listener(mode="mutual", client_auth="optional", rules=rules))
    for n in ("spiffe_db", None, "db_self"):
        assert https_get(tg.addr(), ctx_of(pki, who, n), f"/h1/{n}").status == 200
    with H2Client(tg.addr(), pki, cert=who["db_self"]) as c:
        assert c.get("/h2/db_self")[0] == 200
    with H2Client(tg.addr(), pki, cert=who["spiffe_db"]) as c:
        assert c.get("/h2/spiffe_db")[0] == 200
    assert sorted(r.target for r in b.reqs()) == ["/h1/spiffe_db", "/h2/spiffe_db"]
    assert sorted(r.target for r in a.reqs()) == ["/h1/None", "/h1/db_self", "/h2/db_self"]
    verdict = {r.target: r.get("X-Client-Verify") for r in a.reqs()}
    assert verdict["/h1/db_self"] == "FAILED:self_signed" and verdict["/h1/None"] == "NONE"


# ---- 8: tollgate check ----

def check_cfg(tmp_path, pki, tls_lines, protocol="tcp_ssl", rules=(), name="c.yaml"):
    """A config whose listener's tls block starts at line 12 (its keys at
    column 7); rules follow it. Returns (CompletedProcess, path)."""
    lines = [
        "certificates:",                                                          # 1
        f"  site: {{ cert: {pki.path('server-ecdsa.crt')}, "
        f"key: {pki.path('server-ecdsa.key')} }}",                                # 2
        "client_cas:",                                                            # 3
        f"  pki: {{ ca: {pki.path('root.crt')} }}",                               # 4
        "target_groups:",                                                         # 5
        "  g: { targets: [ { address: \"127.0.0.1:9\" } ] }",                     # 6
        "listeners:",                                                             # 7
        "  - name: a",                                                            # 8
        f"    protocol: {protocol}",                                              # 9
        f"    listen: 127.0.0.1:{free_port()}",                                   # 10
        "    target_group: g" if protocol == "tcp_ssl" else "    default_target_group: g",
    ]
    if protocol != "http":
        lines.append("    tls:")                                                   # 12
        lines += [f"      {ln}" for ln in tls_lines]
    if rules:
        lines.append("    rules:")
        lines += [f"      - {r}" for r in rules]
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return run_tollgate(["check", "-c", str(p)]), p


MUTUAL = ["mode: mutual", "client_ca: pki", "certificates: [site]"]   # lines 13-15


# id: (matcher on line 17, its column, the key reported, what the message says)
BAD_MATCHERS = {
    "empty": ("{}", 11, "allow[0]", "an empty matcher would match every client"),
    "unknown_field": ('{ san_url: "spiffe://x/*" }', 13, "allow[0].san_url",
                      'unknown field "san_url"; did you mean "san_uri"? (fields: subject_cn'),
    "cn_empty": ('{ subject_cn: "" }', 13, "allow[0].subject_cn", "must not be empty"),
    "cn_control": ('{ subject_cn: "a\\x01b" }', 13, "allow[0].subject_cn", "no control characters"),
    "issuer_tab": ('{ issuer: "a\\tb" }', 13, "allow[0].issuer", "no control characters"),
    "issuer_too_long": (f'{{ issuer: "{"x" * 1025}" }}', 13, "allow[0].issuer", "1-1024 bytes"),
    "dns_empty_label": ("{ san_dns: bad..example }", 13, "allow[0].san_dns", "empty label"),
    "dns_underscore": ("{ san_dns: a_b.example }", 13, "allow[0].san_dns",
                       "letters, digits, '-', '.' and '*'"),
    "uri_no_scheme": ("{ san_uri: prod.example/x }", 13, "allow[0].san_uri",
                      "starts with its scheme"),
    "uri_empty_scheme": ('{ san_uri: ":x" }', 13, "allow[0].san_uri", "starts with its scheme"),
    "email_no_at": ("{ san_email: partner.example }", 13, "allow[0].san_email", "holds '@'"),
    "ip_v4_prefix": ('{ san_ip: "10.0.0.0/33" }', 13, "allow[0].san_ip", "prefix length"),
    "ip_short": ('{ san_ip: "10.1.2" }', 13, "allow[0].san_ip", ""),
    "ip_v6_prefix": ('{ san_ip: "2001:db8::/129" }', 13, "allow[0].san_ip", "prefix length"),
    "fingerprint_63": ('{ fingerprint_sha256: "' + "a" * 63 + '" }', 13,
                       "allow[0].fingerprint_sha256", "64 hex digits"),
    "fingerprint_pairs": ('{ fingerprint_sha256: "' + "ab:" * 31 + 'a:b" }', 13,
                          "allow[0].fingerprint_sha256", "64 hex digits"),
    "spki_not_hex": ('{ spki_sha256: "' + "g" * 64 + '" }', 13, "allow[0].spki_sha256",
                     "base64"),
    "spki_31_bytes": ('{ spki_sha256: "' + base64.b64encode(b"x" * 31).decode() + '" }', 13,
                      "allow[0].spki_sha256", "base64"),
    "serial_not_hex": ("{ serial: zz }", 13, "allow[0].serial", "1-40 hex digits"),
    "serial_41": ('{ serial: "' + "1" * 41 + '" }', 13, "allow[0].serial", "1-40 hex digits"),
    "second_field": ('{ san_uri: "spiffe://x/*", serial: "0x1" }', 38, "allow[0].serial",
                     "hex digits"),
}


@pytest.mark.parametrize("case", sorted(BAD_MATCHERS))
def test_check_refuses_a_bad_matcher(tmp_path, pki, case):
    matcher, col, key, needle = BAD_MATCHERS[case]
    r, p = check_cfg(tmp_path, pki, MUTUAL + ["allow:", f"  - {matcher}"])    # line 17
    assert r.returncode == 1, r.stderr
    want = f"{p}:17:{col}: listeners[0].tls.{key}: "
    line = [ln for ln in r.stderr.splitlines() if ln.startswith(want)]
    assert line and needle in line[0], f"want {want}...{needle}:\n{r.stderr}"
    assert "1 error" in r.stderr, r.stderr


def test_check_suggests_the_field_for_a_misspelt_matcher_key(tmp_path, pki):
    r, _ = check_cfg(tmp_path, pki, MUTUAL + ["allow:", '  - { san_url: "spiffe://x/*" }'])
    assert r.returncode == 1 and 'did you mean "san_uri"' in r.stderr, r.stderr


def test_check_takes_every_field_well_written(tmp_path, pki, who):
    """The twin of the bad patterns: every field, every accepted spelling."""
    fp = tg_certs.fingerprint_sha256(who["spiffe_web"][0])
    spki = tg_certs.spki_sha256(who["spiffe_web"][0])
    matchers = [
        '{ subject_cn: "ident-*", issuer: "CN=tollgate dev*" }',
        '{ san_dns: "*.partner.example" }', f'{{ san_uri: "{WEB}" }}',
        '{ san_email: "*@partner.example" }', '{ san_ip: "10.0.0.0/8" }',
        '{ san_ip: "2001:db8::/32" }', '{ san_ip: "10.1.2.3" }',
        f'{{ fingerprint_sha256: "{pairs(fp).upper()}" }}', f'{{ fingerprint_sha256: "{fp}" }}',
        f'{{ spki_sha256: "{spki}" }}', f'{{ spki_sha256: "{spki_b64(who["spiffe_web"][0])}" }}',
        '{ serial: "00:0A:ff" }', '{ serial: "1" }']
    r, _ = check_cfg(tmp_path, pki, MUTUAL + ["allow:"] + [f"  - {m}" for m in matchers])
    assert r.returncode == 0, r.stderr
    assert "error" not in r.stderr and "warning" not in r.stderr, r.stderr


@pytest.mark.parametrize("tls,at,needle", [
    (["certificates: [site]", "allow: [ { subject_cn: x } ]"], "14:7: listeners[0].tls.allow",
     "only used with mode: mutual"),
    (["mode: one-way", "certificates: [site]", "allow_file: /nonexistent"],
     "15:7: listeners[0].tls.allow_file", "only used with mode: mutual"),
    (["certificates: [site]", "sni:",
      "  - { names: [a.test], allow: [ { subject_cn: x } ] }"],
     "15:30: listeners[0].tls.sni[0].allow", "this entry is one-way"),
    (MUTUAL + ["allow_file: /nonexistent/e2e.allow"], "16:7: listeners[0].tls.allow_file",
     'cannot read allow file "/nonexistent/e2e.allow"'),
], ids=["one_way_listener", "allow_file_one_way", "one_way_sni_entry", "missing_file"])
def test_check_refuses_allow_where_it_means_nothing(tmp_path, pki, tls, at, needle):
    r, p = check_cfg(tmp_path, pki, tls)
    assert r.returncode == 1, r.stderr
    assert needle in r.stderr and f"{p}:{at}" in r.stderr, r.stderr


def test_check_reports_each_bad_line_of_an_allow_file(tmp_path, pki):
    """Every bad line at FILE:LINE:COL (the column of what is wrong), the
    config's allow_file key too; the same file, fixed, passes (twin)."""
    f = tmp_path / "partners.allow"
    f.write_text("# partners\n"                                 # 1
                 f"san_uri {WEB}\n"                              # 2
                 "\n"                                            # 3
                 "san_ur spiffe://x/*\n"                         # 4
                 "  san_dns \t bad..name\n"                      # 5
                 "fingerprint_sha256 abc\n"                      # 6
                 "san_email\n"                                   # 7
                 "\tsan_ip   10.0.0.0/33   \r\n"                 # 8
                 "serial 0a:0b\n")                               # 9
    r, p = check_cfg(tmp_path, pki, MUTUAL + [f"allow_file: {f}"])            # line 16
    assert r.returncode == 1, r.stderr
    for at, needle in (("4:1: ", 'unknown field "san_ur"; did you mean "san_uri"?'),
                       ("5:13: san_dns: ", "empty label"),
                       ("6:20: fingerprint_sha256: ", "64 hex digits"),
                       ("7:1: san_email: ", "a value is needed"),
                       ("8:11: san_ip: ", "prefix length")):
        line = [ln for ln in r.stderr.splitlines() if ln.startswith(f"{f}:{at}")]
        assert line and needle in line[0], f"{f}:{at}{needle}:\n{r.stderr}"
    assert f"{f}:2:" not in r.stderr and f"{f}:9:" not in r.stderr, r.stderr
    assert f"{p}:16:7: listeners[0].tls.allow_file: the allow file does not load" in r.stderr
    f.write_text(f"# partners\nsan_uri {WEB}\n\n  san_dns \t *.partner.example\r\nserial 0a:0b\n")
    r, _ = check_cfg(tmp_path, pki, MUTUAL + [f"allow_file: {f}"], name="d.yaml")
    assert r.returncode == 0, r.stderr


def test_check_rule_client_outside_a_mutual_https_listener(tmp_path, pki):
    """A rule's client on http is an error; on https with no mutual site a
    warning (exit 0); with a mutual sni entry neither (twin); tcp_ssl has
    no rules at all."""
    rule = '{ client: { san_uri: "spiffe://prod.example/*" }, target_group: g }'
    r, p = check_cfg(tmp_path, pki, [], protocol="http", rules=[rule])
    assert r.returncode == 1, r.stderr
    assert f"{p}:13:11: listeners[0].rules[0].client: only used with protocol https" in r.stderr
    r, p = check_cfg(tmp_path, pki, ["certificates: [site]"], protocol="https", rules=[rule],
                     name="d.yaml")
    assert r.returncode == 0, r.stderr
    assert f"{p}:15:11: warning: listeners[0].rules[0].client: no site of this listener is " \
           "mutual" in r.stderr, r.stderr
    r, p = check_cfg(tmp_path, pki, ["certificates: [site]", "sni:",
                                     "  - { names: [a.test], mode: mutual, client_ca: pki }"],
                     protocol="https", rules=[rule], name="e.yaml")
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
    r, p = check_cfg(tmp_path, pki, MUTUAL, rules=[rule], name="f.yaml")  # tcp_ssl: no rules
    assert r.returncode == 1, r.stderr
    assert f"{p}:16:5: listeners[0].rules: only used with protocol https or http" in r.stderr
