"""README's "Run it in front of your service in five minutes", run as written:
the same config text and commands (README must hold them verbatim), with
free loopback ports in place of 8080, 8443 and 9901."""

import socket
import subprocess
import urllib.request

import pytest

from tg_proc import REPO, T, Tollgate, free_port, run_tollgate, wait_for

ONE_WAY = """\
certificates:
  site: { cert: pki/server-ecdsa.crt, key: pki/server-ecdsa.key }
target_groups:
  app:
    targets: [ { address: 127.0.0.1:8080 } ]
listeners:
  - name: app
    protocol: https
    listen: 127.0.0.1:8443
    tls: { mode: one-way, certificates: [site] }
    default_target_group: app
admin: { listen: 127.0.0.1:9901 }
"""

MUTUAL = """\
certificates:
  site: { cert: pki/server-ecdsa.crt, key: pki/server-ecdsa.key }
client_cas:
  clients: { ca: pki/ca-bundle.crt, crl: pki/clients.crl }
target_groups:
  app:
    targets: [ { address: 127.0.0.1:8080 } ]
listeners:
  - name: app
    protocol: https
    listen: 127.0.0.1:8443
    tls: { mode: mutual, certificates: [site], client_ca: clients }
    default_target_group: app
admin: { listen: 127.0.0.1:9901 }
"""

# The command lines of the walk-through, as README gives them (comments after
# them aside); the test runs each of them with the ports replaced.
BACKEND = "python3 -m http.server 8080 --bind 127.0.0.1 --directory site &"
PKI_INIT = "tollgate pki init pki"
CHECK = "tollgate check -c tollgate.yaml"
RUN = "tollgate run -c tollgate.yaml &"
CURL = "curl --cacert pki/ca-bundle.crt https://localhost:8443/"
RELOAD = "curl -X POST http://127.0.0.1:9901/reload"
CURL_CERT = ("curl --cacert pki/ca-bundle.crt --cert pki/alice.crt --key pki/alice.key "
             "https://localhost:8443/")
COMMANDS = [BACKEND, PKI_INIT, CHECK, RUN, CURL, RELOAD, CURL_CERT]
HELLO = "hello from the backend"


def readme_holds(config=(), commands=()):
    text = (REPO / "README.md").read_text()
    lines = {ln.split("  #")[0].rstrip() for ln in text.splitlines()}
    return (all(f"```yaml\n{c}```" in text for c in config)
            and all(c in lines for c in commands))


def test_readme_holds_the_walkthrough():
    assert readme_holds([ONE_WAY, MUTUAL], COMMANDS)
    assert f'echo "{HELLO}"' in (REPO / "README.md").read_text()


def test_readme_check_notices_drift():
    """The twin: a config or command README does not hold is noticed."""
    assert not readme_holds([ONE_WAY.replace("one-way", "mutual")])
    assert not readme_holds([ONE_WAY + "workers: 2\n"])
    assert not readme_holds(commands=[CURL.replace("--cacert", "--capath")])


def sh(cmd, cwd, ports, check=True):
    """Runs one README command line (without its trailing '&') with the ports
    replaced, in cwd, with our tollgate binary."""
    argv = cmd.rstrip(" &").split()
    argv = [a.replace("8080", str(ports[8080])).replace("8443", str(ports[8443]))
             .replace("9901", str(ports[9901])) for a in argv]
    if argv[0] == "tollgate":
        r = run_tollgate(argv[1:], cwd=str(cwd))
    else:
        r = subprocess.run(["curl", "-sS", "--max-time", str(T(10)), *argv[1:]]
                           if argv[0] == "curl" else argv,
                           capture_output=True, text=True, cwd=str(cwd), timeout=T(30))
    if check:
        assert r.returncode == 0, (cmd, r.stdout, r.stderr)
    return r


def with_ports(text, ports):
    for k, v in ports.items():
        text = text.replace(f"127.0.0.1:{k}", f"127.0.0.1:{v}")
    return text


def listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def walk_dir(tmp_path):
    """The empty directory of the walk-through, with its backend running."""
    ports = {8080: free_port(), 8443: free_port(), 9901: free_port()}
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text(HELLO + "\n")
    argv = BACKEND.rstrip(" &").replace("8080", str(ports[8080])).split()
    be = subprocess.Popen(argv, cwd=str(tmp_path), stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    tg = Tollgate(tmp_path, None, name="tollgate")
    try:
        wait_for(lambda: listening(ports[8080]), T(10), what="the python backend")
        yield tmp_path, ports, tg
    finally:
        tg.stop()
        be.terminate()
        be.wait(T(10))


def test_walkthrough_one_way_then_mutual(walk_dir):
    d, ports, tg = walk_dir
    assert (d / "tollgate.yaml") == tg.config_path
    sh(PKI_INIT, d, ports)
    tg.write_raw_config(with_ports(ONE_WAY, ports))
    assert "configuration ok" in sh(CHECK, d, ports).stdout
    tg.start_text(with_ports(ONE_WAY, ports), {"app": ports[8443]})
    assert sh(CURL, d, ports).stdout == HELLO + "\n"
    # the twin: without the CA the client does not trust the server
    r = sh(CURL.replace("--cacert pki/ca-bundle.crt ", ""), d, ports, check=False)
    assert r.returncode != 0 and HELLO not in r.stdout

    tg.write_raw_config(with_ports(MUTUAL, ports))
    assert "configuration ok" in sh(CHECK, d, ports).stdout
    assert '"result": "ok"' in sh(RELOAD, d, ports).stdout
    tg.wait_ready(generation=2)
    assert sh(CURL_CERT, d, ports).stdout == HELLO + "\n"
    r = sh(CURL, d, ports, check=False)
    assert r.returncode != 0 and HELLO not in r.stdout
    wait_for(lambda: any(e["reason"] == "no_client_cert" for e in tg.rejections()), T(10),
             what="reason=no_client_cert")
    r = sh(CURL_CERT.replace("alice", "revoked"), d, ports, check=False)
    assert r.returncode != 0 and HELLO not in r.stdout
    wait_for(lambda: any(e["reason"] == "cert_revoked" for e in tg.rejections()), T(10),
             what="reason=cert_revoked")
