"""The throwaway PKI of a test run: what `tollgate pki init` wrote, plus
purpose-made bad client certificates and identity client certificates
(subjectAltName URIs, emails, IPs, DNS names) signed by its intermediate
with the `cryptography` package."""

import datetime
import hashlib
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import tg_proc

def load_cert(path):
    """The first certificate of a PEM file."""
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def load_certs(path):
    """Every certificate of a PEM file, in order."""
    marker = b"-----BEGIN CERTIFICATE-----"
    parts = Path(path).read_bytes().split(marker)[1:]
    return [x509.load_pem_x509_certificate(marker + p) for p in parts]


def der_of(path):
    return load_cert(path).public_bytes(serialization.Encoding.DER)


def fingerprint_sha256(path):
    """Lower-case hex SHA-256 of the first certificate's DER, as
    X-Client-Fingerprint and the allow-lists' fingerprint_sha256 take it."""
    return hashlib.sha256(der_of(path)).hexdigest()


def spki_sha256(path):
    """Lower-case hex SHA-256 of the first certificate's DER
    SubjectPublicKeyInfo (the allow-lists' spki_sha256)."""
    spki = load_cert(path).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def serial_hex(path):
    """The first certificate's serial number as lower-case hex (even
    length), as the allow-lists' serial takes it."""
    n = load_cert(path).serial_number
    h = format(n, "x")
    return h if len(h) % 2 == 0 else "0" + h


class Pki:
    def __init__(self, d):
        self.dir = Path(d)

    def path(self, name):
        return str(self.dir / name)

    # Config fragments pointing at this PKI (absolute paths).
    def certificates(self):
        return {
            "ecdsa": {"cert": self.path("server-ecdsa.crt"), "key": self.path("server-ecdsa.key")},
            "rsa": {"cert": self.path("server-rsa.crt"), "key": self.path("server-rsa.key")},
        }

    def client_cas(self):
        return {"pki": {"ca": self.path("root.crt"), "crl": self.path("clients.crl")}}

    def client(self, name):
        """(cert file, key file) of a client."""
        return self.path(f"{name}.crt"), self.path(f"{name}.key")


def _name(cn, org="tollgate e2e"):
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(path, key):
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


_SAN_KINDS = {
    "dns": x509.DNSName,
    "uri": x509.UniformResourceIdentifier,
    "email": x509.RFC822Name,
    "ip": lambda v: x509.IPAddress(ipaddress.ip_address(v)),
}


def san(entry):
    """One subjectAltName entry: a plain string is a DNS name, a (kind,
    value) tuple with kind "dns", "uri", "email" or "ip" that kind, and an
    x509.GeneralName is taken as it is."""
    if isinstance(entry, x509.GeneralName):
        return entry
    if isinstance(entry, str):
        return x509.DNSName(entry)
    kind, value = entry
    return _SAN_KINDS[kind](value)


def make_cert(out_dir, name, *, issuer_cert=None, issuer_key=None, not_before=None,
              not_after=None, eku=(ExtendedKeyUsageOID.CLIENT_AUTH,), sans=None,
              chain=(), cn=None, key=None, digest=None):
    """Writes NAME.crt (leaf + chain) and NAME.key into out_dir; returns
    (cert path, key path). Self-signed when issuer_key is None. key: the
    leaf's private key (default a new P-256 one); digest: the signature's
    hash (default SHA-256); sans: subjectAltName entries as san() takes
    them (["localhost", ("uri", "spiffe://x/y"), ("ip", "10.1.2.3")])."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = key or ec.generate_private_key(ec.SECP256R1())
    subject = _name(cn or name)
    self_signed = issuer_key is None
    issuer_name = subject if self_signed else issuer_cert.subject
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_name)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(not_before or now - datetime.timedelta(days=1))
         .not_valid_after(not_after or now + datetime.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=False, crl_sign=False,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage(list(eku)), critical=False)
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName([san(e) for e in sans]),
                            critical=False)
    if not self_signed:
        b = b.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    cert = b.sign(key if self_signed else issuer_key, digest or hashes.SHA256())
    out_dir = Path(out_dir)
    crt_path, key_path = out_dir / f"{name}.crt", out_dir / f"{name}.key"
    pem = cert.public_bytes(serialization.Encoding.PEM)
    for c in chain:
        pem += c.public_bytes(serialization.Encoding.PEM)
    crt_path.write_bytes(pem)
    _write_key(key_path, key)
    return str(crt_path), str(key_path)


def make_ca(out_dir, name, issuer_cert=None, issuer_key=None):
    """A CA certificate (no path length limit); self-signed when no issuer.
    Writes NAME.crt; returns (cert, key)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(name)
    signer = issuer_key or key
    b = (x509.CertificateBuilder()
         .subject_name(subject)
         .issuer_name(issuer_cert.subject if issuer_cert is not None else subject)
         .public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=365))
         .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                      key_encipherment=False, data_encipherment=False,
                                      key_agreement=False, key_cert_sign=True, crl_sign=True,
                                      encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
             signer.public_key()), critical=False))
    cert = b.sign(signer, hashes.SHA256())
    Path(out_dir, f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def mint_deep_chain(out_dir):
    """root <- ca1 <- ca2 <- leaf "deep" (two intermediates, no path length
    limits). Returns (root cert path, (leaf file with ca2 and ca1, key))."""
    out_dir = Path(out_dir)
    root, root_key = make_ca(out_dir, "deep-root")
    ca1, ca1_key = make_ca(out_dir, "deep-ca1", root, root_key)
    ca2, ca2_key = make_ca(out_dir, "deep-ca2", ca1, ca1_key)
    leaf = make_cert(out_dir, "deep", issuer_cert=ca2, issuer_key=ca2_key, chain=(ca2, ca1))
    return str(out_dir / "deep-root.crt"), leaf


def mint_chains(out_dir, most):
    """One root and, for n = 0..most, a client certificate n intermediates
    below it: root <- ca1 <- ... <- caN <- leaf (no path length limits).
    Returns (root cert path, {n: (leaf file with caN..ca1, key)})."""
    out_dir = Path(out_dir)
    root, root_key = make_ca(out_dir, "chain-root")
    leaves = {0: make_cert(out_dir, "chain-leaf0", issuer_cert=root, issuer_key=root_key)}
    cas = []
    issuer, issuer_key = root, root_key
    for n in range(1, most + 1):
        issuer, issuer_key = make_ca(out_dir, f"chain-ca{n}", issuer, issuer_key)
        cas.insert(0, issuer)
        leaves[n] = make_cert(out_dir, f"chain-leaf{n}", issuer_cert=issuer,
                              issuer_key=issuer_key, chain=tuple(cas))
    return str(out_dir / "chain-root.crt"), leaves


# Identity client certificates minted by mint_pki: name -> (CN, sans).
IDENTS = {
    "spiffe_web": ("ident-spiffe-web", [("uri", "spiffe://prod.example/ns/default/sa/web")]),
    "spiffe_db": ("ident-spiffe-db", [("uri", "spiffe://prod.example/ns/data/sa/db")]),
    "spiffe_other": ("ident-spiffe-other",
                     [("uri", "spiffe://staging.example/ns/default/sa/web")]),
    "mail": ("ident-mail", [("email", "alice@partner.example")]),
    "ip": ("ident-ip", [("ip", "10.1.2.3"), ("ip", "2001:db8::7")]),
    "dns": ("ident-dns", [("dns", "svc.partner.example")]),
    "partner_api": ("partner-api", None),
}


def mint_pki(base):
    """Runs `tollgate pki init` twice (ours and a foreign CA) and makes the
    bad and the identity client certificates. Returns (pki, foreign, bad,
    idents) where bad maps a kind and idents a name of IDENTS to (cert
    path, key path); each identity certificate is valid, signed by the
    intermediate (chain included) and differs from the others only in its
    CN and subjectAltName (IDENTS)."""
    base = Path(base)
    ours, foreign = base / "pki", base / "foreign"
    for d, clients in ((ours, "alice,bob"), (foreign, "alice")):
        r = tg_proc.run_tollgate(["pki", "init", str(d), "--clients", clients])
        assert r.returncode == 0, f"pki init {d} failed ({r.returncode}):\n{r.stdout}{r.stderr}"
    pki, fpki = Pki(ours), Pki(foreign)

    inter_cert = load_cert(pki.path("intermediate.crt"))
    inter_key = serialization.load_pem_private_key(
        Path(pki.path("intermediate.key")).read_bytes(), password=None)
    now = datetime.datetime.now(datetime.timezone.utc)
    day = datetime.timedelta(days=1)
    bad_dir = base / "bad"
    bad_dir.mkdir()
    signed = dict(issuer_cert=inter_cert, issuer_key=inter_key, chain=(inter_cert,))
    bad = {
        "expired": make_cert(bad_dir, "expired", not_before=now - 30 * day,
                             not_after=now - day, **signed),
        "not_yet_valid": make_cert(bad_dir, "notyet", not_before=now + 10 * day,
                                   not_after=now + 40 * day, **signed),
        "self_signed": make_cert(bad_dir, "selfsigned"),
        "server_only": make_cert(bad_dir, "serveronly", eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                 **signed),
        # A valid twin made by the same code path, so a failure of the bad
        # ones cannot be blamed on how this module builds certificates.
        "good_minted": make_cert(bad_dir, "goodminted", **signed),
        # Server certificates for `tollgate check` warnings.
        "server_expiring": make_cert(bad_dir, "server-expiring", not_after=now + 10 * day,
                                     eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                     sans=["localhost"], **signed),
        "server_fresh": make_cert(bad_dir, "server-fresh", not_after=now + 300 * day,
                                  eku=(ExtendedKeyUsageOID.SERVER_AUTH,),
                                  sans=["localhost"], **signed),
    }
    ident_dir = base / "idents"
    ident_dir.mkdir()
    idents = {name: make_cert(ident_dir, f"ident-{name}", cn=cn, sans=sans, **signed)
              for name, (cn, sans) in IDENTS.items()}
    return pki, fpki, bad, idents
