"""Inputs for the certificate-tool tests: the files operators actually hold
(other formats, broken chains, encrypted keys, truncated or garbage files)
made from the run's PKI, and servers that do not speak TLS."""

import datetime
import json
import socket
import subprocess
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import pkcs7, pkcs12

import tg_certs
import tg_proc

PASSWORD = "tollgate"


def tollgate(*args, timeout=None):
    """Runs `tollgate ARGS` with stdin closed (never a password prompt)."""
    return subprocess.run([tg_proc.TOLLGATE_BIN, *map(str, args)], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=timeout or tg_proc.T(60))


def tollgate_json(*args, timeout=None):
    """(CompletedProcess, parsed JSON of stdout) of `tollgate ARGS --json`."""
    r = tollgate(*args, "--json", timeout=timeout)
    assert r.stdout, f"no output (exit {r.returncode}): {r.stderr}"
    return r, json.loads(r.stdout)


def fingerprint(cert):
    """SHA-256 in tollgate's format, "AB:CD:..."."""
    return ":".join(f"{b:02X}" for b in cert.fingerprint(hashes.SHA256()))


def pem(*certs):
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


class Inputs:
    """Files under d, each named after what is wrong with it (or its format)."""

    def __init__(self, d, pki, bad_certs):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pki = pki
        self.leaf = tg_certs.load_cert(pki.path("server-ecdsa.crt"))
        self.inter = tg_certs.load_cert(pki.path("intermediate.crt"))
        self.root = tg_certs.load_cert(pki.path("root.crt"))
        self.key = serialization.load_pem_private_key(
            Path(pki.path("server-ecdsa.key")).read_bytes(), None)
        self.alice = tg_certs.load_cert(pki.path("alice.crt"))
        self.alice_key = serialization.load_pem_private_key(
            Path(pki.path("alice.key")).read_bytes(), None)
        self.bad = bad_certs
        self._make()

    def path(self, name):
        return str(self.dir / name)

    def _write(self, name, data, mode=0o644):
        p = self.dir / name
        p.write_bytes(data)
        p.chmod(mode)
        return str(p)

    def _make(self):
        w = self._write
        w("password.txt", f"{PASSWORD}\n".encode())
        w("wrong-password.txt", b"not-the-password\n")
        w("reversed.crt", pem(self.inter, self.leaf))
        w("no-intermediate.crt", pem(self.leaf, self.root))
        w("leaf-only.crt", pem(self.leaf))
        full = Path(self.pki.path("server-ecdsa.crt")).read_bytes()
        w("truncated.crt", full[: len(full) // 2])
        der = self.leaf.public_bytes(serialization.Encoding.DER)
        w("server.der", der)
        w("truncated.der", der[: len(der) - 40])
        w("garbage.bin", bytes(range(7, 256)) * 3)
        w("server.p7b", pkcs7.serialize_certificates([self.inter, self.leaf],
                                                     serialization.Encoding.DER))
        w("server-enc.key", self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASSWORD.encode())), 0o600)
        w("server-trad-enc.key", self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.BestAvailableEncryption(PASSWORD.encode())), 0o600)
        w("server.p12", pkcs12.serialize_key_and_certificates(
            b"server", self.key, self.leaf, [self.inter],
            serialization.BestAvailableEncryption(PASSWORD.encode())), 0o600)
        # What older OpenSSL, Windows and Java write: RC2-40 and 3DES.
        subprocess.run(["openssl", "pkcs12", "-export", "-legacy", "-in",
                        self.pki.path("server-ecdsa.crt"), "-inkey",
                        self.pki.path("server-ecdsa.key"), "-passout", f"pass:{PASSWORD}",
                        "-out", self.path("legacy.p12")], check=True, capture_output=True)
        self._make_ed25519()

    def _make_ed25519(self):
        inter_key = serialization.load_pem_private_key(
            Path(self.pki.path("intermediate.key")).read_bytes(), None)
        now = datetime.datetime.now(datetime.timezone.utc)
        for name in ("ed", "ed-other"):
            key = ed25519.Ed25519PrivateKey.generate()
            self._write(f"{name}.key", key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption()), 0o600)
            if name != "ed":
                continue
            cert = (x509.CertificateBuilder()
                    .subject_name(x509.Name.from_rfc4514_string("CN=ed25519"))
                    .issuer_name(self.inter.subject)
                    .public_key(key.public_key())
                    .serial_number(x509.random_serial_number())
                    .not_valid_before(now - datetime.timedelta(days=1))
                    .not_valid_after(now + datetime.timedelta(days=90))
                    .sign(inter_key, hashes.SHA256()))
            self._write("ed.crt", pem(cert, self.inter))


class RawServer:
    """A loopback TCP server that answers every connection with `answer`
    (after reading what the client sent first) or, with answer None, reads
    and says nothing until the client goes away."""

    def __init__(self, answer):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    @property
    def target(self):
        return f"127.0.0.1:{self.port}"

    def _run(self):
        conns = []
        while not self.stopped.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            conns.append(c)
            c.settimeout(2)
            try:
                c.recv(4096)
                if self.answer is not None:
                    c.sendall(self.answer)
            except OSError:
                pass
        for c in conns:
            c.close()

    def close(self):
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()


def closed_port():
    """A loopback port on which nothing listens (it was free a moment ago)."""
    return f"127.0.0.1:{tg_proc.free_port()}"
