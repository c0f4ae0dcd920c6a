"""The identity client certificates of the run's PKI (the `idents` fixture,
tg_certs.IDENTS) as tollgate's certificate tools see them: each verifies
as a client of the run's root, carries exactly its own subjectAltName
entries and CN, and the facts tg_certs computes for allow-lists
(fingerprint, serial) agree with `tollgate cert inspect`."""

import hashlib
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

import tg_certs
from certtools_helpers import tollgate, tollgate_json

# The subjectAltName entries as `tollgate cert inspect` writes them.
WANT_SANS = {
    "spiffe_web": ["URI:spiffe://prod.example/ns/default/sa/web"],
    "spiffe_db": ["URI:spiffe://prod.example/ns/data/sa/db"],
    "spiffe_other": ["URI:spiffe://staging.example/ns/default/sa/web"],
    "mail": ["email:alice@partner.example"],
    "ip": ["IP:10.1.2.3", "IP:2001:db8::7"],
    "dns": ["DNS:svc.partner.example"],
    "partner_api": [],
}


def test_every_ident_is_listed(idents):
    assert sorted(idents) == sorted(WANT_SANS) == sorted(tg_certs.IDENTS)


@pytest.mark.parametrize("name", sorted(WANT_SANS))
def test_ident(pki, foreign_pki, idents, name):
    crt, key = idents[name]
    r = tollgate("cert", "verify", crt, "--ca", pki.path("root.crt"), "--purpose", "client")
    assert r.returncode == 0, r.stdout + r.stderr
    # The rejecting twin: another CA does not vouch for it.
    r = tollgate("cert", "verify", crt, "--ca", foreign_pki.path("root.crt"), "--purpose",
                 "client")
    assert r.returncode == 1, r.stdout + r.stderr
    r = tollgate("cert", "match", "--cert", crt, "--key", key)
    assert r.returncode == 0, r.stdout + r.stderr

    r, j = tollgate_json("cert", "inspect", crt)
    assert r.returncode == 0, r.stderr
    leaf = j["files"][0]["certificates"][0]
    assert leaf["sans"] == WANT_SANS[name]
    assert leaf["subject"] == f"CN={tg_certs.IDENTS[name][0]},O=tollgate e2e"
    assert leaf["sha256_fingerprint"].replace(":", "").lower() == tg_certs.fingerprint_sha256(crt)
    serial = leaf["serial"].replace(":", "").lower()
    assert serial.lstrip("0") == tg_certs.serial_hex(crt).lstrip("0")
    assert len(tg_certs.spki_sha256(crt)) == 64


def test_spki_is_the_keys(idents):
    """Two identities, two keys: their SPKI pins differ, and each pin is
    that of the key file beside the certificate."""
    pins = set()
    for name, (crt, key) in idents.items():
        k = serialization.load_pem_private_key(Path(key).read_bytes(), password=None)
        spki = k.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        assert hashlib.sha256(spki).hexdigest() == tg_certs.spki_sha256(crt)
        pins.add(tg_certs.spki_sha256(crt))
    assert len(pins) == len(idents)
