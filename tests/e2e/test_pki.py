"""`tollgate pki init`: the files, their modes, and chains that openssl accepts."""

import os
import re
import select
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography import x509

import tg_certs
from tg_http import https_listener
from tg_proc import TOLLGATE_BIN, T, run_tollgate

EXPECTED = [
    "root.crt", "root.key", "intermediate.crt", "intermediate.key", "ca-bundle.crt",
    "server-ecdsa.crt", "server-ecdsa.key", "server-rsa.crt", "server-rsa.key",
    "alice.crt", "alice.key", "alice.p12", "bob.crt", "bob.key", "bob.p12",
    "revoked.crt", "revoked.key", "revoked.p12", "clients.crl", "p12-password.txt",
]


def verify(pki, cert, *extra):
    r = subprocess.run(["openssl", "verify", "-CAfile", pki.path("root.crt"), "-untrusted",
                        pki.path("intermediate.crt"), *extra, cert],
                       capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout + r.stderr


def test_all_files_written(pki):
    missing = [f for f in EXPECTED if not (pki.dir / f).is_file()]
    assert not missing, f"pki init did not write {missing}"


def test_private_keys_are_0600(pki):
    keys = sorted(pki.dir.glob("*.key"))
    assert len(keys) >= 7
    modes = {k.name: stat.S_IMODE(k.stat().st_mode) for k in keys}
    assert all(m == 0o600 for m in modes.values()), modes


def test_pkcs12_files_are_not_world_readable(pki):
    """A .p12 holds the private key too."""
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in pki.dir.glob("*.p12")}
    assert modes and all(int(m, 8) & 0o077 == 0 for m in modes.values()), modes


def test_public_files_are_readable(pki):
    for f in ("root.crt", "ca-bundle.crt", "server-ecdsa.crt", "clients.crl"):
        assert stat.S_IMODE((pki.dir / f).stat().st_mode) & 0o444 == 0o444, f


@pytest.mark.parametrize("name", ["server-ecdsa", "server-rsa"])
def test_server_chain_verifies_for_its_names(pki, name):
    crt = pki.path(f"{name}.crt")
    rc, out = verify(pki, crt, "-purpose", "sslserver", "-verify_hostname", "localhost")
    assert rc == 0, out
    for ip in ("127.0.0.1", "::1"):
        rc, out = verify(pki, crt, "-purpose", "sslserver", "-verify_ip", ip)
        assert rc == 0, out
    # Rejecting twin: a name it does not carry.
    rc, out = verify(pki, crt, "-purpose", "sslserver", "-verify_hostname", "example.com")
    assert rc != 0 and "mismatch" in out.lower(), out


@pytest.mark.parametrize("name,keytype,bits", [("server-ecdsa", ec.EllipticCurvePrivateKey, 256),
                                               ("server-rsa", rsa.RSAPrivateKey, 2048)])
def test_server_files_hold_leaf_then_intermediate_and_matching_key(pki, name, keytype, bits):
    certs = tg_certs.load_certs(pki.path(f"{name}.crt"))
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    assert len(certs) == 2, "expected leaf + intermediate"
    assert certs[1] == inter
    assert certs[0].issuer == inter.subject
    key = serialization.load_pem_private_key(Path(pki.path(f"{name}.key")).read_bytes(), None)
    assert isinstance(key, keytype)
    assert key.key_size == bits
    pub = lambda k: k.public_bytes(serialization.Encoding.DER,  # noqa: E731
                                   serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pub(key.public_key()) == pub(certs[0].public_key())
    # Rejecting twin: the other server's key does not match this leaf.
    other = "server-rsa" if name == "server-ecdsa" else "server-ecdsa"
    okey = serialization.load_pem_private_key(Path(pki.path(f"{other}.key")).read_bytes(), None)
    assert pub(okey.public_key()) != pub(certs[0].public_key())


def test_ca_bundle_is_intermediate_then_root(pki):
    bundle = tg_certs.load_certs(pki.path("ca-bundle.crt"))
    assert bundle == [tg_certs.load_cert(pki.path("intermediate.crt")),
                      tg_certs.load_cert(pki.path("root.crt"))]


@pytest.mark.parametrize("client", ["alice", "bob"])
def test_client_cert_is_for_client_auth(pki, client):
    crt = pki.path(f"{client}.crt")
    rc, out = verify(pki, crt, "-purpose", "sslclient", "-crl_check_all", "-CRLfile",
                     pki.path("clients.crl"))
    assert rc == 0, out
    leaf = tg_certs.load_cert(crt)
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.CLIENT_AUTH in eku
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == client
    # Rejecting twin: a client certificate is not a server certificate.
    rc, out = verify(pki, crt, "-purpose", "sslserver")
    assert rc != 0, out


def test_revoked_client_is_in_the_crl(pki):
    crt = pki.path("revoked.crt")
    rc, out = verify(pki, crt, "-purpose", "sslclient")
    assert rc == 0, out  # a good certificate in itself...
    rc, out = verify(pki, crt, "-purpose", "sslclient", "-crl_check", "-CRLfile",
                     pki.path("clients.crl"))
    assert rc != 0 and "revoked" in out, out  # ...until the CRL is consulted


def test_crl_file_holds_intermediate_and_root_crls(pki):
    text = Path(pki.path("clients.crl")).read_bytes()
    assert text.count(b"-----BEGIN X509 CRL-----") == 2
    crls = [x509.load_pem_x509_crl(b"-----BEGIN X509 CRL-----" + part)
            for part in text.split(b"-----BEGIN X509 CRL-----")[1:]]
    issuers = {c.issuer for c in crls}
    assert issuers == {tg_certs.load_cert(pki.path("intermediate.crt")).subject,
                       tg_certs.load_cert(pki.path("root.crt")).subject}
    revoked_serial = tg_certs.load_cert(pki.path("revoked.crt")).serial_number
    alice_serial = tg_certs.load_cert(pki.path("alice.crt")).serial_number
    serials = {r.serial_number for c in crls for r in c}
    assert revoked_serial in serials
    assert alice_serial not in serials


def test_pkcs12_opens_with_the_documented_password(pki):
    pw = Path(pki.path("p12-password.txt")).read_text().strip()
    key, cert, extra = pkcs12.load_key_and_certificates(
        Path(pki.path("alice.p12")).read_bytes(), pw.encode())
    assert cert == tg_certs.load_cert(pki.path("alice.crt"))
    assert key is not None
    with pytest.raises(ValueError):
        pkcs12.load_key_and_certificates(Path(pki.path("alice.p12")).read_bytes(), b"wrong")


def test_pkcs12_password_is_random_per_run(tmp_path):
    """Each run makes its own password: at least 128 bits, written 0600
    beside the .p12 files, which open with it and not with the fixed
    "tollgate" of older versions (the twin of the accepted password)."""
    pws = []
    for run in ("one", "two"):
        d = tmp_path / run
        r = run_tollgate(["pki", "init", str(d), "--clients", "carol"])
        assert r.returncode == 0, r.stderr
        f = d / "p12-password.txt"
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        pw = f.read_text()
        assert pw.endswith("\n") and pw.count("\n") == 1, repr(pw)
        pw = pw.strip()
        assert len(pw) >= 32 and all(c in "0123456789abcdef" for c in pw), pw
        for name in ("carol.p12", "revoked.p12"):
            data = (d / name).read_bytes()
            key, cert, _ = pkcs12.load_key_and_certificates(data, pw.encode())
            assert cert == tg_certs.load_cert(str(d / name.replace(".p12", ".crt")))
            assert key is not None
            with pytest.raises(ValueError):
                pkcs12.load_key_and_certificates(data, b"tollgate")
        # openssl agrees, reading the password from the file as documented.
        ok = subprocess.run(["openssl", "pkcs12", "-in", str(d / "carol.p12"), "-noout",
                             "-passin", f"file:{f}"], capture_output=True, timeout=30)
        assert ok.returncode == 0, ok.stderr
        bad = subprocess.run(["openssl", "pkcs12", "-in", str(d / "carol.p12"), "-noout",
                              "-passin", "pass:tollgate"], capture_output=True, timeout=30)
        assert bad.returncode != 0
        pws.append(pw)
    assert pws[0] != pws[1]


def test_foreign_pki_does_not_chain_to_ours(pki, foreign_pki):
    r = subprocess.run(["openssl", "verify", "-CAfile", pki.path("root.crt"), "-untrusted",
                        foreign_pki.path("intermediate.crt"), foreign_pki.path("alice.crt")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0, r.stdout
    rc, out = verify(foreign_pki, foreign_pki.path("alice.crt"))
    assert rc == 0, out


def test_pki_init_rsa_and_extra_hosts(tmp_path):
    d = tmp_path / "p"
    r = run_tollgate(["pki", "init", str(d), "--key", "rsa", "--hosts", "api.test,10.1.2.3",
                      "--clients", "carol"])
    assert r.returncode == 0, r.stderr
    p = tg_certs.Pki(d)
    root_key = serialization.load_pem_private_key(Path(p.path("root.key")).read_bytes(), None)
    assert isinstance(root_key, rsa.RSAPrivateKey)
    assert (d / "carol.p12").is_file() and not (d / "alice.crt").exists()
    rc, out = verify(p, p.path("server-ecdsa.crt"), "-verify_hostname", "api.test")
    assert rc == 0, out
    rc, out = verify(p, p.path("server-rsa.crt"), "-verify_ip", "10.1.2.3")
    assert rc == 0, out
    rc, out = verify(p, p.path("server-rsa.crt"), "-verify_hostname", "other.test")
    assert rc != 0, out


def test_pki_init_default_is_ecdsa(pki):
    root_key = serialization.load_pem_private_key(Path(pki.path("root.key")).read_bytes(), None)
    assert isinstance(root_key, ec.EllipticCurvePrivateKey)


@pytest.mark.parametrize("args", [["pki", "init"], ["pki", "init", "/tmp/x", "--key", "dsa"]])
def test_pki_init_usage_errors_exit_2(args):
    r = run_tollgate(args)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert r.stderr.strip()


def demo_howto(d):
    """What `tollgate demo --dir d` prints before it serves (it is stopped
    once the text is out: the test does not depend on its fixed ports)."""
    p = subprocess.Popen([TOLLGATE_BIN, "demo", "--dir", str(d)], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                         start_new_session=True)
    out = b""
    try:
        deadline = time.monotonic() + T(30)
        while b"Stop with Ctrl-C" not in out and time.monotonic() < deadline:
            ready, _, _ = select.select([p.stdout], [], [], 0.2)
            if ready:
                chunk = os.read(p.stdout.fileno(), 65536)
                if not chunk:
                    break
                out += chunk
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(T(10))
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(T(10))
        p.stdout.close()
    text = out.decode(errors="replace")
    assert "Stop with Ctrl-C" in text, text
    return text


def test_demo_prints_a_working_p12_command(tmp_path, tollgate):
    """The demo's curl command for alice.p12 takes the password from
    p12-password.txt and is accepted by a mutual listener with the demo's
    PKI; twin: the same command with the old fixed password fails."""
    d = tmp_path / "demo"
    text = demo_howto(d)
    m = re.search(r"^ +(curl [^\n]*--cert-type P12 \\\n[^\n]*alice\.p12[^\n]*)$", text, re.M)
    assert m, f"no PKCS#12 command in the demo's text:\n{text}"
    cmd = m.group(1).replace("\\\n", " ")
    assert f"$(cat {d}/pki/p12-password.txt)" in cmd, cmd
    assert stat.S_IMODE((d / "pki" / "p12-password.txt").stat().st_mode) == 0o600

    pki = d / "pki"
    tg = tollgate({
        "certificates": {"ecdsa": {"cert": str(pki / "server-ecdsa.crt"),
                                   "key": str(pki / "server-ecdsa.key")}},
        "client_cas": {"pki": {"ca": str(pki / "ca-bundle.crt"), "crl": str(pki / "clients.crl")}},
        "target_groups": {"g": {"targets": [{"address": "builtin:echo"}]}},
        "listeners": [https_listener(mode="mutual")]})
    here = cmd.replace("https://localhost:8444/", f"https://localhost:{tg.ports['main']}/")
    assert here != cmd, cmd
    r = subprocess.run(["bash", "-c", here], capture_output=True, text=True, timeout=T(30))
    assert r.returncode == 0, (here, r.stderr)
    assert '"x-client-verify":"SUCCESS"' in r.stdout and "CN=alice" in r.stdout, r.stdout

    old = here.replace(f"$(cat {d}/pki/p12-password.txt)", "tollgate")
    r = subprocess.run(["bash", "-c", old], capture_output=True, text=True, timeout=T(30))
    assert r.returncode != 0 and "SUCCESS" not in r.stdout, (old, r.stdout)
