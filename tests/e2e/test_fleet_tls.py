"""A fleet on an etcd that speaks TLS and asks for client certificates
(--client-cert-auth): --etcd-ca verifies etcd, --etcd-cert and --etcd-key
prove who asks, for the fleet commands, the nodes and their agents, and in
a node file. Each accepting run has a refused twin."""

import subprocess

import pytest

import tg_tls
from tg_fleet import Config, Fleet, Node, stop_all
from tg_proc import T, free_port, wait_for


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def etcd_pki(tmp_path):
    """A CA, etcd's certificate (serverAuth and clientAuth: etcd's gateway
    dials etcd's own gRPC port with it) and an operator's client certificate."""
    d = tmp_path / "etcd-pki"
    d.mkdir()
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=etcd test CA",
            cwd=d)
    for name, eku, san in (("server", "serverAuth,clientAuth", "IP:127.0.0.1"),
                           ("ops", "clientAuth", None)):
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        ext = f"extendedKeyUsage={eku}\n" + (f"subjectAltName={san}\n" if san else "")
        (d / f"{name}.ext").write_text(ext)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile",
                f"{name}.ext", cwd=d)
    # another CA's client: refused by etcd
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "stranger.key", "-out", "stranger.crt", "-days", "2",
            "-subj", "/CN=stranger", "-addext", "extendedKeyUsage=clientAuth", cwd=d)
    return d


class TlsFleet(Fleet):
    def __init__(self, url, prefix, tls):
        super().__init__(url, prefix)
        self.tls = list(tls)

    def common(self):
        return super().common() + self.tls


class TlsNode(Node):
    def __init__(self, *a, tls=(), **kw):
        super().__init__(*a, **kw)
        self.tls = list(tls)

    def args(self):
        a = super().args()
        return a if getattr(self, "node_file", None) else a + self.tls


@pytest.fixture
def etcd_tls(tmp_path, etcd_pki):
    """etcd on https://127.0.0.1 with --client-cert-auth."""
    port, peer = free_port(), free_port()
    url = f"https://127.0.0.1:{port}"
    log = open(tmp_path / "etcd-tls.log", "wb")
    p = subprocess.Popen(
        ["/usr/bin/etcd", "--name", "tls", "--data-dir", str(tmp_path / "etcd-tls.data"),
         "--listen-client-urls", url, "--advertise-client-urls", url,
         "--listen-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
         "--initial-cluster", f"tls=http://127.0.0.1:{peer}",
         "--cert-file", str(etcd_pki / "server.crt"), "--key-file", str(etcd_pki / "server.key"),
         "--trusted-ca-file", str(etcd_pki / "ca.crt"), "--client-cert-auth",
         "--heartbeat-interval", "50", "--election-timeout", "500", "--log-level", "warn"],
        stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        yield url
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)
        log.close()


@pytest.fixture
def started(request):
    """The nodes a test starts, stopped at its end (their logs in the report
    of a failed test)."""
    nodes = []
    request.node._tollgates = nodes
    yield nodes
    stop_all(nodes)


def tls_args(d, cert="ops"):
    a = ["--etcd-ca", str(d / "ca.crt")]
    if cert:
        a += ["--etcd-cert", str(d / f"{cert}.crt"), "--etcd-key", str(d / f"{cert}.key")]
    return a


def test_fleet_over_tls_with_client_certificates(started, tmp_path, pki, etcd_pki, etcd_tls):
    good = TlsFleet(etcd_tls, "/tls", tls_args(etcd_pki))
    wait_for(lambda: good._run(["history", *good.common()]).returncode == 0, T(20),
             interval=0.1, what="etcd over TLS")
    # twins: no CA (etcd's certificate is not trusted), no client
    # certificate, a client certificate of another CA
    for args, why in ((["--etcd-cert", str(etcd_pki / "ops.crt"),
                        "--etcd-key", str(etcd_pki / "ops.key")], "SSL"),
                      (tls_args(etcd_pki, cert=None), ""),
                      (tls_args(etcd_pki, cert="stranger"), "")):
        r = TlsFleet(etcd_tls, "/tls", args)._run(
            ["history", "--etcd", etcd_tls, "--prefix", "/tls", *args])
        assert r.returncode == 1 and why in r.stderr, (args, r.stderr)

    cfg = Config(pki, tmp_path / "cfg")
    path = cfg.write()
    assert good.push_ok(path) == 1
    n = TlsNode(tmp_path / "nodes", pki, good, 0, tls=tls_args(etcd_pki))
    started.append(n)
    n.start_node(cfg)
    tg_echo(n)
    # the agent, a process of its own, reaches etcd with the same
    # certificates: the node's entry is written and a push reaches it
    wait_for(lambda: len((good.status()[1] or {}).get("nodes", [])) == 1, T(10), what="the node's entry")
    assert good.push_ok(cfg.write(text=cfg.text() + "\n# again\n")) == 2
    n.wait_rev(2, timeout=T(10))
    n.stop()

    # a node without its client certificate cannot start: etcd refuses it
    # and it has no cache of its own
    bare = TlsNode(tmp_path / "nodes", pki, good, 1, tls=tls_args(etcd_pki, cert=None))
    started.append(bare)
    bare.start_node(cfg, wait=False)
    wait_for(lambda: bare.proc.poll() is not None, T(20), what="the node without a certificate")
    assert bare.proc.returncode == 1
    assert "cannot get a revision from etcd" in bare.log()


def tg_echo(n):
    ctx = tg_tls.client_ctx(n.pki)
    with tg_tls.connect(n.addr(), ctx) as s:
        s.sendall(b"ping\n")
        assert tg_tls.recv_exact(s, 5) == b"ping\n"


def test_node_file_takes_the_etcd_tls_keys(started, tmp_path, pki, etcd_pki, etcd_tls):
    good = TlsFleet(etcd_tls, "/tls-file", tls_args(etcd_pki))
    wait_for(lambda: good._run(["history", *good.common()]).returncode == 0, T(20),
             interval=0.1, what="etcd over TLS")
    cfg = Config(pki, tmp_path / "cfg")
    assert good.push_ok(cfg.write()) == 1
    n = TlsNode(tmp_path / "nodes", pki, good, 0)
    node_file = tmp_path / "node.yaml"
    node_file.write_text(
        "fleet:\n"
        f"  etcd: [ \"{etcd_tls}\" ]\n"
        "  prefix: /tls-file\n"
        "  node: filenode\n"
        f"  cache_dir: {tmp_path / 'file-cache'}\n"
        f"  etcd_ca: {etcd_pki / 'ca.crt'}\n"
        f"  etcd_cert: {etcd_pki / 'ops.crt'}\n"
        f"  etcd_key: {etcd_pki / 'ops.key'}\n")
    n.node_file = node_file
    started.append(n)
    n.start_node(cfg)
    tg_echo(n)
    wait_for(lambda: [x["node"] for x in (good.status()[1] or {}).get("nodes", [])] == ["filenode"], T(10),
             what="the node file's entry")
    # the twin: a node file without the client certificate is refused
    r = subprocess.run([n.args()[0], "check", "-c", str(node_file)], capture_output=True,
                       text=True, timeout=T(20))
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text(node_file.read_text().replace("etcd_cert", "etcd_crt"))
    r = subprocess.run([n.args()[0], "check", "-c", str(bad)], capture_output=True, text=True,
                       timeout=T(20))
    assert r.returncode == 1 and 'unknown key "etcd_crt"' in r.stderr, r.stderr
