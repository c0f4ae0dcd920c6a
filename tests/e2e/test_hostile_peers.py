"""The hostile certificates of tg_hostile where tollgate is the one that
reads a server's certificate, or an operator's file: `cert inspect`, `cert
verify`, `probe` against `openssl s_server`, and an https listener whose
TLS target (and its health check) presents them. Nothing crashes (the e2e
suite also runs on the ASan build), every JSON output parses, and each
certificate is described, not cut at a NUL."""

import json
import socket
import subprocess

import pytest

import tg_hostile
from certtools_helpers import tollgate as run
from certtools_helpers import tollgate_json
from tg_http import Client, hbackend, hserve, https_listener  # noqa: F401
from tg_proc import T, free_port, wait_for


@pytest.fixture(scope="module")
def hostile(pki, tmp_path_factory):
    issuer = (pki.path("intermediate.crt"), pki.path("intermediate.key"))
    return tg_hostile.mint(tmp_path_factory.mktemp("hostile-peers"), issuer)


ALL = [(k, h) for k in tg_hostile.KINDS for h in ("ca", "self")]


def ran_cleanly(r):
    assert r.returncode >= 0, f"killed by signal {-r.returncode}:\n{r.stderr[-2000:]}"
    assert "AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr


@pytest.mark.parametrize("kind,how", ALL)
def test_cert_inspect_describes_hostile_certificates(hostile, kind, how):
    crt, _ = hostile[(kind, how)]
    r = run("cert", "inspect", crt)
    ran_cleanly(r)
    assert r.returncode == 0, r.stdout + r.stderr
    r, j = tollgate_json("cert", "inspect", crt)
    ran_cleanly(r)
    text = json.dumps(j)
    if kind == "nul_cn":
        assert "alice\\\\00.evil.example" in text, text[:2000]
    if kind == "many_names":
        assert text.count("host-") >= tg_hostile.N_SANS, "every SAN is listed"


@pytest.mark.parametrize("kind,how", ALL)
def test_cert_verify_judges_hostile_certificates(hostile, pki, kind, how):
    crt, _ = hostile[(kind, how)]
    r = run("cert", "verify", crt, "--ca", pki.path("root.crt"), "--purpose", "client")
    ran_cleanly(r)
    # A CA-issued certificate of the PKI verifies as a client certificate;
    # a self-signed one does not.
    assert (r.returncode == 0) == (how == "ca"), r.stdout + r.stderr


class SServer:
    """`openssl s_server -www` presenting a certificate, on a free port."""

    def __init__(self, cert, key):
        self.port = free_port()
        self.p = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{self.port}", "-cert", cert,
             "-cert_chain", cert, "-key", key, "-www", "-quiet"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE)

        def up():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_for(up, T(10), what="s_server listening")

    def close(self):
        self.p.terminate()
        try:
            self.p.wait(5)
        except subprocess.TimeoutExpired:
            self.p.kill()


@pytest.fixture
def s_server():
    made = []

    def start(cert, key):
        s = SServer(cert, key)
        made.append(s)
        return s
    yield start
    for s in made:
        s.close()


@pytest.mark.parametrize("kind", tg_hostile.KINDS)
def test_probe_reads_a_hostile_server_certificate(hostile, pki, s_server, kind):
    crt, key = hostile[(kind, "ca")]
    srv = s_server(crt, key)
    r, j = tollgate_json("probe", f"127.0.0.1:{srv.port}", "--ca", pki.path("root.crt"),
                         timeout=T(30))
    ran_cleanly(r)
    assert j["outcome"]["accepted"] is True, j["outcome"]
    # A client certificate presented as a server's: the checks say so.
    assert r.returncode == 1 and j["ok"] is False
    r = run("probe", f"127.0.0.1:{srv.port}", "--ca", pki.path("root.crt"), timeout=T(30))
    ran_cleanly(r)
    assert "server chain as received:" in r.stdout


@pytest.mark.parametrize("kind", ["serial300", "many_names", "nul_cn"])
def test_tls_target_with_a_hostile_certificate(hserve, pki, hostile, s_server, kind):
    """Backend TLS and its https health check read the target's certificate
    to log who it is: a 502 and one log line, and the worker lives."""
    crt, key = hostile[(kind, "ca")]
    srv = s_server(crt, key)
    target = {"address": f"127.0.0.1:{srv.port}"}
    groups = {"g": {"targets": [target],
                    "tls": {"ca": "pki", "server_name": "localhost"},
                    "health_check": {"type": "https", "path": "/", "interval": "300ms",
                                     "timeout": "250ms", "unhealthy_threshold": 1,
                                     "healthy_threshold": 1},
                    }}
    tg, _ = hserve(https_listener(), groups=groups, workers=1)
    before = sorted(tg.worker_pids())
    for _ in range(2):
        with Client(tg.addr(), pki) as c:
            assert c.request("GET", "/").status == 502
    ev = tg.wait_event("backend_tls_failed")[0]
    assert ev["reason"] in ("wrong_purpose", "name_mismatch"), ev
    # The health checker runs in the master: it must be alive too.
    tg.wait_event("target_down", timeout=T(10))
    assert tg.alive()
    assert sorted(tg.worker_pids()) == before
    assert not tg.events("worker_died")
