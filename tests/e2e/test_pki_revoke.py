"""`tollgate pki revoke`: a client of a `pki init` PKI added to its CA's CRL
in clients.crl (entries kept, next CRL number, both CRLs signed again, the
file replaced atomically), what openssl makes of the result, the refusals,
and a running tollgate closing the revoked client's live connection."""

import datetime
import os
import re
import stat
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

import tg_certs
import tg_tls
from test_live_trust import echo_ok, is_closed
from tg_proc import T, group, listener, run_tollgate

PEM_CRL = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\n", re.S)


def init(base, name="pki", clients="alice,bob"):
    d = Path(base) / name
    r = run_tollgate(["pki", "init", str(d), "--clients", clients])
    assert r.returncode == 0, r.stdout + r.stderr
    return tg_certs.Pki(d)


def revoke(pki, *args):
    return run_tollgate(["pki", "revoke", str(pki.dir), *args])


def crls(pki):
    """The CRLs of clients.crl, in file order."""
    data = (pki.dir / "clients.crl").read_bytes()
    return [x509.load_pem_x509_crl(b) for b in PEM_CRL.findall(data)]


def ca(pki, name):
    return tg_certs.load_cert(pki.path(f"{name}.crt"))


def serial(pki, name):
    return tg_certs.load_cert(pki.path(f"{name}.crt")).serial_number


def number(crl):
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def openssl_verify(pki, name):
    return subprocess.run(
        ["openssl", "verify", "-crl_check_all", "-CAfile", pki.path("root.crt"),
         "-untrusted", pki.path("intermediate.crt"), "-CRLfile", pki.path("clients.crl"),
         pki.path(f"{name}.crt")],
        capture_output=True, text=True, timeout=T(30))


def test_revoke_adds_the_serial_to_the_intermediates_crl(tmp_path):
    """alice's serial lands on the intermediate's CRL (the "revoked" client
    of pki init stays on it), both CRLs get CRL number 2 and verify with
    their CA, the root's CRL stays empty, bob is on neither (twin), and
    the command says what it did."""
    pki = init(tmp_path)
    before = crls(pki)
    assert [number(c) for c in before] == [1, 1]
    r = revoke(pki, "alice")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(rf"serial\s+{serial(pki, 'alice'):032x}\n", out), out
    assert "CN=alice" in out and "intermediate" in out, out
    assert re.search(r"CRL number\s+2\n", out), out
    assert re.search(r"next update\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\n", out), out

    inter, root = crls(pki)
    assert inter.issuer == ca(pki, "intermediate").subject
    assert root.issuer == ca(pki, "root").subject
    assert inter.is_signature_valid(ca(pki, "intermediate").public_key())
    assert root.is_signature_valid(ca(pki, "root").public_key())
    assert number(inter) == 2 and number(root) == 2
    listed = {e.serial_number for e in inter}
    assert listed == {serial(pki, "alice"), serial(pki, "revoked")}
    assert serial(pki, "bob") not in listed
    assert len(list(root)) == 0
    assert stat.S_IMODE((pki.dir / "clients.crl").stat().st_mode) == 0o644
    # RFC 5280 §5.3.1: no reason given, no reason extension.
    entry = inter.get_revoked_certificate_by_serial_number(serial(pki, "alice"))
    assert not any(isinstance(e.value, x509.CRLReason) for e in entry.extensions)

    text = subprocess.run(["openssl", "crl", "-in", pki.path("clients.crl"), "-noout", "-text"],
                          capture_output=True, text=True, timeout=T(30)).stdout
    assert f"Serial Number: {serial(pki, 'alice'):032X}" in text, text
    assert f"{serial(pki, 'bob'):032X}" not in text


def test_reason_and_crl_days(tmp_path):
    """--reason goes into the entry, --crl-days sets the nextUpdate; the
    numbers go on from the highest in the file."""
    pki = init(tmp_path)
    assert revoke(pki, "alice").returncode == 0
    now = datetime.datetime.utcnow()
    r = revoke(pki, "bob", "--reason", "superseded", "--crl-days", "7")
    assert r.returncode == 0, r.stderr
    inter, root = crls(pki)
    assert number(inter) == 3 and number(root) == 3
    entry = inter.get_revoked_certificate_by_serial_number(serial(pki, "bob"))
    assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.superseded
    assert inter.get_revoked_certificate_by_serial_number(serial(pki, "alice")) is not None
    left = inter.next_update - now
    assert datetime.timedelta(days=7, hours=-2) < left < datetime.timedelta(days=7), left


def test_openssl_refuses_the_revoked_client_and_accepts_the_other(tmp_path):
    pki = init(tmp_path)
    assert openssl_verify(pki, "alice").returncode == 0  # before
    assert revoke(pki, "alice").returncode == 0
    r = openssl_verify(pki, "alice")
    assert r.returncode != 0 and "certificate revoked" in r.stdout + r.stderr, r.stdout + r.stderr
    r = openssl_verify(pki, "bob")  # the twin
    assert r.returncode == 0, r.stdout + r.stderr


def test_revoking_twice_changes_nothing(tmp_path):
    pki = init(tmp_path)
    assert revoke(pki, "alice").returncode == 0
    crl = pki.dir / "clients.crl"
    data, ino = crl.read_bytes(), crl.stat().st_ino
    r = revoke(pki, pki.path("alice.crt"))  # the same certificate, by its path
    assert r.returncode == 0, r.stderr
    assert "already revoked" in r.stdout and "nothing changed" in r.stdout, r.stdout
    assert crl.read_bytes() == data and crl.stat().st_ino == ino


def test_refusals_leave_the_crl_alone(tmp_path):
    """A certificate of another PKI, a CA revoking itself, an unknown client,
    a forged CRL in clients.crl and a missing CA key are refused with exit 1
    and a reason; clients.crl is untouched. The twin: the same PKI's client
    is accepted."""
    pki = init(tmp_path)
    foreign = init(tmp_path, "foreign", clients="alice")
    crl = pki.dir / "clients.crl"
    data = crl.read_bytes()
    cases = [
        ([foreign.path("alice.crt")], "neither the intermediate nor the root CA"),
        (["root"], "cannot revoke itself"),
        (["carol"], "no such file"),
    ]
    for args, why in cases:
        r = revoke(pki, *args)
        assert r.returncode == 1, (args, r.stdout, r.stderr)
        assert why.lower() in r.stderr.lower() and r.stdout == "", (args, r.stderr)
        assert crl.read_bytes() == data, args
    # A CRL in our intermediate's name, signed by another key: not ours to keep.
    now = datetime.datetime.utcnow()
    forged = (x509.CertificateRevocationListBuilder()
              .issuer_name(ca(pki, "intermediate").subject)
              .last_update(now).next_update(now + datetime.timedelta(days=1))
              .sign(serialization.load_pem_private_key(
                  Path(foreign.path("intermediate.key")).read_bytes(), None), hashes.SHA256()))
    with_forged = forged.public_bytes(serialization.Encoding.PEM) + data
    crl.write_bytes(with_forged)
    r = revoke(pki, "alice")
    assert r.returncode == 1 and "does not verify" in r.stderr, r.stderr
    assert crl.read_bytes() == with_forged
    crl.write_bytes(data)
    key = pki.dir / "intermediate.key"
    os.rename(key, pki.dir / "intermediate.key.away")
    r = revoke(pki, "alice")
    assert r.returncode == 1 and "intermediate.key" in r.stderr, r.stderr
    assert crl.read_bytes() == data
    os.rename(pki.dir / "intermediate.key.away", key)
    assert revoke(pki, "alice").returncode == 0
    assert crl.read_bytes() != data


def test_revoke_closes_the_live_connection(tollgate, backend, tmp_path):
    """tollgate on the PKI with crl_check_interval 1s, alice and bob
    connected: `pki revoke DIR alice` makes tollgate load the new CRL
    (trust_reloaded, number 2), close alice's connection
    (connection_revoked with her serial) and refuse her again, while bob's
    connection goes on and he can connect anew (twin)."""
    pki = init(tmp_path)
    be = backend()
    cfg = {"certificates": pki.certificates(),
           "client_cas": {"pki": {"ca": pki.path("root.crt"), "crl": pki.path("clients.crl"),
                                  "crl_check_interval": "1s"}},
           "target_groups": {"g": group(be.address)},
           "listeners": [listener(mode="mutual")]}
    tg = tollgate(cfg)
    ctx = {n: tg_tls.client_ctx(pki, cert=pki.client(n), version="1.3") for n in ("alice", "bob")}
    conns = {n: tg_tls.connect(tg.addr(), c) for n, c in ctx.items()}
    try:
        for s in conns.values():
            assert echo_ok(s)
        r = revoke(pki, "alice")
        assert r.returncode == 0, r.stderr
        ev = tg.wait_event("trust_reloaded", timeout=T(10), crl_number="2")[0]
        assert ev["client_ca"] == "pki" and ev["revoked"] == "2"
        cut = tg.wait_event("connection_revoked", timeout=T(10))[0]
        assert cut["reason"] == "cert_revoked" and cut["crl_number"] == "2"
        assert int(cut["serial"], 16) == serial(pki, "alice")
        assert cut["serial"] in r.stdout  # the command names the serial the log shows
        assert is_closed(conns["alice"]), "the revoked client's connection is still open"
        assert echo_ok(conns["bob"]), "the twin: bob's connection must go on"
        assert not tg_tls.attempt(tg.addr(), ctx["alice"])[0], "alice reconnected"
        assert tg_tls.attempt(tg.addr(), ctx["bob"])[0], "bob could not connect anew"
        assert len(tg.events("connection_revoked")) == 1
    finally:
        for s in conns.values():
            s.close()


@pytest.mark.parametrize("args", [["--reason", "certificateHold"], ["--crl-days", "0"],
                                  ["--crl-days", "x"], ["--bogus"]], ids=" ".join)
def test_usage_errors_exit_2_and_change_nothing(tmp_path, args):
    pki = init(tmp_path)
    data = (pki.dir / "clients.crl").read_bytes()
    r = revoke(pki, "alice", *args)
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert (pki.dir / "clients.crl").read_bytes() == data
