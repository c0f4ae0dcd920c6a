"""Trust changes tried before they bite: the trust history of accepted client
certificates (state_dir), `tollgate trust diff` replaying it against a
proposed CA bundle, CRL or allow file, and client_ca_next judging live
traffic report-only."""

import json
import shutil
import time
from pathlib import Path

import pytest

import tg_tls
from test_admin import admin_get, metric, scrape
from tg_proc import T, free_port, group, listener, run_tollgate, wait_for


def history_lines(state):
    d = Path(state) / "trust-history"
    out = []
    for f in sorted(d.glob("*.jsonl")) if d.exists() else []:
        out += [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
    return out


def mutual_cfg(be, state, pki, foreign_pki=None, admin_port=None, **tls_extra):
    cas = dict(pki.client_cas())
    if foreign_pki is not None:
        cas["foreign"] = {"ca": foreign_pki.path("root.crt")}
    cfg = {"state_dir": str(state), "client_cas": cas,
           "target_groups": {"g": group(be.address)},
           "listeners": [listener(mode="mutual", tls_extra=tls_extra or None)]}
    if admin_port is not None:
        cfg["admin"] = {"listen": f"127.0.0.1:{admin_port}"}
    return cfg


def connect_as(tg, pki, who, payload=b"x\n"):
    ok, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=who), payload)
    return ok


def seen(tg, pki, state, *names):
    """The named clients of the PKI connect once each, and their lines are
    in the history."""
    for n in names:
        assert connect_as(tg, pki, pki.client(n))
    wait_for(lambda: len(history_lines(state)) >= len(names), T(5), what="history")


def diff(tg, *args):
    r = run_tollgate(["trust", "diff", "-c", str(tg.config_path), *args])
    return r


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


def test_history_records_each_accepted_client_once(tollgate, backend, pki, state):
    """Each accepted client certificate is written once (not once per
    connection), with its chain; a refused client is not written."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    for _ in range(3):
        assert connect_as(tg, pki, pki.client("alice"))
    assert connect_as(tg, pki, pki.client("bob"))
    ok, _, _ = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("revoked")))
    assert not ok
    lines = wait_for(lambda: (lambda v: v if len(v) >= 2 else None)(history_lines(state)), T(5),
                     what="history lines")
    subjects = sorted(l["subject"] for l in lines)
    assert len(lines) == 2 and "CN=alice" in subjects[0] and "CN=bob" in subjects[1], subjects
    for l in lines:
        assert l["v"] == 1 and l["listener"] == "main" and l["site"] == ""
        assert len(l["fingerprint"]) == 64 and len(l["chain"]) >= 2  # leaf and intermediate
    files = list((state / "trust-history").glob("*.jsonl"))
    assert all(oct(f.stat().st_mode & 0o777) == "0o600" for f in files)


def test_no_state_dir_keeps_nothing_twin(tollgate, backend, pki, tmp_path):
    """Without state_dir nothing is written, and trust diff says so."""
    be = backend()
    cfg = mutual_cfg(be, tmp_path / "unused", pki)
    del cfg["state_dir"]
    tg = tollgate(cfg)
    assert connect_as(tg, pki, pki.client("alice"))
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"))
    assert r.returncode == 1 and "keeps no trust history" in r.stderr, r.stderr


def test_diff_lists_who_a_new_bundle_refuses(tollgate, backend, pki, foreign_pki, state):
    """A bundle of another CA refuses everybody seen (unknown_ca), exit 1;
    the current bundle refuses nobody, exit 0."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    seen(tg, pki, state, "alice", "bob")
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1, r.stdout + r.stderr
    assert r.stdout.count("REFUSED unknown_ca") == 2, r.stdout
    assert "2 would be refused" in r.stdout
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"))
    assert r.returncode == 0 and "0 would be refused" in r.stdout, r.stdout + r.stderr


def test_diff_with_a_new_crl_refuses_only_the_revoked(tollgate, backend, pki, state, tmp_path):
    """A CRL that revokes bob: only bob is listed (cert_revoked), in JSON
    too, with his serial and fingerprint."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    seen(tg, pki, state, "alice", "bob")
    copy = tmp_path / "pkicopy"
    shutil.copytree(pki.dir, copy)
    r = run_tollgate(["pki", "revoke", str(copy), "bob"])
    assert r.returncode == 0, r.stderr
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--crl",
             str(copy / "clients.crl"), "--format", "json")
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout)
    assert doc["clients"] == 2 and len(doc["refused"]) == 1
    bob = doc["refused"][0]
    assert "CN=bob" in bob["subject"] and bob["reason"] == "cert_revoked"
    assert bob["refused_now"] is None
    bob_line = [l for l in history_lines(state) if "CN=bob" in l["subject"]][0]
    assert bob["fingerprint"] == bob_line["fingerprint"] and bob["serial"] == bob_line["serial"]


def test_diff_with_a_proposed_allow_file(tollgate, backend, pki, state, tmp_path):
    """--allow-file listing alice only: bob would be refused (not_allowed),
    alice not."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    seen(tg, pki, state, "alice", "bob")
    allow = tmp_path / "new.allow"
    allow.write_text("# only alice\nsubject_cn alice\n")
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--allow-file", str(allow))
    assert r.returncode == 1
    assert "REFUSED not_allowed" in r.stdout and "CN=bob" in r.stdout and "CN=alice" not in r.stdout
    allow.write_text("subject_cn alice\nsubject_cn bob\n")
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--allow-file", str(allow))
    assert r.returncode == 0, r.stdout


def test_diff_ignores_history_outside_the_window(tollgate, backend, pki, foreign_pki, state):
    """A record whose last sighting is older than trust_history is not
    replayed."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    seen(tg, pki, state, "alice")
    f = next((state / "trust-history").glob("*.jsonl"))
    rec = json.loads(f.read_text().splitlines()[0])
    old = int(time.time()) - 8 * 24 * 3600
    rec["first"] = rec["last"] = old
    f.write_text(json.dumps(rec) + "\n")
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 0 and "0 client certificate(s)" in r.stdout, r.stdout


def test_diff_usage_errors(tollgate, backend, pki, state):
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    r = diff(tg, "--client-ca", "nope", "--ca", pki.path("root.crt"))
    assert r.returncode == 2 and "no client_cas entry \"nope\"" in r.stderr
    r = diff(tg, "--client-ca", "pki")
    assert r.returncode == 2
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--alow-file", "x")
    assert r.returncode == 2 and "did you mean '--allow-file'" in r.stderr
    r = diff(tg, "--client-ca", "pki", "--ca", "/nonexistent.pem")
    assert r.returncode == 1


def test_hostile_history_lines_are_skipped(tollgate, backend, pki, foreign_pki, state):
    """Garbage, truncated JSON, a chain that is not a certificate and an
    oversized line in a history file are skipped; the good line is read."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    seen(tg, pki, state, "alice")
    f = next((state / "trust-history").glob("*.jsonl"))
    good = f.read_text()
    rec = json.loads(good.splitlines()[0])
    bad_chain = dict(rec, fingerprint="f" * 64, chain=["AAAA", "!!!"])
    f.write_text("not json\n{\"v\":1,\n" + json.dumps(bad_chain) + "\n" +
                 "{\"v\":1,\"x\":\"" + "A" * 300000 + "\"}\n" + good)
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1 and r.stdout.count("REFUSED") == 1, r.stdout + r.stderr


def test_client_ca_next_reports_and_never_refuses(tollgate, backend, pki, foreign_pki, state):
    """client_ca_next naming another CA: alice is served as before, and
    her handshake is counted, listed in /status and logged once (not per
    connection) with reason unknown_ca. Twin: client_ca_next naming the
    same CA counts nothing."""
    be = backend()
    port = free_port()
    tg = tollgate(mutual_cfg(be, state, pki, foreign_pki, admin_port=port,
                             client_ca_next="foreign"))
    for _ in range(3):
        assert connect_as(tg, pki, pki.client("alice")), "client_ca_next refused a client"
    wait_for(lambda: metric(scrape(port), "tollgate_trust_next_refusals_total", listener="main",
                            reason="unknown_ca") >= 3, T(5), what="next refusals")
    evs = tg.events("trust_next_refused")
    assert len(evs) == 1, evs
    assert evs[0]["reason"] == "unknown_ca" and "CN=alice" in evs[0]["subject"]
    st, _, body = admin_get(port, "/status")
    tn = [l for l in json.loads(body)["listeners"] if l["name"] == "main"][0]["trust_next"]
    assert tn["client_ca_next"] == "foreign" and tn["refusals"]["unknown_ca"] >= 3
    assert "CN=alice" in tn["recent"][0]["subject"]

    port2 = free_port()
    tg2 = tollgate(mutual_cfg(be, state, pki, admin_port=port2, client_ca_next="pki"), name="twin")
    assert connect_as(tg2, pki, pki.client("alice"))
    time.sleep(0.3)
    s = scrape(port2)
    assert all(metric(s, "tollgate_trust_next_refusals_total", listener="main", reason=r) == 0
               for r in ("unknown_ca", "cert_revoked", "tls_error"))
    assert not tg2.events("trust_next_refused")


def test_client_ca_next_with_a_new_crl(tollgate, backend, pki, state, tmp_path):
    """A next entry with the same CA and a CRL revoking bob: bob counts as
    cert_revoked, alice counts nothing; both are served."""
    be = backend()
    port = free_port()
    copy = tmp_path / "pkicopy"
    shutil.copytree(pki.dir, copy)
    assert run_tollgate(["pki", "revoke", str(copy), "bob"]).returncode == 0
    cfg = mutual_cfg(be, state, pki, admin_port=port, client_ca_next="next")
    cfg["client_cas"]["next"] = {"ca": pki.path("root.crt"), "crl": str(copy / "clients.crl")}
    tg = tollgate(cfg)
    assert connect_as(tg, pki, pki.client("alice"))
    assert connect_as(tg, pki, pki.client("bob"))
    wait_for(lambda: tg.events("trust_next_refused"), T(5), what="next refusal")
    evs = tg.events("trust_next_refused")
    assert len(evs) == 1 and "CN=bob" in evs[0]["subject"] and evs[0]["reason"] == "cert_revoked"


def test_check_client_ca_next(tmp_path, pki):
    """client_ca_next must name a client_cas entry and needs mode mutual."""
    from tg_proc import to_yaml
    for tls, needle in (({"mode": "mutual", "client_ca": "pki", "client_ca_next": "nope"},
                         "nope"),
                        ({"mode": "one-way", "client_ca_next": "pki"},
                         "only used with mode: mutual")):
        lst = listener()
        lst["listen"] = "127.0.0.1:%d" % free_port()
        lst["tls"] = dict(tls, certificates=["ecdsa"])
        cfg = {"certificates": pki.certificates(), "client_cas": pki.client_cas(),
               "target_groups": {"g": group("127.0.0.1:9")}, "listeners": [lst]}
        p = tmp_path / "c.yaml"
        p.write_text(to_yaml(cfg))
        r = run_tollgate(["check", "-c", str(p)])
        assert r.returncode == 1 and needle in r.stderr, r.stderr


def test_check_state_dir(tmp_path, pki):
    """A missing state_dir is a warning; a file is an error."""
    from tg_proc import to_yaml
    lst = listener()
    lst["listen"] = "127.0.0.1:%d" % free_port()
    f = tmp_path / "afile"
    f.write_text("x")
    for sd, rc, needle in ((tmp_path / "missing", 0, "does not exist"),
                           (f, 1, "is not a directory")):
        cfg = {"state_dir": str(sd), "certificates": pki.certificates(),
               "target_groups": {"g": group("127.0.0.1:9")}, "listeners": [lst]}
        p = tmp_path / "c.yaml"
        p.write_text(to_yaml(cfg))
        r = run_tollgate(["check", "-c", str(p)])
        assert r.returncode == rc and needle in r.stderr, r.stderr
