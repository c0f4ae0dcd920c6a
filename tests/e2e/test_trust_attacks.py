"""Hostile inputs against the trust history, `tollgate trust diff` and
client_ca_next: a next trust that is missing or garbage never refuses
anybody, the history records each accepted certificate once (and nothing
else), survives reloads, names the right site, and the diff neither
crashes on odd files nor prints anything but sane text and valid JSON."""

import datetime
import json
import os
import pwd
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import tg_certs
import tg_tls
from test_admin import metric, scrape
from test_trust_diff import connect_as, history_lines, mutual_cfg
from test_trust_diff import diff as _diff
from tg_proc import T, free_port, group, listener, wait_for


@pytest.fixture
def state(tmp_path):
    d = tmp_path / "state"
    d.mkdir()
    return d


@pytest.fixture
def open_state():
    """A state_dir whose parents any user may enter (the test tree is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="tg-trustattack-"))
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def diff(tg, *args):
    """trust diff; never a sanitizer report (with an ASan build)."""
    r = _diff(tg, *args)
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-4000:]
    return r


def wait_lines(state, n):
    return wait_for(lambda: (lambda v: v if len(v) >= n else None)(history_lines(state)), T(5),
                    what=f"{n} history line(s)")


def next_cfg(be, state, pki, next_ca, admin_port):
    """A mutual listener under the PKI, client_ca_next "next" = next_ca
    (watched every second)."""
    cfg = mutual_cfg(be, state, pki, admin_port=admin_port, client_ca_next="next")
    cfg["client_cas"]["next"] = {"ca": str(next_ca), "crl_check_interval": "1s"}
    return cfg


def next_refusals(port, reason="unknown_ca"):
    return metric(scrape(port), "tollgate_trust_next_refusals_total", listener="main",
                  reason=reason)


def replace(path, data):
    tmp = Path(str(path) + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# ---- client_ca_next never refuses, and follows its files ----

@pytest.mark.parametrize("kind", ["missing", "garbage"])
def test_next_ca_unusable_at_start_or_reload(tollgate, backend, pki, state, tmp_path, kind):
    """A next CA file missing or garbage is a config error naming the key
    (tollgate does not start on it); made so before a SIGHUP, the reload is
    refused and the running generation keeps serving, unjudged."""
    be = backend()
    port = free_port()
    nxt = tmp_path / "next.pem"

    def spoil():
        if kind == "garbage":
            replace(nxt, b"-----BEGIN CERTIFICATE-----\nZZZZ\n-----END CERTIFICATE-----\n\xff")
        elif nxt.exists():
            nxt.unlink()
    spoil()
    from tg_proc import StartupError
    with pytest.raises(StartupError, match="client_cas.next.ca"):
        tollgate(next_cfg(be, state, pki, nxt, port), name="bad")
    shutil.copy(pki.path("root.crt"), nxt)
    tg = tollgate(next_cfg(be, state, pki, nxt, port))
    assert connect_as(tg, pki, pki.client("alice"))
    spoil()
    tg.signal(signal.SIGHUP)
    wait_for(lambda: metric(scrape(port), "tollgate_config_reloads_total", result="failure") >= 1,
             T(10), what="the reload refused")
    for who in ("alice", "bob", "alice"):
        assert connect_as(tg, pki, pki.client(who)), f"{who} refused after a bad next CA"
    time.sleep(0.3)
    assert not tg.events("trust_next_refused")
    assert next_refusals(port) == 0
    assert tg.alive()


def test_next_ca_replaced_while_running(tollgate, backend, pki, foreign_pki, state, tmp_path):
    """The next CA file is the current root (nobody refused), then garbage
    (refused with a log line, the previous next trust stays, clients are
    served), then another CA (trust_next_applied; alice counts unknown_ca,
    and is still served)."""
    be = backend()
    port = free_port()
    nxt = tmp_path / "next.pem"
    shutil.copy(pki.path("root.crt"), nxt)
    tg = tollgate(next_cfg(be, state, pki, nxt, port))
    assert connect_as(tg, pki, pki.client("alice"))
    assert next_refusals(port) == 0
    time.sleep(1.1)  # a new mtime second
    replace(nxt, b"garbage, not a PEM bundle\n" * 10)
    time.sleep(2.5)  # two polls
    for _ in range(3):
        assert connect_as(tg, pki, pki.client("alice")), "garbage next CA refused a client"
    assert next_refusals(port) == 0, "the garbage replaced the previous next trust"
    assert not tg.events("trust_next_applied")
    assert not tg.events("trust_next_refused")
    replace(nxt, Path(foreign_pki.path("root.crt")).read_bytes())
    tg.wait_event("trust_next_applied", timeout=T(6))
    assert connect_as(tg, pki, pki.client("alice")), "client_ca_next refused a client"
    wait_for(lambda: next_refusals(port) >= 1, T(5), what="a next refusal")
    ev = tg.wait_event("trust_next_refused")[0]
    assert ev["reason"] == "unknown_ca" and "CN=alice" in ev["subject"]
    assert tg.alive()


# ---- what the history records ----

def test_fifty_connections_and_resumptions_make_one_line(tollgate, backend, pki, state):
    """50 full handshakes of alice, then TLS 1.3 and TLS 1.2 resumptions of
    her sessions: one line in the history, the connections all served."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    for i in range(50):
        assert connect_as(tg, pki, pki.client("alice")), i
    wait_lines(state, 1)
    for version in ("1.3", "1.2"):
        ctx = tg_tls.client_ctx(pki, cert=pki.client("alice"), version=version)
        sess = None
        reused = 0
        for i in range(6):
            with tg_tls.connect(tg.addr(), ctx, session=sess) as s:
                s.sendall(b"r\n")
                assert tg_tls.recv_exact(s, 2) == b"r\n"
                reused += s.session_reused
                sess = s.session
        assert reused >= 4, f"TLS {version}: only {reused} resumption(s)"
    time.sleep(0.3)
    lines = history_lines(state)
    assert len(lines) == 1, [l["subject"] for l in lines]
    assert "CN=alice" in lines[0]["subject"] and len(lines[0]["chain"]) == 2


def test_optional_clients_not_verified_are_never_recorded(tollgate, backend, pki, foreign_pki,
                                                          state):
    """client_auth optional, allow-list alice only: a client without a
    certificate, one of a foreign CA, a revoked one and bob (verified but
    not allowed) are relayed and never recorded; alice is."""
    be = backend(proxy=True)
    lst = listener(mode="mutual", client_auth="optional", proxy="v2",
                   tls_extra={"allow": [{"subject_cn": "alice"}]})
    tg = tollgate({"state_dir": str(state), "target_groups": {"g": group(be.address)},
                   "listeners": [lst]})
    others = [tg_tls.client_ctx(pki), tg_tls.client_ctx(pki, cert=foreign_pki.client("alice")),
              tg_tls.client_ctx(pki, cert=pki.client("revoked")),
              tg_tls.client_ctx(pki, cert=pki.client("bob"))]
    for i, ctx in enumerate(others):
        ok, detail, _ = tg_tls.attempt(tg.addr(), ctx, payload=b"o\n")
        assert ok, f"optional client {i} not relayed: {detail}"
    time.sleep(0.3)
    assert history_lines(state) == [], [l["subject"] for l in history_lines(state)]
    ok, detail, _ = tg_tls.attempt(tg.addr(), tg_tls.client_ctx(pki, cert=pki.client("alice")),
                                   payload=b"a\n")
    assert ok, detail
    lines = wait_lines(state, 1)
    assert len(lines) == 1 and "CN=alice" in lines[0]["subject"]
    assert "CN=alice" in lines[0]["subject"] and "foreign" not in json.dumps(lines[0])


def test_reload_keeps_recording_and_old_files_are_read(tollgate, backend, pki, foreign_pki,
                                                       state):
    """After SIGHUP the new worker records in its own file (alice again,
    bob); the old worker's file stays and trust diff merges both: alice
    once, bob once."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    old = set(tg.worker_pids())
    assert connect_as(tg, pki, pki.client("alice"))
    wait_lines(state, 1)
    tg.signal(signal.SIGHUP)
    tg.wait_ready(generation=2)
    wait_for(lambda: set(tg.worker_pids()) - old, T(10), what="a new worker")
    assert connect_as(tg, pki, pki.client("alice"))
    assert connect_as(tg, pki, pki.client("bob"))
    lines = wait_lines(state, 3)
    files = sorted((state / "trust-history").glob("*.jsonl"))
    assert len(files) == 2, files
    assert len(lines) == 3, [l["subject"] for l in lines]
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"), "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["clients"] == 2 and len(doc["refused"]) == 2, doc
    assert {("CN=alice" in x["subject"], "CN=bob" in x["subject"]) for x in doc["refused"]} == \
        {(True, False), (False, True)}


def sni_cfg(be, state, pki, foreign_pki, api_mode="mutual"):
    api = {"names": ["api.test", "*.api.test"], "mode": api_mode}
    if api_mode == "mutual":
        api["client_ca"] = "pki"
    tls = {"sni": [api, {"names": ["other.test"], "mode": "mutual", "client_ca": "foreign"}]}
    cas = dict(pki.client_cas())
    cas["foreign"] = {"ca": foreign_pki.path("root.crt")}
    return {"state_dir": str(state), "client_cas": cas,
            "target_groups": {"g": group(be.address)},
            "listeners": [listener(mode="mutual", tls_extra=tls)]}


def test_sni_sites_in_the_history_and_the_diff(tollgate, backend, pki, foreign_pki, state):
    """The record's site is the entry's first name (a wildcard SNI too),
    "" for the listener's own; trust diff of one client CA judges only the
    sites under it, and stops judging a site made one-way."""
    be = backend()
    tg = tollgate(sni_cfg(be, state, pki, foreign_pki))

    def go(who_pki, who, sni):
        ctx = tg_tls.client_ctx(who_pki, cert=who_pki.client(who), verify=False)
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"s\n", server_hostname=sni)
        assert got == b"s\n", (who, sni)
    go(pki, "alice", "localhost")
    go(pki, "bob", "deep.x.api.test")
    go(foreign_pki, "alice", "other.test")
    lines = wait_lines(state, 3)
    sites = sorted((l["site"], l["subject"].split("CN=")[1].split(",")[0]) for l in lines)
    assert sites == [("", "alice"), ("api.test", "bob"), ("other.test", "alice")], sites
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"), "--format", "json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["clients"] == 2, doc
    assert sorted(x["site"] for x in doc["refused"]) == ["", "api.test"]
    r = diff(tg, "--client-ca", "foreign", "--ca", pki.path("root.crt"), "--format", "json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["clients"] == 1, doc
    assert doc["refused"][0]["site"] == "other.test"
    # The config now makes api.test one-way (the diff reads the file).
    tg.write_config(sni_cfg(be, state, pki, foreign_pki, api_mode="one-way"))
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"), "--format", "json")
    doc = json.loads(r.stdout)
    assert r.returncode == 1 and doc["clients"] == 1, r.stdout + r.stderr
    assert doc["refused"][0]["site"] == ""


# ---- trust diff against hostile history files ----

def test_diff_survives_hostile_history_files(tollgate, backend, pki, foreign_pki, state,
                                             tmp_path):
    """Next to one good record: a symlink to another file, a directory
    named *.jsonl, a FIFO named *.jsonl, a huge line, invalid base64, a
    chain of 100 certificates, "v":2, a listener that no longer exists, a
    site that is not in the config, numbers where strings belong and a
    file without a final newline. trust diff exits 1 listing the good
    record only, within its time, without a crash."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    assert connect_as(tg, pki, pki.client("alice"))
    wait_lines(state, 1)
    tg.stop()
    hd = state / "trust-history"
    good = history_lines(state)[0]
    now = int(time.time())
    leaf_b64 = good["chain"][0]
    evil = tmp_path / "elsewhere.txt"
    evil.write_text(json.dumps(dict(good, fingerprint="e" * 64, subject="CN=via-symlink")) + "\n")
    (hd / "link.1.jsonl").symlink_to(evil)
    (hd / "dangling.2.jsonl").symlink_to(tmp_path / "nothing-here")
    (hd / "adir.3.jsonl").mkdir()
    os.mkfifo(hd / "fifo.4.jsonl")
    recs = [
        dict(good, fingerprint="1" * 64, chain=["%%%not base64%%%", "===="]),
        dict(good, fingerprint="2" * 64, chain=[leaf_b64] * 100),
        dict(good, fingerprint="3" * 64, v=2),
        dict(good, fingerprint="4" * 64, listener="gone"),
        dict(good, fingerprint="5" * 64, site="no-such-site.test"),
        dict(good, fingerprint="6" * 64, subject=12, serial=[1], listener="main"),
        dict(good, fingerprint="7" * 64, first="x", last=now),  # taken, first read as 0
        dict(good, fingerprint="8" * 64, chain=[leaf_b64[:-7]]),
        dict(good, fingerprint="9" * 64, chain=[]),
        dict(good, fingerprint="a" * 63),
        dict(good, fingerprint="b" * 64, chain="notalist"),
        dict(good, fingerprint="c" * 64, chain=["aGVsbG8gd29ybGQh"]),  # base64, no DER
    ]
    body = "".join(json.dumps(r) + "\n" for r in recs)
    body += "{" + '"a":' * 5000 + "1" + "}" * 5000 + "\n"  # deep nesting
    body += "[" * 100000 + "\n"
    body += json.dumps(dict(good, fingerprint="d" * 64, pad="P" * 200000)) + "\n"
    (hd / "main.99999.jsonl").write_text(body + json.dumps(dict(good, fingerprint="f" * 64)))
    t0 = time.monotonic()
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"), "--format", "json")
    assert time.monotonic() - t0 < T(20)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    doc = json.loads(r.stdout)
    fps = sorted(x["fingerprint"] for x in doc["refused"])
    # The real record, the symlinked copy (a file the diff may read), the
    # last line without a newline, and the record whose subject is a number
    # (ignored, its leaf is good). Never the invalid ones.
    assert good["fingerprint"] in fps
    for bad in ("1", "2", "3", "4", "5", "8", "9", "a", "b", "c", "d"):
        assert bad * 64 not in fps, (bad, fps)


def test_diff_skips_history_it_cannot_read(tollgate, backend, pki, foreign_pki, state):
    """A history directory that is a file, or a state_dir whose history is a
    symlink loop: trust diff says so and exits 1, no crash."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    tg.stop()
    hd = state / "trust-history"
    if hd.exists():
        shutil.rmtree(hd)
    hd.write_text("not a directory\n")
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1 and "cannot read" in r.stderr, (r.stdout, r.stderr)
    hd.unlink()
    hd.symlink_to(hd)
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1 and "cannot read" in r.stderr, (r.stdout, r.stderr)


# ---- trust diff correctness ----

def write_root_crl(pki, path, revoked_serials):
    """The root's CRL revoking revoked_serials, and the intermediate's (empty)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    out = b""
    for name, serials in (("root", revoked_serials), ("intermediate", ())):
        cert = x509.load_pem_x509_certificate(Path(pki.path(f"{name}.crt")).read_bytes())
        key = serialization.load_pem_private_key(Path(pki.path(f"{name}.key")).read_bytes(),
                                                 password=None)
        b = (x509.CertificateRevocationListBuilder().issuer_name(cert.subject)
             .last_update(now - datetime.timedelta(minutes=5))
             .next_update(now + datetime.timedelta(days=7))
             .add_extension(x509.CRLNumber(2), critical=False))
        for s in serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(s)
                .revocation_date(now - datetime.timedelta(minutes=1)).build())
        out += b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
    Path(path).write_bytes(out)


def test_diff_crl_revoking_the_intermediate(tollgate, backend, pki, state, tmp_path):
    """A root CRL revoking the intermediate: every client below it (alice
    and bob) would be refused, cert_revoked. Twin: the same CRLs revoking
    nothing refuse nobody."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    assert connect_as(tg, pki, pki.client("alice"))
    assert connect_as(tg, pki, pki.client("bob"))
    wait_lines(state, 2)
    inter = x509.load_pem_x509_certificate(Path(pki.path("intermediate.crt")).read_bytes())
    crl = tmp_path / "new.crl"
    write_root_crl(pki, crl, [inter.serial_number])
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--crl", str(crl),
             "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert len(doc["refused"]) == 2 and {x["reason"] for x in doc["refused"]} == {"cert_revoked"}
    write_root_crl(pki, crl, [])
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("root.crt"), "--crl", str(crl))
    assert r.returncode == 0 and "0 would be refused" in r.stdout, r.stdout + r.stderr


def test_diff_agrees_with_live_verdict_on_a_bundle_of_the_intermediate_only(
        tollgate, backend, pki, state, tmp_path):
    """--ca holding the intermediate only (no root): the diff's verdict on
    alice is the one a live tollgate with that bundle gives her."""
    be = backend()
    tg = tollgate(mutual_cfg(be, state, pki))
    assert connect_as(tg, pki, pki.client("alice"))
    wait_lines(state, 1)
    r = diff(tg, "--client-ca", "pki", "--ca", pki.path("intermediate.crt"))
    assert r.returncode in (0, 1), r.stderr
    diff_refuses = r.returncode == 1
    cfg = mutual_cfg(be, tmp_path / "state2", pki)
    cfg["client_cas"]["pki"] = {"ca": pki.path("intermediate.crt")}
    (tmp_path / "state2").mkdir()
    tg2 = tollgate(cfg, name="inter")
    ok, _, _ = tg_tls.attempt(tg2.addr(), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    assert diff_refuses == (not ok), f"diff refuses={diff_refuses} live ok={ok}: {r.stdout}"


def test_diff_respects_the_sites_verify_depth(tollgate, backend, pki, state, tmp_path):
    """A client two intermediates below its root, accepted at verify_depth
    3: the diff with the same root refuses nobody at depth 3, and refuses
    it (chain_too_long) once the config says verify_depth 1."""
    be = backend()
    root, deep = tg_certs.mint_deep_chain(tmp_path)

    def cfg(depth):
        c = mutual_cfg(be, state, pki, verify_depth=depth)
        c["client_cas"]["pki"] = {"ca": root}
        return c
    tg = tollgate(cfg(3))
    ok, _ = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki, cert=deep), b"d\n")
    assert ok == b"d\n"
    lines = wait_lines(state, 1)
    assert len(lines[0]["chain"]) == 3
    r = diff(tg, "--client-ca", "pki", "--ca", root)
    assert r.returncode == 0 and "0 would be refused" in r.stdout, r.stdout + r.stderr
    tg.write_config(cfg(1))
    r = diff(tg, "--client-ca", "pki", "--ca", root, "--format", "json")
    assert r.returncode == 1, r.stdout + r.stderr
    doc = json.loads(r.stdout)
    assert doc["refused"][0]["reason"] == "chain_too_long", doc


def test_hostile_subjects_stay_in_their_field(tollgate, backend, pki, foreign_pki, state,
                                              tmp_path):
    """A client whose CN holds a quote, a backslash, a newline with a fake
    REFUSED line, a control character and non-ASCII: the history line is
    valid JSON, the JSON diff parses, and the text diff has one REFUSED
    line for it (the newline does not make a second one)."""
    be = backend()
    inter = x509.load_pem_x509_certificate(Path(pki.path("intermediate.crt")).read_bytes())
    inter_key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    cn = 'ev"il\\\nREFUSED fake_reason CN=nobody\x01\x7f\u00e9\u202e'
    who = tg_certs.make_cert(tmp_path, "hostile", issuer_cert=inter, issuer_key=inter_key,
                             chain=(inter,), cn=cn)
    tg = tollgate(mutual_cfg(be, state, pki))
    assert connect_as(tg, pki, who)
    raw = wait_for(lambda: [f.read_text() for f in (state / "trust-history").glob("*.jsonl")
                            if f.read_text()], T(5), what="a history file")
    for text in raw:
        for line in text.splitlines():
            json.loads(line)
    assert sum(t.count("\n") for t in raw) == 1
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"), "--format", "json")
    assert r.returncode == 1 and r.stdout.count("\n") == 1, r.stdout
    doc = json.loads(r.stdout)
    assert len(doc["refused"]) == 1 and "ev" in doc["refused"][0]["subject"]
    r = diff(tg, "--client-ca", "pki", "--ca", foreign_pki.path("root.crt"))
    assert r.returncode == 1
    out_lines = r.stdout.splitlines()
    assert len(out_lines) == 2, out_lines  # one REFUSED line and the summary
    assert out_lines[0].startswith("REFUSED unknown_ca") and "fake_reason" in out_lines[0]
    assert not any(ch in r.stdout for ch in "\x01\x7f"), repr(r.stdout)


# ---- a state_dir the workers cannot write ----

@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run workers as nobody")
def test_state_dir_unreachable_for_the_workers_user(tollgate, backend, pki, state):
    """user: nobody, state_dir root-owned 0700 with a root-owned
    trust-history: tollgate serves every client and says
    trust_history_unavailable once, not per handshake."""
    pwd.getpwnam("nobody")
    be = backend()
    hd = state / "trust-history"
    hd.mkdir(mode=0o700)
    os.chmod(state, 0o700)
    cfg = mutual_cfg(be, state, pki)
    cfg["user"] = "nobody"
    tg = tollgate(cfg)
    for who in ("alice", "bob", "alice", "bob", "alice"):
        assert connect_as(tg, pki, pki.client(who)), who
    time.sleep(0.3)
    evs = tg.events("trust_history_unavailable")
    assert len(evs) == 1, [e["_line"] for e in evs]
    assert not list(hd.glob("*.jsonl"))


def test_history_dir_read_only_logs_once(tollgate, backend, pki, open_state):
    """trust-history exists but is read-only (mode 0500; the master chowns
    it to the workers' user when root): every client is served and
    trust_history_unavailable is said once, not once per handshake."""
    be = backend()
    state = open_state
    hd = state / "trust-history"
    hd.mkdir()
    os.chmod(hd, 0o500)
    cfg = mutual_cfg(be, state, pki)
    if os.geteuid() == 0:
        cfg["user"] = "nobody"  # root would write anyway
    tg = tollgate(cfg)
    for who in ("alice", "bob", "alice", "bob", "alice", "alice"):
        assert connect_as(tg, pki, pki.client(who)), who
    time.sleep(0.3)
    evs = tg.events("trust_history_unavailable")
    assert 1 <= len(evs), "no word of the unwritable history"
    assert len(evs) == 1, f"{len(evs)} lines for 6 handshakes"
