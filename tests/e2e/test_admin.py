"""The admin endpoint: /metrics (exact counter movements, promtool), /status
against the running config, POST /reload good and bad, /healthz while
draining, admin on a non-loopback address, and sd_notify messages."""

import calendar
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

import tg_tls
from tg_proc import AUTO, T, Tollgate, free_port, listener, run_tollgate, wait_for

PAYLOAD = b"counted bytes, both ways\n"


# ---- helpers -------------------------------------------------------------------

def admin_get(port, path, method="GET", timeout=None):
    """(status, headers dict, body bytes) of one admin request."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout or T(10))
    try:
        c.request(method, path)
        r = c.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        c.close()


_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')


def parse_metrics(text):
    """A strict reader of the text format 0.0.4: every line is HELP, TYPE or a
    sample of a family declared by TYPE before it. Returns
    {(name, frozenset(labels.items())): float} and {family: type}."""
    samples, types = {}, {}
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.splitlines():
        if line.startswith("# HELP "):
            assert len(line.split(" ", 3)) == 4, line
            continue
        if line.startswith("# TYPE "):
            _, _, fam, typ = line.split(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert fam not in types, f"family {fam} declared twice"
            types[fam] = typ
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels_s, value = m.groups()
        fam = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert fam in types, f"{name} has no TYPE line before it"
        labels = {}
        pos = 0
        while labels_s and pos < len(labels_s):
            lm = _LABEL.match(labels_s, pos)
            assert lm, f"bad labels in {line!r}"
            labels[lm.group(1)] = lm.group(2)
            pos = lm.end()
        key = (name, frozenset(labels.items()))
        assert key not in samples, f"duplicate series {line!r}"
        samples[key] = float(value)
    return samples, types


def metric(samples, name, **labels):
    return samples.get((name, frozenset((k, str(v)) for k, v in labels.items())), 0.0)


def scrape(port):
    st, hdrs, body = admin_get(port, "/metrics")
    assert st == 200
    assert hdrs["content-type"].startswith("text/plain; version=0.0.4")
    return parse_metrics(body.decode())[0]


def settled(port, listeners):
    """Waits until no connection is open on any listener; returns the scrape."""
    def quiet():
        s = scrape(port)
        if all(metric(s, "tollgate_connections_active", listener=n) == 0 for n in listeners):
            return s
        return None
    return wait_for(quiet, T(10), what="connections_active back to 0")


def admin_cfg(port, **extra):
    d = {"listen": f"127.0.0.1:{port}"}
    d.update(extra)
    return d


def https_listener(name="web", rules=None):
    d = {"name": name, "protocol": "https", "listen": AUTO,
         "tls": {"mode": "one-way", "certificates": ["ecdsa"]},
         "default_target_group": "echo"}
    if rules:
        d["rules"] = rules
    return d


def base_config(port):
    return {
        "admin": admin_cfg(port),
        "target_groups": {"echo": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [
            https_listener(rules=[{"path": "/ping", "respond": {"status": 200, "body": "pong\n"}},
                                  {"path": "/teapot", "respond": {"status": 418}}]),
            listener(name="mtls", group="echo", mode="mutual"),
        ],
    }


@pytest.fixture
def admin_tg(tollgate):
    port = free_port()
    tg = tollgate(base_config(port))
    tg.admin_port = port
    # The readiness probes (plain TCP connects) end as connections closed
    # before a ClientHello; let them be counted before any test takes its
    # "before" scrape.
    wait_for(lambda: {int(e["client"].rpartition(":")[2]) for e in
                      tg.events("client_closed_before_hello")} >= tg.probe_ports,
             T(10), what="readiness probes logged")
    return tg


def https_requests(tg, pki, paths, version=None):
    """Sends the requests over one keep-alive connection; returns statuses."""
    ctx = tg_tls.client_ctx(pki, version=version)
    host, port = tg.addr("web")
    c = http.client.HTTPSConnection(host, port, context=ctx, timeout=T(10))
    out = []
    try:
        for p in paths:
            c.request("GET", p, headers={"Host": "localhost"})
            r = c.getresponse()
            r.read()
            out.append(r.status)
    finally:
        c.close()
    return out


def counters(samples):
    """Every counter series and histogram count (names ending in _total or
    _count); gauges (seconds left, states, connections open) may go down."""
    return {k: v for k, v in samples.items() if k[0].endswith(("_total", "_count"))}


def deltas(before, after):
    keys = set(before) | set(after)
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in keys
            if after.get(k, 0.0) != before.get(k, 0.0)}


def key(name, **labels):
    return (name, frozenset((k, str(v)) for k, v in labels.items()))


# ---- /metrics ------------------------------------------------------------------

def test_metrics_move_exactly(admin_tg, pki, foreign_pki):
    tg, port = admin_tg, admin_tg.admin_port
    before = settled(port, ["web", "mtls"])

    # https: one TLS 1.3 connection carrying three requests, one TLS 1.2
    # connection carrying one.
    assert https_requests(tg, pki, ["/ping", "/echo/x", "/teapot"]) == [200, 200, 418]
    assert https_requests(tg, pki, ["/ping"], version="1.2") == [200]
    # tcp_ssl mutual: one accepted (echo), one without a client certificate,
    # one from a foreign CA.
    got, info = tg_tls.roundtrip(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")),
                                 PAYLOAD)
    assert got == PAYLOAD and info["version"] == "TLSv1.3"
    ok, detail, p1 = tg_tls.attempt(tg.addr("mtls"), tg_tls.client_ctx(pki))
    assert not ok, detail
    ok, detail, p2 = tg_tls.attempt(tg.addr("mtls"),
                                    tg_tls.client_ctx(pki, cert=foreign_pki.client("alice")))
    assert not ok, detail
    assert tg.wait_rejection(p1)["reason"] == "no_client_cert"
    assert tg.wait_rejection(p2)["reason"] == "unknown_ca"

    after = settled(port, ["web", "mtls"])
    d = deltas(counters(before), counters(after))
    bytes_keys = {k for k in d if k[0] == "tollgate_bytes_total"}
    web_bytes = {key("tollgate_bytes_total", listener="web", direction="in"),
                 key("tollgate_bytes_total", listener="web", direction="out")}
    assert web_bytes <= bytes_keys and all(d[k] > 0 for k in web_bytes)
    for k in web_bytes:
        del d[k]
    # Every other counter moved exactly as expected, and nothing else moved.
    expected = {
        key("tollgate_connections_total", listener="web"): 2,
        key("tollgate_connections_total", listener="mtls"): 3,
        key("tollgate_tls_handshakes_total", listener="web", version="TLSv1.3",
            resumed="false"): 1,
        key("tollgate_tls_handshakes_total", listener="web", version="TLSv1.2",
            resumed="false"): 1,
        key("tollgate_tls_handshakes_total", listener="mtls", version="TLSv1.3",
            resumed="false"): 1,
        key("tollgate_tls_handshake_failures_total", listener="mtls",
            reason="no_client_cert"): 1,
        key("tollgate_tls_handshake_failures_total", listener="mtls", reason="unknown_ca"): 1,
        key("tollgate_tls_handshake_duration_seconds_count", listener="web"): 2,
        key("tollgate_tls_handshake_duration_seconds_count", listener="mtls"): 1,
        key("tollgate_requests_total", listener="web", code="200"): 3,
        key("tollgate_requests_total", listener="web", code="418"): 1,
        key("tollgate_request_duration_seconds_count", listener="web"): 4,
        # Echo: what went in came back; the refused ones carried no payload.
        key("tollgate_bytes_total", listener="mtls", direction="in"): len(PAYLOAD),
        key("tollgate_bytes_total", listener="mtls", direction="out"): len(PAYLOAD),
    }
    assert d == expected

    # Histogram consistency: +Inf bucket equals _count, buckets cumulative.
    for lst, fam in (("web", "tollgate_tls_handshake_duration_seconds"),
                     ("web", "tollgate_request_duration_seconds"),
                     ("mtls", "tollgate_tls_handshake_duration_seconds")):
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in after.items()
                          if k[0] == fam + "_bucket" and dict(k[1])["listener"] == lst))
        assert buckets[-1][0] == float("inf")
        assert buckets[-1][1] == metric(after, fam + "_count", listener=lst)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:]))
        assert metric(after, fam + "_sum", listener=lst) > 0


def test_connections_active_gauge(admin_tg, pki):
    tg, port = admin_tg, admin_tg.admin_port
    settled(port, ["web", "mtls"])
    s = tg_tls.connect(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    try:
        s.sendall(b"x")
        assert tg_tls.recv_exact(s, 1) == b"x"
        wait_for(lambda: metric(scrape(port), "tollgate_connections_active", listener="mtls") == 1,
                 T(10), what="one active connection")
    finally:
        s.close()
    settled(port, ["mtls"])


def test_silent_connection_waits_in_the_kernel(admin_tg, pki):
    """Listening sockets defer accept (TCP_DEFER_ACCEPT): a client that
    connected and said nothing is not yet a worker's connection, and costs
    the worker nothing, until it speaks or about a second has passed."""
    tg, port = admin_tg, admin_tg.admin_port
    settled(port, ["mtls"])
    with socket.create_connection(tg.addr("mtls"), timeout=T(5)):
        time.sleep(0.5)  # well inside the one-second deferral, on any machine
        assert metric(scrape(port), "tollgate_connections_active", listener="mtls") == 0
    settled(port, ["mtls"])


def test_connection_that_speaks_is_accepted_at_once(admin_tg, pki):
    """Twin: the first byte of the ClientHello hands the connection over."""
    tg, port = admin_tg, admin_tg.admin_port
    settled(port, ["mtls"])
    with socket.create_connection(tg.addr("mtls"), timeout=T(5)) as s:
        s.sendall(b"\x16")
        wait_for(lambda: metric(scrape(port), "tollgate_connections_active", listener="mtls") == 1,
                 0.8, what="the connection accepted after its first byte")
    settled(port, ["mtls"])


def test_promtool_accepts_metrics(admin_tg, pki, tmp_path):
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus; scripts/setup.sh)")
    https_requests(admin_tg, pki, ["/ping", "/teapot"])
    settled(admin_tg.admin_port, ["web"])
    _, _, body = admin_get(admin_tg.admin_port, "/metrics")
    r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                       timeout=T(30))
    assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
    samples, types = parse_metrics(body.decode())
    for fam in ("tollgate_connections_total", "tollgate_tls_handshakes_total",
                "tollgate_tls_handshake_failures_total", "tollgate_requests_total",
                "tollgate_bytes_total", "tollgate_config_reloads_total"):
        assert types[fam] == "counter"
    assert types["tollgate_connections_active"] == "gauge"
    assert types["tollgate_tls_handshake_duration_seconds"] == "histogram"
    assert types["tollgate_request_duration_seconds"] == "histogram"
    assert types["tollgate_certificate_not_after_timestamp_seconds"] == "gauge"
    reasons = {dict(k[1])["reason"] for k in samples
               if k[0] == "tollgate_tls_handshake_failures_total"}
    assert reasons == {
        "no_client_cert", "cert_expired", "cert_not_yet_valid", "cert_revoked", "unknown_ca",
        "self_signed", "bad_signature", "wrong_purpose", "chain_too_long", "crl_expired",
        "crl_missing", "serial_too_long", "name_too_long", "protocol_version",
        "no_shared_cipher", "unknown_sni",
        "handshake_timeout", "ocsp_unavailable", "not_allowed", "tls_error"}


def test_certificate_expiry_metrics(admin_tg, pki):
    from tg_certs import load_certs
    s = scrape(admin_tg.admin_port)
    want = {}
    for name, path in (("ecdsa", "server-ecdsa.crt"), ("rsa", "server-rsa.crt"),
                       ("pki", "root.crt")):
        for c in load_certs(pki.path(path)):
            want[(name, format(c.serial_number, "X"))] = calendar.timegm(c.not_valid_after.utctimetuple())
    got = {(dict(k[1])["certificate"], dict(k[1])["serial"]): v for k, v in s.items()
           if k[0] == "tollgate_certificate_not_after_timestamp_seconds"}
    assert got == want
    # DESIGN.md's gauge: seconds until the first certificate of each entry expires.
    now = time.time()
    for name in ("ecdsa", "rsa", "pki"):
        first = min(v for (n, _), v in want.items() if n == name)
        left = s.get(("tollgate_certificate_expiry_seconds", frozenset({("name", name)})))
        assert left is not None, name
        assert abs(left - (first - now)) < T(60), (name, left, first - now)


def test_counters_survive_reload(admin_tg, pki):
    tg, port = admin_tg, admin_tg.admin_port
    https_requests(tg, pki, ["/ping", "/ping"])
    before = settled(port, ["web", "mtls"])
    assert metric(before, "tollgate_requests_total", listener="web", code="200") >= 2
    st, _, body = admin_get(port, "/reload", method="POST")
    assert st == 200, body
    tg.wait_event("generation_retired", generation="1")
    after = settled(port, ["web", "mtls"])
    for k, v in counters(before).items():
        assert after.get(k, 0.0) >= v, f"{k} went down across a reload"
    assert metric(after, "tollgate_generations") == 1
    https_requests(tg, pki, ["/ping"])
    last = wait_for(lambda: (lambda s: s if metric(s, "tollgate_requests_total", listener="web",
                                                   code="200") ==
                             metric(before, "tollgate_requests_total", listener="web",
                                    code="200") + 1 else None)(scrape(port)),
                    T(10), what="request counted after the reload")
    assert metric(last, "tollgate_config_reloads_total", result="success") == 1


# ---- /status ----------------------------------------------------------------------

def test_status_matches_config(admin_tg, pki):
    tg = admin_tg
    st, hdrs, body = admin_get(tg.admin_port, "/status")
    assert st == 200 and hdrs["content-type"] == "application/json"
    doc = json.loads(body)
    version = run_tollgate(["version"]).stdout
    assert doc["version"] in version
    assert doc["state"] == "serving"
    assert doc["config"]["path"] == os.path.realpath(tg.config_path)
    assert doc["config"]["generation"] == 1
    ls = {l["name"]: l for l in doc["listeners"]}
    assert set(ls) == {"web", "mtls"}
    assert ls["web"]["protocol"] == "https" and ls["web"]["tls_mode"] == "one-way"
    assert ls["mtls"]["protocol"] == "tcp_ssl" and ls["mtls"]["tls_mode"] == "mutual"
    for name in ls:
        host, port = tg.addr(name)
        assert ls[name]["address"] == f"{host}:{port}"
        assert ls[name]["policy"] == "intermediate"
        assert ls[name]["active_connections"] == 0
    assert ls["mtls"]["client_ca"] == "pki"
    certs = doc["certificates"]
    leaves = {c["name"]: c for c in certs if c["role"] == "leaf"}
    assert set(leaves) == {"ecdsa", "rsa"}
    for c in leaves.values():
        assert "DNS:localhost" in c["sans"]
        assert "CN=localhost" in c["subject"]
        assert 300 <= c["days_left"] <= 400
    cas = [c for c in certs if c["kind"] == "ca"]
    assert [c["name"] for c in cas] == ["pki"] and "root" in cas[0]["subject"]
    groups = {g["name"]: g for g in doc["target_groups"]}
    assert groups["echo"]["targets"][0]["address"] == "builtin:echo"


# ---- /reload and /healthz ---------------------------------------------------------------

def test_reload_good_then_bad(admin_tg, pki):
    tg, port = admin_tg, admin_tg.admin_port
    st, _, body = admin_get(port, "/reload", method="POST")
    doc = json.loads(body)
    assert st == 200 and doc["result"] == "ok" and doc["generation"] == 2 and doc["errors"] == []
    tg.wait_ready(generation=2)

    good = tg.config_path.read_text()
    tg.write_raw_config(good.replace("workers: 1", "workers: lots"))
    st, _, body = admin_get(port, "/reload", method="POST")
    doc = json.loads(body)
    assert st == 409 and doc["result"] == "failed" and doc["generation"] == 2
    assert len(doc["errors"]) == 1
    assert re.match(rf"{re.escape(str(tg.config_path))}:\d+:\d+: workers: ", doc["errors"][0])
    # Still serving the previous generation.
    assert https_requests(tg, pki, ["/ping"]) == [200]
    s = scrape(port)
    assert metric(s, "tollgate_config_reloads_total", result="success") == 1
    assert metric(s, "tollgate_config_reloads_total", result="failure") == 1
    assert admin_get(port, "/reload")[0] == 405
    assert admin_get(port, "/nope")[0] == 404
    assert admin_get(port, "/healthz")[0] == 200


def test_healthz_503_while_draining(admin_tg, pki):
    tg, port = admin_tg, admin_tg.admin_port
    assert admin_get(port, "/healthz")[0] == 200
    s = tg_tls.connect(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    try:
        s.sendall(b"x")
        assert tg_tls.recv_exact(s, 1) == b"x"
        tg.signal(signal.SIGTERM)
        tg.wait_event("master_stopping")
        st, _, body = admin_get(port, "/healthz")
        assert st == 503 and body == b"draining\n"
        st, _, body = admin_get(port, "/reload", method="POST")
        assert st == 503
    finally:
        s.close()
    assert tg.wait_exit(T(15)) == 0


# ---- admin address ------------------------------------------------------------------

def test_non_loopback_admin_refused(tmp_path, pki):
    port = free_port()
    cfg = base_config(port)
    cfg["admin"] = {"listen": f"0.0.0.0:{port}"}
    tg = Tollgate(tmp_path / "t", pki)
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: admin\.listen: .*allow_remote",
                     r.stderr), r.stderr
    r = run_tollgate(["run", "-c", str(path)], timeout=T(15))
    assert r.returncode == 1 and "allow_remote" in r.stderr
    token = tmp_path / "admin.token"
    token.write_text("x" * 32 + "\n")
    cfg["admin"].update(allow_remote=True, token_file=str(token))
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr


def test_admin_default_address(tmp_path, pki):
    """admin: {} means 127.0.0.1:9901 (checked without binding it)."""
    cfg = base_config(free_port())
    cfg["admin"] = {}
    tg = Tollgate(tmp_path / "t", pki)
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-c", str(path), "-T"])
    assert r.returncode == 0, r.stderr
    assert 'listen: "127.0.0.1:9901"' in r.stdout
    assert "allow_remote: false" in r.stdout


def test_check_T_prints_a_config_that_loads(tmp_path, pki):
    cfg = base_config(free_port())
    tg = Tollgate(tmp_path / "t", pki)
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-T", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    out = r.stdout
    # Defaults the file did not write are filled in.
    for line in ("drain_timeout: 10s", "idle_timeout: 5m", "max_connections: 10000",
                 "policy: intermediate", "verify_depth: 3", "algorithm: wrr"):
        assert line in out, line
    again = tmp_path / "normalized.yaml"
    again.write_text(out)
    r2 = run_tollgate(["check", "-T", "-c", str(again)])
    assert r2.returncode == 0, r2.stderr
    # A fixed point apart from the file name in the first comment line.
    assert r2.stdout.split("\n", 1)[1] == out.split("\n", 1)[1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("workers: 1", "workers: none"))
    r3 = run_tollgate(["check", "-T", "-c", str(bad)])
    assert r3.returncode == 1 and r3.stdout == "" and "workers" in r3.stderr


# ---- sd_notify ------------------------------------------------------------------------

@pytest.mark.parametrize("abstract", [False, True], ids=["path", "abstract"])
def test_sd_notify_sequence(tollgate, tmp_path, monkeypatch, abstract):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"tollgate-test-{os.getpid()}-{free_port()}"
        sock.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    else:
        path = Path("/tmp") / f"tg-notify-{os.getpid()}-{free_port()}.sock"
        sock.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    sock.settimeout(T(15))
    try:
        tg = tollgate(base_config(free_port()))

        def next_msg():
            return sock.recv(4096).decode()

        assert next_msg().split("\n")[0] == "READY=1"
        tg.signal(signal.SIGHUP)
        assert next_msg() == "RELOADING=1"
        assert next_msg().split("\n")[0] == "READY=1"
        tg.wait_ready(generation=2)
        tg.signal(signal.SIGTERM)
        assert next_msg() == "STOPPING=1"
        assert tg.wait_exit(T(15)) == 0
    finally:
        sock.close()
        if not abstract:
            path.unlink(missing_ok=True)


# ---- privilege drop -------------------------------------------------------------------

def _proc_status(pid):
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


@pytest.mark.skipif(os.geteuid() != 0, reason="privilege drop needs a root test run")
def test_workers_drop_privileges(tollgate, pki):
    import pwd
    nobody = pwd.getpwnam("nobody")
    cfg = base_config(free_port())
    cfg["user"] = "nobody"
    tg = tollgate(cfg)
    uid = str(nobody.pw_uid)

    def dropped():
        pids = tg.worker_pids()  # a worker drops right after fork: give it that moment
        return pids if pids and all(_proc_status(p)["Uid"][0] == uid for p in pids) else None
    workers = wait_for(dropped, T(10), what="workers running as nobody")
    for pid in workers:
        st = _proc_status(pid)
        assert st["Uid"] == [str(nobody.pw_uid)] * 4
        assert st["Gid"] == [str(nobody.pw_gid)] * 4
        assert st["NoNewPrivs"] == ["1"]
        assert st["Groups"] == [] or all(int(g) != 0 for g in st["Groups"])
    master = _proc_status(tg.pid)
    assert master["Uid"][0] == "0"  # keeps root to bind and read keys on reload
    # The unprivileged worker still serves, with keys the master read.
    got, _ = tg_tls.roundtrip(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")),
                              PAYLOAD)
    assert got == PAYLOAD
    assert https_requests(tg, pki, ["/ping"]) == [200]
    # A reload still reads the (root-only) keys: the master does that.
    tg.signal(signal.SIGHUP)
    tg.wait_ready(generation=2)
    tg.wait_event("generation_retired", generation="1")
    new = wait_for(dropped, T(10), what="new workers running as nobody")
    assert not set(new) & set(workers)


def test_unknown_user_is_a_config_error(tmp_path, pki):
    cfg = base_config(free_port())
    cfg["user"] = "no-such-user-here"
    tg = Tollgate(tmp_path / "t", pki)
    path = tg.write_config(cfg)
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: user: unknown user", r.stderr), r.stderr


# ---- targets --------------------------------------------------------------------------

def test_target_metrics_and_status(tollgate, backend):
    """tollgate_target_up follows the health checks; /status shows the same."""
    live = backend()
    dead = ("127.0.0.1", free_port())  # nothing listens there
    dead_addr = f"{dead[0]}:{dead[1]}"
    port = free_port()
    cfg = base_config(port)
    cfg["target_groups"]["pool"] = {
        "targets": [{"address": live.address}, {"address": dead_addr}],
        "health_check": {"type": "tcp", "interval": "200ms", "timeout": "200ms",
                         "healthy_threshold": 1, "unhealthy_threshold": 1}}
    cfg["listeners"].append(listener(name="pooled", group="pool"))
    tg = tollgate(cfg)

    def up(s, target):
        return metric(s, "tollgate_target_up", target_group="pool", target=target)
    s = wait_for(lambda: (lambda s: s if up(s, dead_addr) == 0 else None)(scrape(port)), T(10),
                 what="the dead target marked down")
    assert up(s, live.address) == 1
    assert metric(s, "tollgate_backend_up", group="pool", target=dead_addr) == 0
    assert metric(s, "tollgate_backend_up", group="pool", target=live.address) == 1
    assert metric(s, "tollgate_target_up", target_group="echo", target="builtin:echo") == 1
    assert metric(s, "tollgate_target_connections_active", target_group="pool",
                  target=live.address) == 0
    doc = json.loads(admin_get(port, "/status")[2])
    pool = {t["address"]: t for g in doc["target_groups"] if g["name"] == "pool"
            for t in g["targets"]}
    assert pool[dead_addr]["health"] == "down" and pool[dead_addr]["up"] is False
    assert pool[dead_addr]["checks_failed_in_a_row"] >= 1
    assert pool[live.address]["up"] is True


class StatusServer:
    """An HTTP server on 127.0.0.1 answering every GET with `code`, over TLS
    with the certificate (crt, key) when one is given."""

    def __init__(self, code, cert=None):
        import http.server
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(outer.code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.code = code
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if cert is not None:
            import ssl
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*cert)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.address = f"127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


RESULTS = ("pass", "refused", "timeout", "status", "tls_error", "error")


def test_health_check_counters_and_last_cause(tollgate, backend, foreign_pki):
    """tollgate_health_checks_total grows under the right result for a live,
    a dead, a 500-answering and a foreign-CA TLS target, survives a reload,
    and /status shows each target's last check with its cause."""
    live = backend()
    dead_addr = f"127.0.0.1:{free_port()}"  # nothing listens there
    web = StatusServer(500)
    alien = StatusServer(200, cert=(foreign_pki.path("server-ecdsa.crt"),
                                    foreign_pki.path("server-ecdsa.key")))
    try:
        _check_counters(tollgate, live, dead_addr, web, alien)
    finally:
        web.close()
        alien.close()


def _check_counters(tollgate, live, dead_addr, web, alien):
    port = free_port()
    cfg = base_config(port)
    fast = {"interval": "300ms", "timeout": "300ms", "healthy_threshold": 1,
            "unhealthy_threshold": 1}
    cfg["target_groups"]["pool"] = {
        "targets": [{"address": live.address}, {"address": dead_addr}],
        "health_check": dict(fast, type="tcp")}
    cfg["target_groups"]["web"] = {
        "targets": [{"address": web.address}],
        "health_check": dict(fast, type="http", path="/health")}
    cfg["target_groups"]["tls"] = {
        "targets": [{"address": alien.address}],
        "tls": {"ca": "pki", "server_name": "localhost"},
        "health_check": dict(fast, type="https", path="/health")}
    cfg["listeners"].append(listener(name="pooled", group="pool"))
    cfg["listeners"].append(listener(name="webbed", group="web"))
    cfg["listeners"].append(listener(name="tlsed", group="tls"))
    tg = tollgate(cfg)

    def checks(s, group, target):
        return {r: metric(s, "tollgate_health_checks_total", target_group=group, target=target,
                          result=r) for r in RESULTS}

    def enough(n):
        def ready():
            s = scrape(port)
            if (checks(s, "pool", live.address)["pass"] >= n
                    and checks(s, "pool", dead_addr)["refused"] >= n
                    and checks(s, "web", web.address)["status"] >= n
                    and checks(s, "tls", alien.address)["tls_error"] >= n):
                return s
            return None
        return ready

    first = wait_for(enough(2), T(15), what="two checks of every target")
    # Every checked target has all six series, builtin targets none.
    for group, target in (("pool", live.address), ("pool", dead_addr), ("web", web.address),
                          ("tls", alien.address)):
        for r in RESULTS:
            assert key("tollgate_health_checks_total", target_group=group, target=target,
                       result=r) in first, (group, target, r)
    assert not [k for k in first if k[0] == "tollgate_health_checks_total"
                and dict(k[1])["target_group"] == "echo"]

    n = checks(first, "pool", dead_addr)["refused"]
    later = wait_for(enough(n + 2), T(15), what="more checks")
    a, b = checks(first, "pool", live.address), checks(later, "pool", live.address)
    assert b["pass"] > a["pass"]
    assert b["refused"] == b["status"] == b["tls_error"] == 0, b
    a, b = checks(first, "pool", dead_addr), checks(later, "pool", dead_addr)
    assert b["refused"] > a["refused"]
    assert b["pass"] == b["status"] == 0, b
    a, b = checks(first, "web", web.address), checks(later, "web", web.address)
    assert b["status"] > a["status"]
    assert b["pass"] == b["refused"] == 0, b
    a, b = checks(first, "tls", alien.address), checks(later, "tls", alien.address)
    assert b["tls_error"] > a["tls_error"]
    assert b["pass"] == b["status"] == 0, b

    promtool = shutil.which("promtool")
    if promtool is not None:
        _, _, body = admin_get(port, "/metrics")
        r = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=T(30))
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        assert parse_metrics(body.decode())[1]["tollgate_health_checks_total"] == "counter"

    # /status: the last check of each target, its cause and when.
    def targets():
        doc = json.loads(admin_get(port, "/status")[2])
        return {(g["name"], t["address"]): t for g in doc["target_groups"] for t in g["targets"]}

    def last_causes():
        ts = targets()
        got = {k: (t.get("last_check") or {}).get("cause") for k, t in ts.items()
               if k[0] != "echo"}
        want = {("pool", live.address): "connected", ("pool", dead_addr): "refused",
                ("web", web.address): "status_500", ("tls", alien.address): "tls_error"}
        return ts if got == want else None
    ts = wait_for(last_causes, T(15), what="last causes in /status")
    now = time.time()
    for k, result in ((("pool", live.address), "pass"), (("pool", dead_addr), "refused"),
                      (("web", web.address), "status"), (("tls", alien.address), "tls_error")):
        lc = ts[k]["last_check"]
        assert lc["result"] == result and lc["passed"] == (result == "pass"), lc
        assert abs(lc["at_unix"] - now) < T(30), lc
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", lc["at"]), lc
        assert set(ts[k]["checks_total"]) == set(RESULTS)
        assert ts[k]["checks_total"][result] >= 2
    assert ts[("web", web.address)]["last_check"]["detail"].startswith("expected 200-")
    assert ts[("pool", dead_addr)]["last_check"]["detail"]  # strerror's words
    assert ts[("tls", alien.address)]["last_check"]["detail"] == "unknown_ca"
    assert "last_check" not in ts[("echo", "builtin:echo")]

    # A reload keeps the counters of targets that stay.
    before = scrape(port)
    st, _, body = admin_get(port, "/reload", method="POST")
    assert st == 200, body
    tg.wait_event("generation_retired", generation="1")
    after = scrape(port)
    for k, v in before.items():
        if k[0] == "tollgate_health_checks_total":
            assert after.get(k, -1) >= v, f"{k} went down across a reload"

    # The target answers 200 again: the last check passes with its status.
    web.code = 200

    def passed():
        t = targets()[("web", web.address)]
        return t if t["last_check"]["cause"] == "status_200" else None
    t = wait_for(passed, T(15), what="the web target passing")
    assert t["last_check"]["result"] == "pass" and t["last_check"]["detail"] == ""


# ---- contrib ----------------------------------------------------------------------------

def test_contrib_sample_config_checks(tmp_path, pki):
    """contrib/tollgate.yaml is valid once its paths point at real files."""
    from tg_proc import REPO
    text = (REPO / "contrib" / "tollgate.yaml").read_text()
    text = re.sub(r"(?<=: )pki/", pki.path("x")[:-1], text)  # relative to the config
    text = text.replace("/var/log/tollgate/access.log", str(tmp_path / "access.log"))
    text = re.sub(r"^user: \S+", "user: root", text, flags=re.M)
    path = tmp_path / "tollgate.yaml"
    path.write_text(text)
    r = run_tollgate(["check", "-c", str(path)])
    assert r.returncode == 0, r.stderr
    unit = (REPO / "contrib" / "tollgate.service").read_text()
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit


def test_reload_moves_the_admin_endpoint(admin_tg):
    tg, old = admin_tg, admin_tg.admin_port
    new = free_port()
    text = tg.config_path.read_text()
    tg.write_raw_config(text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}"))
    st, _, body = admin_get(old, "/reload", method="POST")
    assert st == 200, body  # answered on the connection that asked
    assert admin_get(new, "/healthz")[0] == 200
    with pytest.raises(OSError):
        admin_get(old, "/healthz", timeout=T(2))
    # An address that cannot be bound fails the reload and keeps the old one.
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    try:
        busy = blocker.getsockname()[1]
        tg.write_raw_config(text.replace(f"127.0.0.1:{old}", f"127.0.0.1:{busy}"))
        st, _, body = admin_get(new, "/reload", method="POST")
        doc = json.loads(body)
        assert st == 409 and any("admin.listen" in e for e in doc["errors"]), doc
        assert admin_get(new, "/healthz")[0] == 200
    finally:
        blocker.close()


def test_crashed_worker_leaves_no_phantom_connections(admin_tg, pki):
    tg, port = admin_tg, admin_tg.admin_port
    settled(port, ["mtls"])
    s = tg_tls.connect(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")))
    try:
        s.sendall(b"x")
        assert tg_tls.recv_exact(s, 1) == b"x"
        wait_for(lambda: metric(scrape(port), "tollgate_connections_active", listener="mtls") == 1,
                 T(10), what="one active connection")
        (victim,) = tg.worker_pids()
        os.kill(victim, signal.SIGKILL)
        tg.wait_event("worker_died", pid=str(victim))
    finally:
        s.close()
    after = settled(port, ["web", "mtls"])
    assert metric(after, "tollgate_connections_total", listener="mtls") >= 1
    got, _ = tg_tls.roundtrip(tg.addr("mtls"), tg_tls.client_ctx(pki, cert=pki.client("alice")),
                              PAYLOAD)
    assert got == PAYLOAD


def _raw(port, data, timeout=None):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout or T(10)) as s:
        s.sendall(data)
        out = b""
        while True:
            b = s.recv(65536)
            if not b:
                return out
            out += b


def test_admin_refuses_bad_requests(admin_tg):
    port = admin_tg.admin_port
    assert _raw(port, b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").startswith(
        b"HTTP/1.1 200 ")
    # Malformed, oversized and wrong-method requests get an answer, not a hang.
    assert _raw(port, b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n").startswith(
        b"HTTP/1.1 400 ")
    big = b"GET /metrics HTTP/1.1\r\nX-Fill: " + b"a" * 9000 + b"\r\n\r\n"
    assert _raw(port, big).startswith(b"HTTP/1.1 400 ")
    r = _raw(port, b"DELETE /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 405 ") and b"Allow: GET, HEAD" in r
    # HEAD: the headers of GET, no body.
    r = _raw(port, b"HEAD /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
    head, _, body = r.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 1000
    # A client that sends half a request and goes away costs nothing.
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(b"GET /met")
    assert admin_get(port, "/healthz")[0] == 200


# ---- who may use the admin endpoint ---------------------------------------------------

def _status(port, method="GET", path="/status", host="127.0.0.1", version="1.1", headers=()):
    """Status code of one raw request (host None: no Host header)."""
    req = f"{method} {path} HTTP/{version}\r\n"
    if host is not None:
        req += f"Host: {host}\r\n"
    for k, v in headers:
        req += f"{k}: {v}\r\n"
    if method == "POST":
        req += "Content-Length: 0\r\n"
    resp = _raw(port, (req + "\r\n").encode())
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", resp)
    assert m, resp[:200]
    return int(m.group(1)), resp


def test_admin_host_must_name_the_endpoint(admin_tg):
    """DNS rebinding: a page on evil.example whose name now resolves to
    127.0.0.1 sends Host: evil.example; only the endpoint's own names pass."""
    tg, port = admin_tg, admin_tg.admin_port
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.2", "localhost.evil.example",
                 f"127.0.0.1.evil.example:{port}", "[::1]"):
        st, _ = _status(port, host=host)
        assert st == 421, host
    assert tg.events("admin_refused", reason="unknown_host", host="evil.example")
    st, _ = _status(port, method="POST", path="/reload", host="evil.example")
    assert st == 421 and not tg.events("reload_start")
    # HTTP/1.1 needs a Host (RFC 9112 §3.2); HTTP/1.0 predates it.
    assert _status(port, host=None)[0] == 400
    assert _status(port, host=None, version="1.0")[0] == 200
    # Twins: the listen address with or without a port, and localhost.
    for host in (f"127.0.0.1:{port}", "127.0.0.1", "localhost", f"LocalHost:{port}",
                 "localhost:8080"):
        st, _ = _status(port, host=host)
        assert st == 200, host


def test_admin_server_names(tollgate):
    port = free_port()
    cfg = base_config(port)
    cfg["admin"]["server_names"] = ["admin.example", "[::1]"]
    tg = tollgate(cfg)
    assert _status(port, host="admin.example")[0] == 200
    assert _status(port, host=f"ADMIN.example:{port}")[0] == 200
    assert _status(port, host="[::1]:9901")[0] == 200
    assert _status(port, host="other.example")[0] == 421
    assert _status(port, host="admin.example.evil")[0] == 421
    assert tg.events("admin_refused", host="admin.example.evil")


def test_admin_refuses_requests_from_web_pages(admin_tg):
    tg, port = admin_tg, admin_tg.admin_port
    for hdr in (("Origin", "http://evil.example"), ("Origin", "null"),
                ("Origin", f"http://127.0.0.1:{port}"), ("Sec-Fetch-Site", "cross-site"),
                ("Sec-Fetch-Site", "same-site")):
        st, _ = _status(port, headers=[hdr])
        assert st == 403, hdr
        st, _ = _status(port, method="POST", path="/reload", headers=[hdr])
        assert st == 403, hdr
    assert not tg.events("reload_start"), "a refused POST /reload must not reload"
    assert tg.events("admin_refused", reason="cross_site")
    # Twins: a page of the endpoint itself, and a navigation typed by the user.
    for hdr in (("Sec-Fetch-Site", "same-origin"), ("Sec-Fetch-Site", "none")):
        assert _status(port, headers=[hdr])[0] == 200, hdr
    st, resp = _status(port, method="POST", path="/reload", headers=[("Sec-Fetch-Site", "none")])
    assert st == 200, resp


TOKEN = "s3cr3t-Token_for.the~admin+endpoint/="


@pytest.fixture
def token_tg(tollgate, tmp_path):
    token = tmp_path / "admin.token"
    token.write_text(TOKEN + "\n")
    port = free_port()
    cfg = base_config(port)
    cfg["admin"]["token_file"] = str(token)
    tg = tollgate(cfg)
    tg.admin_port = port
    return tg


def test_admin_token_required(token_tg):
    tg, port = token_tg, token_tg.admin_port
    for auth in (None, f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Bearer {TOKEN.upper()}",
                 "Bearer ", f"Basic {TOKEN}", f"Bearer{TOKEN}", TOKEN):
        hdrs = [("Authorization", auth)] if auth is not None else []
        for path in ("/status", "/metrics", "/healthz"):
            st, resp = _status(port, path=path, headers=hdrs)
            assert st == 401, (auth, path)
            assert b"\r\nWWW-Authenticate: Bearer" in resp
        st, _ = _status(port, method="POST", path="/reload", headers=hdrs)
        assert st == 401
    # Twice the right token is not one right token.
    st, _ = _status(port, headers=[("Authorization", f"Bearer {TOKEN}")] * 2)
    assert st == 401
    assert not tg.events("reload_start")
    assert tg.events("admin_refused", reason="no_valid_token")
    assert TOKEN not in tg.log(), "the token must never be logged"
    # Twins: the right token, whatever the case of the scheme.
    for auth in (f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN}"):
        assert _status(port, headers=[("Authorization", auth)])[0] == 200, auth
    st, resp = _status(port, method="POST", path="/reload",
                       headers=[("Authorization", f"Bearer {TOKEN}")])
    assert st == 200, resp
    assert TOKEN not in tg.log()


def _check(tmp_path, pki, admin):
    cfg = base_config(free_port())
    cfg["admin"].update(admin)
    tg = Tollgate(tmp_path / "chk", pki)
    path = tg.write_config(cfg)
    return path, run_tollgate(["check", "-c", str(path)])


def test_admin_token_file_and_allow_remote_checked(tmp_path, pki):
    port = free_port()
    # allow_remote without a token is refused, at the key.
    path, r = _check(tmp_path, pki, {"listen": f"0.0.0.0:{port}", "allow_remote": True})
    assert r.returncode == 1
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: admin\.allow_remote: .*token_file",
                     r.stderr), r.stderr
    token = tmp_path / "t.token"
    for text, why in (("", "0 characters"), ("short\n", "5 characters"),
                      ("has space in it, 20+ chars\n", "one line"),
                      ("x" * 2000, "more than 1024")):
        token.write_text(text)
        path, r = _check(tmp_path, pki, {"token_file": str(token)})
        assert r.returncode == 1, text
        assert re.search(rf"{re.escape(str(path))}:\d+:\d+: admin\.token_file: .*{why}",
                         r.stderr), r.stderr
        assert text.strip() == "" or text.strip() not in r.stderr
    path, r = _check(tmp_path, pki, {"token_file": str(tmp_path / "missing")})
    assert r.returncode == 1 and "admin.token_file: cannot read" in r.stderr
    path, r = _check(tmp_path, pki, {"server_names": ["bad name"]})
    assert r.returncode == 1 and "admin.server_names[0]" in r.stderr, r.stderr
    # Twins: a good token, with and without allow_remote; readable by
    # others it is a warning.
    token.write_text(TOKEN + "\n")
    token.chmod(0o644)
    path, r = _check(tmp_path, pki, {"token_file": str(token)})
    assert r.returncode == 0, r.stderr
    assert re.search(r"warning: admin\.token_file: .*can be read by other users \(mode 644\)",
                     r.stderr), r.stderr
    token.chmod(0o600)
    path, r = _check(tmp_path, pki, {"token_file": str(token)})
    assert r.returncode == 0 and "token_file" not in r.stderr, r.stderr
    path, r = _check(tmp_path, pki, {"listen": f"0.0.0.0:{port}", "allow_remote": True,
                                     "token_file": str(token)})
    assert r.returncode == 0, r.stderr


def test_reload_refused_while_too_many_generations_drain(tollgate, pki):
    """Each reload leaves the previous generation draining while it has
    connections; past max_draining_generations a reload is refused (POST
    /reload 429, SIGHUP logged) until they have gone."""
    cap = 2
    port = free_port()
    cfg = {
        "admin": admin_cfg(port),
        "drain_timeout": "120s",
        "max_draining_generations": cap,
        "target_groups": {"echo": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [listener(name="main", group="echo")],
    }
    tg = tollgate(cfg)
    ctx = tg_tls.client_ctx(pki)
    held = []
    try:
        for gen in range(1, cap + 1):
            s = tg_tls.connect(tg.addr("main"), ctx)
            held.append(s)
            s.sendall(b"x")
            assert tg_tls.recv_exact(s, 1) == b"x"  # served by generation `gen`
            st, _, body = admin_get(port, "/reload", method="POST")
            assert st == 200, body
            tg.wait_ready(generation=gen + 1)
            # The old worker has closed its listening socket: the next
            # connection can only go to the new generation.
            tg.wait_event("worker_draining", count=gen)
        # The current generation and `cap` draining ones, each held open.
        assert metric(scrape(port), "tollgate_generations") == cap + 1
        st, hdrs, body = admin_get(port, "/reload", method="POST")
        doc = json.loads(body)
        assert st == 429, body
        assert doc["result"] == "refused" and doc["reason"] == "too_many_draining"
        assert "max_draining_generations" in doc["errors"][0]
        ev = tg.wait_event("reload_refused")[0]
        assert ev["reason"] == "too_many_draining" and ev["generations"] == str(cap)
        tg.signal(signal.SIGHUP)
        tg.wait_event("reload_refused", count=2)
        assert not re.search(rf"event=ready generation={cap + 2}\b", tg.log())
        # The held connections still work: nothing was cut to make room.
        for s in held:
            s.sendall(b"y")
            assert tg_tls.recv_exact(s, 1) == b"y"
    finally:
        for s in held:
            s.close()
    tg.wait_event("generation_retired", count=cap)
    st, _, body = admin_get(port, "/reload", method="POST")
    assert st == 200, body
    tg.wait_ready(generation=cap + 2)
