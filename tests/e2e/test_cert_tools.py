"""`tollgate cert inspect|verify|match|convert` and `tollgate probe`, against
the run's PKI (`tollgate pki init`), purpose-made bad inputs, and tollgate's
own one-way and mutual listeners. Every accepting case has a rejecting twin."""

import os
import pty
import select
import stat
import time
from pathlib import Path

import pytest

import tg_certs
from certtools_helpers import (Inputs, RawServer, closed_port, fingerprint, tollgate,
                               tollgate_json)
from tg_proc import TOLLGATE_BIN, T, group, listener


@pytest.fixture(scope="session")
def inputs(tmp_path_factory, pki, bad_certs):
    return Inputs(tmp_path_factory.mktemp("certtools"), pki, bad_certs)


def warning_codes(file_json):
    return sorted(w["code"] for w in file_json["warnings"])


def inspect_one(*args):
    r, j = tollgate_json("cert", "inspect", *args)
    assert r.returncode == 0, r.stderr
    assert len(j["files"]) == 1
    return j["files"][0]


def fps(file_json):
    return [c["sha256_fingerprint"] for c in file_json["certificates"]]


# ---- inspect -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["root.crt", "intermediate.crt", "ca-bundle.crt",
                                  "server-ecdsa.crt", "server-rsa.crt", "alice.crt"])
def test_inspect_pki_files(pki, name):
    f = inspect_one(pki.path(name))
    want = [fingerprint(c) for c in tg_certs.load_certs(pki.path(name))]
    assert fps(f) == want
    assert f["warnings"] == []
    assert f["chain"] == list(range(1, len(want) + 1))
    for c, x in zip(f["certificates"], tg_certs.load_certs(pki.path(name))):
        assert c["serial"].replace(":", "").lstrip("0") == f"{x.serial_number:X}".lstrip("0")
        assert c["days_left"] > 300


def test_inspect_shows_everything_in_text(pki):
    r = tollgate("cert", "inspect", pki.path("server-ecdsa.crt"))
    assert r.returncode == 0, r.stderr
    out = r.stdout
    for want in ("subject      CN=localhost", "SANs         DNS:localhost, IP:127.0.0.1, IP:::1",
                 "key          EC P-256", "signature    ecdsa-with-SHA256", "EKU          serverAuth",
                 "CA           yes, path length 0", "key usage    digitalSignature",
                 "chain (leaf first): 1 CN=localhost", "days left", "no warnings"):
        assert want in out, out
    leaf = tg_certs.load_cert(pki.path("server-ecdsa.crt"))
    assert f"SHA-256      {fingerprint(leaf)}" in out


def test_inspect_p12_needs_its_password(pki, inputs):
    f = inspect_one(pki.path("alice.p12"), "--password-file", pki.path("p12-password.txt"))
    assert fps(f) == [fingerprint(c) for c in tg_certs.load_certs(pki.path("alice.crt"))]
    assert f["format"] == "PKCS#12"
    assert f["key"]["matches"] == 1 and f["key"]["type"] == "EC P-256"
    # Twins: no password (and no terminal to ask on), a wrong one.
    r = tollgate("cert", "inspect", pki.path("alice.p12"))
    assert r.returncode == 1 and "--password-file" in r.stderr, r.stderr
    r = tollgate("cert", "inspect", pki.path("alice.p12"), "--password-file",
                 inputs.path("wrong-password.txt"))
    assert r.returncode == 1 and "wrong password" in r.stderr, r.stderr


@pytest.mark.parametrize("name,fmt", [("server.der", "DER certificate"),
                                      ("server.p7b", "PKCS#7 (DER)"),
                                      ("legacy.p12", "PKCS#12"), ("server.p12", "PKCS#12")])
def test_inspect_other_formats(inputs, name, fmt):
    f = inspect_one(inputs.path(name), "--password-file", inputs.path("password.txt"))
    assert f["format"] == fmt
    assert fingerprint(inputs.leaf) in fps(f)


@pytest.mark.parametrize("name,codes", [
    ("reversed.crt", ["out_of_order"]),
    ("no-intermediate.crt", ["missing_intermediate"]),
    ("leaf-only.crt", []),
])
def test_inspect_chain_problems(inputs, name, codes):
    f = inspect_one(inputs.path(name))
    assert warning_codes(f) == codes, f["warnings"]


def test_inspect_reversed_chain_is_shown_leaf_first(inputs):
    f = inspect_one(inputs.path("reversed.crt"))
    assert f["chain"] == [2, 1]


@pytest.mark.parametrize("kind,codes", [("expired", ["expired"]),
                                        ("not_yet_valid", ["not_yet_valid"]),
                                        ("server_expiring", ["expiring_soon"]),
                                        ("server_fresh", [])])
def test_inspect_dates(bad_certs, kind, codes):
    f = inspect_one(bad_certs[kind][0])
    assert warning_codes(f) == codes, f["warnings"]


@pytest.mark.parametrize("name,message", [("truncated.crt", "truncated or corrupt"),
                                          ("truncated.der", "truncated"),
                                          ("garbage.bin", "not a certificate or key"),
                                          ("missing.crt", "cannot open")])
def test_inspect_unreadable_files(inputs, name, message):
    r = tollgate("cert", "inspect", inputs.path(name))
    assert r.returncode == 1
    assert inputs.path(name) in r.stderr and message in r.stderr, r.stderr


def test_inspect_usage(pki):
    assert tollgate("cert", "inspect").returncode == 2
    assert tollgate("cert", "inspect", "--nope", pki.path("root.crt")).returncode == 2
    assert tollgate("cert").returncode == 2


# ---- verify --------------------------------------------------------------------

def verify(*args):
    r, j = tollgate_json("cert", "verify", *args)
    verdicts = {c["check"]: c["verdict"] for c in j["checks"]}
    assert list(verdicts) == ["dates", "revocation", "trust", "purpose", "name"]
    return r, j, verdicts


def test_verify_server_certificate(pki):
    r, j, v = verify(pki.path("server-ecdsa.crt"), "--ca", pki.path("ca-bundle.crt"),
                     "--host", "localhost", "--purpose", "server", "--crl", pki.path("clients.crl"))
    assert r.returncode == 0, j
    assert v == {"dates": "pass", "revocation": "pass", "trust": "pass", "purpose": "pass",
                 "name": "pass"}
    assert j["ok"] is True and j["reason"] is None
    r = tollgate("cert", "verify", pki.path("server-rsa.crt"), "--ca", pki.path("root.crt"),
                 "--host", "127.0.0.1")
    assert r.returncode == 0 and "result: OK" in r.stdout, r.stdout


def rejected(args, check, reason):
    r, j, v = verify(*args)
    assert r.returncode == 1, j
    assert j["reason"] == reason, j
    failed = [c for c, verdict in v.items() if verdict == "fail"]
    assert failed == [check], j["checks"]
    return j


def test_verify_wrong_name(pki):
    j = rejected([pki.path("server-ecdsa.crt"), "--ca", pki.path("root.crt"),
                  "--host", "www.example.com"], "name", "name_mismatch")
    detail = j["checks"][4]["detail"]
    assert "DNS:localhost" in detail and "www.example.com" in detail


def test_verify_purpose(pki, bad_certs):
    rejected([pki.path("server-ecdsa.crt"), "--ca", pki.path("root.crt"), "--purpose", "client"],
             "purpose", "wrong_purpose")
    rejected([bad_certs["server_only"][0], "--ca", pki.path("root.crt"), "--purpose", "client"],
             "purpose", "wrong_purpose")
    r, _, _ = verify(bad_certs["good_minted"][0], "--ca", pki.path("root.crt"), "--purpose",
                     "client")
    assert r.returncode == 0


def test_verify_dates(pki, bad_certs):
    root = pki.path("root.crt")
    rejected([bad_certs["expired"][0], "--ca", root], "dates", "cert_expired")
    rejected([bad_certs["not_yet_valid"][0], "--ca", root], "dates", "cert_not_yet_valid")
    # --at moves the clock: the not-yet-valid one is fine in 20 days, a good
    # one is expired in two years.
    later = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 20 * 86400))
    r, _, _ = verify(bad_certs["not_yet_valid"][0], "--ca", root, "--at", later)
    assert r.returncode == 0
    much_later = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 730 * 86400))
    rejected([pki.path("alice.crt"), "--ca", root, "--at", much_later], "dates", "cert_expired")


def test_verify_revocation(pki):
    root, crl = pki.path("root.crt"), pki.path("clients.crl")
    r, _, v = verify(pki.path("alice.crt"), "--ca", root, "--crl", crl)
    assert r.returncode == 0 and v["revocation"] == "pass"
    j = rejected([pki.path("revoked.crt"), "--ca", root, "--crl", crl], "revocation",
                 "cert_revoked")
    assert "revoked" in j["checks"][1]["detail"]
    r, _, v = verify(pki.path("revoked.crt"), "--ca", root)
    assert r.returncode == 0 and v["revocation"] == "skip"


def test_verify_trust(pki, foreign_pki, bad_certs, inputs):
    rejected([pki.path("alice.crt"), "--ca", foreign_pki.path("root.crt")], "trust", "unknown_ca")
    rejected([bad_certs["self_signed"][0], "--ca", pki.path("root.crt")], "trust", "self_signed")
    j = rejected([inputs.path("leaf-only.crt"), "--ca", pki.path("root.crt")], "trust",
                 "unknown_ca")
    assert "missing intermediate" in j["checks"][2]["detail"]
    rejected([inputs.path("no-intermediate.crt"), "--ca", pki.path("root.crt")], "trust",
             "unknown_ca")
    # The order in the file does not matter to a verifier.
    r, _, _ = verify(inputs.path("reversed.crt"), "--ca", pki.path("root.crt"), "--host",
                     "localhost")
    assert r.returncode == 0
    r, _, _ = verify(inputs.path("server.p12"), "--ca", pki.path("root.crt"), "--password-file",
                     inputs.path("password.txt"))
    assert r.returncode == 0


def test_verify_bad_input_files(pki, inputs):
    r = tollgate("cert", "verify", inputs.path("garbage.bin"), "--ca", pki.path("root.crt"))
    assert r.returncode == 1 and "not a certificate" in r.stderr
    r = tollgate("cert", "verify", pki.path("alice.crt"), "--ca", inputs.path("missing.crt"))
    assert r.returncode == 2 and "--ca" in r.stderr
    r = tollgate("cert", "verify", pki.path("alice.crt"), "--purpose", "both")
    assert r.returncode == 2
    r = tollgate("cert", "verify", pki.path("alice.crt"), "--at", "next tuesday")
    assert r.returncode == 2


# ---- match ---------------------------------------------------------------------

@pytest.mark.parametrize("cert,key,extra", [
    ("pki:server-ecdsa.crt", "pki:server-ecdsa.key", []),
    ("pki:server-rsa.crt", "pki:server-rsa.key", []),
    ("in:ed.crt", "in:ed.key", []),
    ("pki:alice.p12", "pki:alice.p12", ["--password-file", "pki:p12-password.txt"]),
    ("pki:server-ecdsa.crt", "in:server-enc.key", ["--password-file", "in:password.txt"]),
])
def test_match_accepts_pairs(pki, inputs, cert, key, extra):
    def p(s):
        where, name = s.split(":", 1)
        return pki.path(name) if where == "pki" else inputs.path(name)
    r, j = tollgate_json("cert", "match", "--cert", p(cert), "--key", p(key),
                         *[p(a) if ":" in a else a for a in extra])
    assert r.returncode == 0, j
    assert j["match"] is True and j["key_spki_sha256"] == j["cert_spki_sha256"]


@pytest.mark.parametrize("cert,key,message", [
    ("pki:server-ecdsa.crt", "pki:server-rsa.key", "the key is RSA 2048"),
    ("pki:alice.crt", "pki:revoked.key", "the public keys differ"),
    ("in:ed.crt", "in:ed-other.key", "the public keys differ"),
])
def test_match_rejects_other_keys(pki, inputs, cert, key, message):
    def p(s):
        where, name = s.split(":", 1)
        return pki.path(name) if where == "pki" else inputs.path(name)
    r = tollgate("cert", "match", "--cert", p(cert), "--key", p(key))
    assert r.returncode == 1
    assert "result: MISMATCH" in r.stdout and message in r.stdout, r.stdout


def test_match_input_problems(pki, inputs):
    r = tollgate("cert", "match", "--cert", pki.path("server-ecdsa.crt"), "--key",
                 inputs.path("server-enc.key"), "--password-file", inputs.path("wrong-password.txt"))
    assert r.returncode == 1 and "wrong password" in r.stderr
    r = tollgate("cert", "match", "--cert", pki.path("alice.crt"), "--key", pki.path("alice.crt"))
    assert r.returncode == 1 and "no private key" in r.stderr
    assert tollgate("cert", "match", "--cert", pki.path("alice.crt")).returncode == 2


# ---- convert -------------------------------------------------------------------

def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("name", ["server.p12", "legacy.p12", "server.p7b", "server.der",
                                  "reversed.crt"])
def test_convert_round_trip(tmp_path, inputs, name):
    out = tmp_path / "out.pem"
    r = tollgate("cert", "convert", inputs.path(name), "-o", out, "--password-file",
                 inputs.path("password.txt"))
    assert r.returncode == 0, r.stderr
    assert mode(out) == 0o644
    got = inspect_one(str(out))
    assert got["warnings"] == []
    assert fps(got)[0] == fingerprint(inputs.leaf)
    before = inspect_one(inputs.path(name), "--password-file", inputs.path("password.txt"))
    assert sorted(fps(got)) == sorted(fps(before))
    key = tmp_path / "out.key"
    if name.endswith(".p12"):
        assert mode(key) == 0o600
        assert "BEGIN PRIVATE KEY" in key.read_text()
        m = tollgate("cert", "match", "--cert", out, "--key", key)
        assert m.returncode == 0, m.stdout
    else:
        assert not key.exists()


def test_convert_p12_from_pki_init(tmp_path, pki):
    out, key = tmp_path / "alice.pem", tmp_path / "alice-key.pem"
    r = tollgate("cert", "convert", pki.path("alice.p12"), "-o", out, "--key-out", key,
                 "--password-file", pki.path("p12-password.txt"))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes() == Path(pki.path("alice.crt")).read_bytes()
    assert mode(key) == 0o600


@pytest.mark.parametrize("name", ["server-enc.key", "server-trad-enc.key"])
def test_convert_decrypts_keys(tmp_path, pki, inputs, name):
    out = tmp_path / "plain.key"
    r = tollgate("cert", "convert", inputs.path(name), "-o", out, "--password-file",
                 inputs.path("password.txt"))
    assert r.returncode == 0, r.stderr
    assert mode(out) == 0o600 and "ENCRYPTED" not in out.read_text()
    assert tollgate("cert", "match", "--cert", pki.path("server-ecdsa.crt"), "--key",
                    out).returncode == 0
    # Twin: the wrong password writes nothing.
    out2 = tmp_path / "never.key"
    r = tollgate("cert", "convert", inputs.path(name), "-o", out2, "--password-file",
                 inputs.path("wrong-password.txt"))
    assert r.returncode == 1 and "wrong password" in r.stderr
    assert not out2.exists()


def test_convert_refusals(tmp_path, pki, inputs):
    for name, msg in (("garbage.bin", "not a certificate"), ("truncated.crt", "truncated"),
                      ("legacy.p12", "--password-file")):
        out = tmp_path / f"{name}.pem"
        r = tollgate("cert", "convert", inputs.path(name), "-o", out)
        assert r.returncode == 1 and msg in r.stderr, r.stderr
        assert not out.exists()
    r = tollgate("cert", "convert", pki.path("alice.crt"), "-o", tmp_path / "no" / "dir.pem")
    assert r.returncode == 1 and "cannot create" in r.stderr
    assert tollgate("cert", "convert", pki.path("alice.crt")).returncode == 2


# ---- forgiving loading: the daemon takes every format ---------------------------

@pytest.mark.parametrize("entry", [
    {"cert": "in:server.p12", "password_file": "in:password.txt"},
    {"cert": "in:legacy.p12", "password_file": "in:password.txt"},
    {"cert": "in:server.p7b", "key": "pki:server-ecdsa.key"},
    {"cert": "in:reversed.crt", "key": "in:server-enc.key", "password_file": "in:password.txt"},
])
def test_daemon_loads_any_format(tollgate, pki, inputs, entry):
    cfg_entry = {k: (pki.path(v[4:]) if v.startswith("pki:") else inputs.path(v[3:]))
                 for k, v in entry.items()}
    tg = tollgate({"certificates": {"site": cfg_entry},
                   "target_groups": {"g": group("builtin:echo")},
                   "listeners": [listener(certs=("site",))]})
    host, port = tg.addr()
    r, j = tollgate_json("probe", f"localhost:{port}", "--ca", pki.path("root.crt"),
                         timeout=T(20))
    assert r.returncode == 0, r.stdout
    # The chain is served leaf first whatever the order in the file.
    assert [c["sha256_fingerprint"] for c in j["server_chain"]] == [
        fingerprint(inputs.leaf), fingerprint(inputs.inter)]


# ---- probe ---------------------------------------------------------------------

@pytest.fixture
def live(tollgate):
    """tollgate with a one-way listener "o" and mutual ones "m" (required) and
    "strict" (strict SNI, TLS 1.3 only), all to the built-in echo."""
    return tollgate({
        "target_groups": {"g": group("builtin:echo")},
        "listeners": [
            listener("o"),
            listener("m", mode="mutual", client_auth="required"),
            listener("strict", tls_extra={"strict_sni": True, "policy": "modern"}),
        ],
    })


def probe(tg, name, *args):
    host, port = tg.addr(name)
    return tollgate_json("probe", f"localhost:{port}", *args, timeout=T(30))


def test_probe_one_way(live, pki):
    r, j = probe(live, "o", "--ca", pki.path("ca-bundle.crt"), "--crl", pki.path("clients.crl"))
    assert r.returncode == 0, r.stdout
    assert j["ok"] is True and j["outcome"]["accepted"] is True
    assert j["server_hello"]["version"] == "TLSv1.3"
    assert j["client_hello"]["versions"] == ["TLSv1.3", "TLSv1.2"]
    assert [c["verdict"] for c in j["checks"]] == ["pass"] * 5
    assert j["certificate_request"]["seen"] is False
    steps = [(s["dir"], s["message"]) for s in j["steps"]]
    assert steps[:3] == [("-", "TCP connect"), (">", "ClientHello"), ("<", "ServerHello")]
    assert ("<", "Certificate") in steps and ("<", "CertificateRequest") not in steps
    r, j = probe(live, "o", "--ca", pki.path("ca-bundle.crt"), "--tls1.2")
    assert r.returncode == 0 and j["server_hello"]["version"] == "TLSv1.2"
    assert j["server_hello"]["group"] and j["server_hello"]["cipher"].startswith("ECDHE")


def test_probe_one_way_client_checks_fail(live, pki, foreign_pki):
    r, j = probe(live, "o", "--ca", pki.path("root.crt"), "--sni", "www.example.com")
    assert r.returncode == 1 and j["outcome"]["accepted"] is True
    assert j["checks_reason"] == "name_mismatch"
    r, j = probe(live, "o", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1 and j["checks_reason"] == "unknown_ca"


def test_probe_text_report(live, pki):
    host, port = live.addr("m")
    r = tollgate("probe", f"localhost:{port}", "--ca", pki.path("root.crt"), timeout=T(30))
    assert r.returncode == 1
    for want in ("> ClientHello", "versions TLSv1.3, TLSv1.2", "< ServerHello",
                 "< CertificateRequest", "the server asks for a client certificate",
                 "server chain as received:", "checks on the server certificate:",
                 "name        PASS", "CA names the server accepts:",
                 "< Alert                fatal certificate_required (116)",
                 "outcome: REFUSED (no_client_cert)", "result: FAILED (no_client_cert)"):
        assert want in r.stdout, r.stdout


def client_args(kind, pki, foreign_pki, bad_certs):
    if kind == "alice":
        c = pki.client("alice")
    elif kind == "revoked":
        c = pki.client("revoked")
    elif kind == "unknown_ca":
        c = foreign_pki.client("alice")
    elif kind == "none":
        return []
    else:
        c = bad_certs[kind]
    return ["--cert", c[0], "--key", c[1]]


MUTUAL = [("none", "no_client_cert"), ("revoked", "cert_revoked"), ("unknown_ca", "unknown_ca"),
          ("expired", "cert_expired"), ("not_yet_valid", "cert_not_yet_valid"),
          ("self_signed", "self_signed"), ("server_only", "wrong_purpose")]


@pytest.mark.parametrize("version", ["--tls1.3", "--tls1.2"])
@pytest.mark.parametrize("kind,reason", MUTUAL)
def test_probe_mutual_refusals(live, pki, foreign_pki, bad_certs, kind, reason, version):
    r, j = probe(live, "m", "--ca", pki.path("root.crt"), version,
                 *client_args(kind, pki, foreign_pki, bad_certs))
    assert r.returncode == 1, r.stdout
    o = j["outcome"]
    assert o["accepted"] is False and o["reason"] == reason, o
    assert o["alert"], o
    assert j["certificate_request"]["seen"] is True
    assert len(j["certificate_request"]["ca_names"]) >= 1
    assert j["client_certificate"]["sent"] is (kind != "none")
    # tollgate's own log names the same reason.
    assert live.wait_rejection()["reason"] == reason


@pytest.mark.parametrize("version", ["--tls1.3", "--tls1.2"])
def test_probe_mutual_accepts(live, pki, version):
    r, j = probe(live, "m", "--ca", pki.path("root.crt"), version, "--cert",
                 pki.path("alice.p12"), "--password-file", pki.path("p12-password.txt"))
    assert r.returncode == 0, r.stdout
    mine = j["client_certificate"]
    assert mine["sent"] is True and mine["accepted"] is True and mine["issuer_listed"] is True
    assert live.rejections() == []


def test_probe_unknown_sni_and_version(live, pki):
    r, j = probe(live, "strict", "--ca", pki.path("root.crt"), "--sni", "unknown.example")
    assert r.returncode == 1 and j["outcome"]["reason"] == "unknown_sni", j["outcome"]
    r, j = probe(live, "strict", "--ca", pki.path("root.crt"), "--tls1.2")
    assert r.returncode == 1 and j["outcome"]["reason"] == "protocol_version", j["outcome"]
    # The twin: the same listener with a name it has and TLS 1.3.
    r, j = probe(live, "strict", "--ca", pki.path("root.crt"), "--sni", "localhost")
    assert r.returncode == 0, j["outcome"]


def test_probe_closed_port():
    start = time.monotonic()
    r, j = tollgate_json("probe", closed_port(), timeout=T(10))
    assert r.returncode == 1
    assert j["outcome"]["reason"] == "connection_refused"
    assert "nothing listens" in j["outcome"]["meaning"]
    assert time.monotonic() - start < T(3)
    r = tollgate("probe", closed_port())
    assert "outcome: NO CONNECTION (connection_refused)" in r.stdout, r.stdout


def test_probe_non_tls_port():
    srv = RawServer(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    try:
        start = time.monotonic()
        r, j = tollgate_json("probe", srv.target, timeout=T(10))
        assert r.returncode == 1
        assert j["outcome"]["reason"] == "not_tls", j["outcome"]
        assert "HTTP/1.1 400" in j["outcome"]["meaning"]
        assert time.monotonic() - start < T(3)
    finally:
        srv.close()


def test_probe_silent_port_times_out():
    srv = RawServer(None)
    try:
        start = time.monotonic()
        r, j = tollgate_json("probe", srv.target, "--timeout", "1", timeout=T(10))
        assert r.returncode == 1
        assert j["outcome"]["reason"] == "handshake_timeout", j["outcome"]
        assert time.monotonic() - start < T(4)
    finally:
        srv.close()


def test_probe_usage(pki):
    assert tollgate("probe").returncode == 2
    assert tollgate("probe", "localhost").returncode == 2
    assert tollgate("probe", "localhost:99999").returncode == 2
    r = tollgate("probe", "localhost:1", "--cert", pki.path("alice.crt"), "--key",
                 pki.path("revoked.key"))
    assert r.returncode == 2 and "--key" in r.stderr


def test_probe_checks_a_revoked_server_certificate(tollgate, pki):
    """The client-side checks on a server that presents a revoked
    certificate made for clients: revocation and purpose fail, with reasons."""
    tg = tollgate({"certificates": {"bad": {"cert": pki.path("revoked.crt"),
                                            "key": pki.path("revoked.key")}},
                   "target_groups": {"g": group("builtin:echo")},
                   "listeners": [listener(certs=("bad",))]})
    host, port = tg.addr()
    r, j = tollgate_json("probe", f"127.0.0.1:{port}", "--ca", pki.path("root.crt"), "--crl",
                         pki.path("clients.crl"), "--sni", "revoked", timeout=T(30))
    assert r.returncode == 1 and j["outcome"]["accepted"] is True
    verdicts = {c["check"]: (c["verdict"], c["reason"]) for c in j["checks"]}
    assert verdicts["revocation"] == ("fail", "cert_revoked")
    assert verdicts["purpose"] == ("fail", "wrong_purpose")
    assert verdicts["trust"] == ("pass", None) and verdicts["dates"] == ("pass", None)
    assert j["checks_reason"] == "cert_revoked"


def test_password_is_asked_on_a_terminal(pki):
    """No --password-file, but a terminal: tollgate asks, and a wrong answer
    is told apart from a right one."""
    def run_with_tty(answer):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(TOLLGATE_BIN, [TOLLGATE_BIN, "cert", "inspect", pki.path("alice.p12")])
        out = b""
        answered = False
        deadline = time.monotonic() + T(20)
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
            if not answered and b"Password for" in out:
                os.write(fd, answer + b"\n")
                answered = True
        _, status = os.waitpid(pid, 0)
        os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode(errors="replace")

    rc, out = run_with_tty(Path(pki.path("p12-password.txt")).read_bytes().strip())
    assert rc == 0 and "private key: EC P-256, matches certificate 1" in out, out
    rc, out = run_with_tty(b"wrong")
    assert rc == 1 and "wrong password" in out, out
