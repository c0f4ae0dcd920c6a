"""Client certificates an attacker would send: serial numbers far past RFC
5280's 20 octets, hundreds of SANs and dozens of OU components, a CN with an
embedded NUL, a BMPString CN, a CN of 300 characters. Each kind comes issued by the PKI's
intermediate (a CA-issued certificate gets past chain verification) and
self-signed (what anybody can present to client_auth: optional).

Long serials are made with the openssl command line, since the cryptography
package refuses serials over 159 bits; the rest with cryptography.

Also run as a script to write the fuzz seeds of fuzz_clientfacts:
    python3 tests/e2e/tg_hostile.py OUT_DIR
"""

import datetime
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KINDS = ("serial120", "serial300", "many_names", "nul_cn", "bmp_cn", "long_cn")
# Kinds whose facts exceed the limits tollgate forwards: refused with this
# reason even when a trusted CA issued them.
REFUSED = {"serial120": "serial_too_long", "serial300": "serial_too_long",
           "long_cn": "name_too_long"}

NUL_CN = "alice\x00.evil.example"
BMP_CN = "bmp-\u00fc\u4e2d"
N_SANS = 320
N_OUS = 40

_EXT = """basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth
"""


def _openssl(*args):
    r = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"openssl {' '.join(args)}:\n{r.stderr}"


def _serial_cert(out, name, octets, issuer):
    """A leaf with a serial of `octets` bytes (0x41...), by the openssl CLI."""
    crt, key, csr = out / f"{name}.crt", out / f"{name}.key", out / f"{name}.csr"
    serial = "0x" + "41" * octets
    ext = out / f"{name}.ext"
    ext.write_text(_EXT)
    if issuer is None:
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-subj", f"/O=tollgate e2e/CN={name}", "-set_serial", serial,
                 "-days", "30", "-keyout", str(key), "-out", str(crt), "-extensions", "v3",
                 "-config", str(_req_config(out)))
        return str(crt), str(key)
    inter_crt, inter_key = issuer
    _openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-subj", f"/O=tollgate e2e/CN={name}", "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", inter_crt, "-CAkey", inter_key,
             "-set_serial", serial, "-days", "30", "-sha256", "-extfile", str(ext),
             "-out", str(crt))
    crt.write_bytes(crt.read_bytes() + Path(inter_crt).read_bytes())
    return str(crt), str(key)


def _req_config(out):
    p = out / "req.cnf"
    p.write_text("[req]\ndistinguished_name=dn\n[dn]\n[v3]\n" + _EXT)
    return p


def _subject(kind):
    org = x509.NameAttribute(NameOID.ORGANIZATION_NAME, "tollgate e2e")
    if kind == "many_names":
        ous = [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"unit {i:02d} of a long name")
               for i in range(N_OUS)]
        return x509.Name([org, *ous, x509.NameAttribute(NameOID.COMMON_NAME, "many-names")])
    if kind == "nul_cn":
        return x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, NUL_CN)])
    if kind == "bmp_cn":
        return x509.Name([org, x509.NameAttribute(NameOID.COMMON_NAME, BMP_CN,
                                                  _type=_ASN1Type.BMPString)])
    if kind == "long_cn":
        # Past X.520's 64 characters, which the cryptography package warns of.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cn = x509.NameAttribute(NameOID.COMMON_NAME, "c" * 300, _validate=False)
        return x509.Name([org, cn])
    raise ValueError(kind)


def _named_cert(out, name, kind, issuer):
    now = datetime.datetime.now(datetime.timezone.utc)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _subject(kind)
    if issuer is None:
        signer, issuer_name, chain = key, subject, b""
    else:
        inter = x509.load_pem_x509_certificate(Path(issuer[0]).read_bytes())
        signer = serialization.load_pem_private_key(Path(issuer[1]).read_bytes(), password=None)
        issuer_name, chain = inter.subject, Path(issuer[0]).read_bytes()
    b = (x509.CertificateBuilder()
         .subject_name(subject).issuer_name(issuer_name).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if kind == "many_names":
        sans = [x509.DNSName(f"host-{i:03d}.clients.tollgate.example") for i in range(N_SANS)]
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(signer, hashes.SHA256())
    crt, keyp = out / f"{name}.crt", out / f"{name}.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + chain)
    keyp.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    keyp.chmod(0o600)
    return str(crt), str(keyp)


def mint(out_dir, issuer):
    """{(kind, "ca" | "self"): (cert path, key path)} for every kind. issuer:
    (intermediate cert path, its key path)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = {}
    for kind in KINDS:
        for how, iss in (("ca", issuer), ("self", None)):
            name = f"{kind}-{how}"
            if kind.startswith("serial"):
                made[(kind, how)] = _serial_cert(out, name, int(kind[len("serial"):]), iss)
            else:
                made[(kind, how)] = _named_cert(out, name, kind, iss)
    return made


def _pem_certs(path):
    marker = b"-----BEGIN CERTIFICATE-----"
    return [x509.load_pem_x509_certificate(marker + p)
            for p in Path(path).read_bytes().split(marker)[1:]]


def main(out_dir):
    """Writes one seed per certificate: its DER followed by its chain's."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "seed CA")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
              .public_key(ca_key.public_key()).serial_number(1)
              .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .sign(ca_key, hashes.SHA256()))
        (tmp / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        (tmp / "ca.key").write_bytes(ca_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        made = mint(tmp / "out", (str(tmp / "ca.crt"), str(tmp / "ca.key")))
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        for (kind, how), (crt, _) in sorted(made.items()):
            der = b"".join(c.public_bytes(serialization.Encoding.DER) for c in _pem_certs(crt))
            Path(out_dir, f"{kind}-{how}.der").write_bytes(der)


if __name__ == "__main__":
    main(sys.argv[1])
