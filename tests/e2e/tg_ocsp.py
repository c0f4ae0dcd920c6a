"""OCSP for the stapling tests: a small PKI whose server certificate names
an OCSP responder on loopback, OpenSSL's own responder (`openssl ocsp`), a
scriptable responder made with the `cryptography` package, and response
files."""

import datetime
import http.server
import os
import socket
import subprocess
import threading
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID

import tg_proc

UTC = datetime.timezone.utc


def _now():
    return datetime.datetime.now(UTC)


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tollgate ocsp e2e"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_pem(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM)


def _write_key(path, key):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(_key_pem(key))


class OcspPki:
    """root CA -> intermediate CA -> server leaf (localhost, 127.0.0.1) whose
    AIA names http://127.0.0.1:PORT/; a delegated responder certificate
    (id-kp-OCSPSigning, issued by the intermediate), and a foreign key."""

    def __init__(self, d, port):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        now = _now()
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = self._ca("ocsp root", self.root_key, self.root_key, None)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = self._ca("ocsp intermediate", self.ca_key, self.root_key, self.root)
        self.leaf_key = ec.generate_private_key(ec.SECP256R1())
        self.leaf = (x509.CertificateBuilder()
                     .subject_name(_name("localhost"))
                     .issuer_name(self.ca.subject)
                     .public_key(self.leaf_key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=90))
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                     .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                                    False)
                     .add_extension(x509.SubjectAlternativeName(
                         [x509.DNSName("localhost"),
                          x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]),
                         False)
                     .add_extension(x509.AuthorityInformationAccess([
                         x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                                x509.UniformResourceIdentifier(self.url))]),
                         False)
                     .sign(self.ca_key, hashes.SHA256()))
        self.resp_key = ec.generate_private_key(ec.SECP256R1())
        self.resp = (x509.CertificateBuilder()
                     .subject_name(_name("ocsp responder"))
                     .issuer_name(self.ca.subject)
                     .public_key(self.resp_key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(days=1))
                     .not_valid_after(now + datetime.timedelta(days=90))
                     .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
                     .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.OCSP_SIGNING]),
                                    False)
                     .sign(self.ca_key, hashes.SHA256()))
        # An impostor: the intermediate's name with a key nobody trusts.
        self.wrong_key = ec.generate_private_key(ec.SECP256R1())
        self.impostor = (x509.CertificateBuilder()
                         .subject_name(self.ca.subject)
                         .issuer_name(self.ca.subject)
                         .public_key(self.wrong_key.public_key())
                         .serial_number(x509.random_serial_number())
                         .not_valid_before(now - datetime.timedelta(days=1))
                         .not_valid_after(now + datetime.timedelta(days=90))
                         .sign(self.wrong_key, hashes.SHA256()))
        # Files: the server certificate with its chain (the issuer must be
        # there), its key, the trust anchor, the responder's.
        (self.dir / "server.crt").write_bytes(_pem(self.leaf) + _pem(self.ca))
        _write_key(self.dir / "server.key", self.leaf_key)
        (self.dir / "root.crt").write_bytes(_pem(self.root))
        (self.dir / "ca.crt").write_bytes(_pem(self.ca))
        (self.dir / "resp.crt").write_bytes(_pem(self.resp))
        _write_key(self.dir / "resp.key", self.resp_key)

    def _ca(self, cn, key, signer, issuer):
        now = _now()
        return (x509.CertificateBuilder()
                .subject_name(_name(cn))
                .issuer_name(issuer.subject if issuer else _name(cn))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=365))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                             key_encipherment=False, data_encipherment=False,
                                             key_agreement=False, key_cert_sign=True,
                                             crl_sign=True, encipher_only=False,
                                             decipher_only=False), True)
                .sign(signer, hashes.SHA256()))

    def path(self, name):
        return str(self.dir / name)

    def client(self, name, url=None, aia=True):
        """A client certificate issued by the intermediate (clientAuth), whose
        AIA names url (the loopback responder by default; none when not aia).
        Writes NAME.crt and NAME.key; returns the certificate."""
        now = _now()
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder()
             .subject_name(_name(name))
             .issuer_name(self.ca.subject)
             .public_key(key.public_key())
             .serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(days=1))
             .not_valid_after(now + datetime.timedelta(days=90))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
             .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False))
        if aia:
            b = b.add_extension(x509.AuthorityInformationAccess([
                x509.AccessDescription(AuthorityInformationAccessOID.OCSP,
                                       x509.UniformResourceIdentifier(url or self.url))]), False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        (self.dir / f"{name}.crt").write_bytes(_pem(cert))
        _write_key(self.dir / f"{name}.key", key)
        # The client CA bundle: the intermediate that issues clients and its root.
        (self.dir / "client-ca.crt").write_bytes(_pem(self.ca) + _pem(self.root))
        return cert

    def certificate_entry(self, **extra):
        d = {"cert": self.path("server.crt"), "key": self.path("server.key")}
        d.update(extra)
        return d

    def response(self, status="good", this_update=None, next_update=None, signer="ca",
                 leaf=None):
        """A DER OCSPResponse about the leaf. signer: "ca" (the issuer),
        "responder" (delegated), "wrong" (a key nobody trusts)."""
        now = _now()
        this_update = this_update or now - datetime.timedelta(minutes=1)
        next_update = next_update or now + datetime.timedelta(hours=1)
        rev_time = now - datetime.timedelta(hours=1) if status == "revoked" else None
        cert_status = {"good": ocsp.OCSPCertStatus.GOOD, "revoked": ocsp.OCSPCertStatus.REVOKED,
                       "unknown": ocsp.OCSPCertStatus.UNKNOWN}[status]
        b = ocsp.OCSPResponseBuilder().add_response(
            cert=leaf or self.leaf, issuer=self.ca, algorithm=hashes.SHA1(),
            cert_status=cert_status, this_update=this_update, next_update=next_update,
            revocation_time=rev_time,
            revocation_reason=x509.ReasonFlags.key_compromise if rev_time else None)
        if signer == "responder":
            b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, self.resp).certificates(
                [self.resp])
            key = self.resp_key
        elif signer == "wrong":
            b = b.responder_id(ocsp.OCSPResponderEncoding.NAME, self.impostor)
            key = self.wrong_key
        else:
            b = b.responder_id(ocsp.OCSPResponderEncoding.HASH, self.ca)
            key = self.ca_key
        return b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)

    def write_atomic(self, name, data):
        p = self.dir / name
        tmp = self.dir / (name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
        return str(p)


def _wait_port(port, proc=None, timeout=None):
    def up():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"responder exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False
    tg_proc.wait_for(up, timeout or tg_proc.T(10), what=f"OCSP responder on port {port}")


class OpensslResponder:
    """OpenSSL's responder (`openssl ocsp -index`, the leaf listed V or R,
    signed by the delegated responder certificate, -nmin for nextUpdate)
    behind a loopback HTTP server: `openssl ocsp -port` would listen on
    every address, so each request is answered with -reqin/-respout."""

    def __init__(self, pki, status="good", nmin=60, certs=None):
        """certs: [(certificate, "good" | "revoked")] to list; by default the
        server leaf with status."""
        self.pki = pki
        self.status = status
        self.nmin = nmin
        self.certs = certs
        self.http = None
        self.n = 0

    def write_index(self):
        lines = []
        for cert, status in self.certs or [(self.pki.leaf, self.status)]:
            exp = cert.not_valid_after.strftime("%y%m%d%H%M%SZ")
            serial = format(cert.serial_number, "X")
            if len(serial) % 2:
                serial = "0" + serial
            cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
            dn = f"/O=tollgate ocsp e2e/CN={cn}"
            if status == "revoked":
                rev = (_now() - datetime.timedelta(hours=1)).strftime("%y%m%d%H%M%SZ")
                lines.append(f"R\t{exp}\t{rev}\t{serial}\tunknown\t{dn}\n")
            else:
                lines.append(f"V\t{exp}\t\t{serial}\tunknown\t{dn}\n")
        Path(self.pki.path("index.txt")).write_text("".join(lines))
        Path(self.pki.path("index.txt.attr")).write_text("unique_subject = no\n")

    def answer(self, req):
        self.n += 1
        req_path = self.pki.path(f"req{self.n}.der")
        resp_path = self.pki.path(f"resp{self.n}.der")
        Path(req_path).write_bytes(req)
        p = subprocess.run(
            ["openssl", "ocsp", "-index", self.pki.path("index.txt"), "-rsigner",
             self.pki.path("resp.crt"), "-rkey", self.pki.path("resp.key"), "-CA",
             self.pki.path("ca.crt"), "-nmin", str(self.nmin), "-reqin", req_path,
             "-respout", resp_path],
            capture_output=True, timeout=tg_proc.T(20))
        assert p.returncode == 0, p.stderr
        return 200, Path(resp_path).read_bytes()

    def start(self):
        self.write_index()
        self.http = ScriptedResponder(self.pki.port, self.answer).start()
        return self

    @property
    def requests(self):
        return self.http.requests if self.http else 0

    def stop(self):
        if self.http is not None and not self.http.stopped:
            self.http.stop()


class ScriptedResponder:
    """An HTTP OCSP responder whose answer a test sets: `make(req_der)`
    returns (status code, body). Counts the requests it saw."""

    def __init__(self, port, make):
        self.port = port
        self.make = make
        self.requests = 0
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                owner.requests += 1
                owner.last_content_type = self.headers.get("Content-Type")
                code, data = owner.make(body)
                self.send_response(code)
                self.send_header("Content-Type", "application/ocsp-response")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        _wait_port(self.port)
        return self

    stopped = False

    def stop(self):
        if not self.stopped:
            self.server.shutdown()
            self.server.server_close()
        self.stopped = True


def s_client_status(addr, pki, tls="-tls1_3", ask=True, timeout=None):
    """Runs openssl s_client (asking for the certificate status when ask)
    and returns its stdout+stderr as text."""
    cmd = ["openssl", "s_client", "-connect", f"{addr[0]}:{addr[1]}", "-servername",
           "localhost", "-CAfile", pki.path("root.crt"), "-verify_return_error", tls, "-msg"]
    if ask:
        cmd.append("-status")
    p = subprocess.run(cmd, input=b"", capture_output=True, timeout=timeout or tg_proc.T(20))
    return (p.stdout + p.stderr).decode(errors="replace")


def stapled_status(text):
    """"good", "revoked", "unknown", or None when no response was stapled."""
    if "OCSP response: no response sent" in text or "OCSP Response Status" not in text:
        return None
    for s in ("good", "revoked", "unknown"):
        if f"Cert Status: {s}" in text:
            return s
    return "?"
