"""Protocol versions and cipher policies."""

import re
import warnings

import pytest

import tg_tls
from tg_proc import listener

warnings.filterwarnings("ignore", category=DeprecationWarning)


def refused(tg, be, ctx, reason):
    before = be.count()
    ok, detail, port = tg_tls.attempt(tg.addr(), ctx)
    assert not ok, f"should have been refused: {detail}"
    e = tg.wait_rejection(port)
    assert e["reason"] == reason, e["_line"]
    assert be.count() == before, "a refused client reached the backend"
    return e


def served(tg, ctx, version):
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"v\n")
    assert got == b"v\n"
    assert info["version"] == version
    rec = tg.access_for(info["local"][1])
    assert rec["tls_version"] == version
    return info


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_old_versions_refused_by_default(serve, pki, version, mode):
    tg, be = serve(listener(mode=mode))
    cert = pki.client("alice") if mode == "mutual" else None
    ctx = tg_tls.client_ctx(pki, cert=cert, version=version, seclevel0=True)
    refused(tg, be, ctx, "protocol_version")


@pytest.mark.parametrize("flag", ["-tls1", "-tls1_1"])
def test_old_versions_refused_s_client(serve, pki, flag):
    tg, be = serve(listener(), backend_kw={"mode": "line"})
    rc, out, err = tg_tls.s_client(tg.addr(), pki, extra=[flag, "-cipher", "DEFAULT:@SECLEVEL=0"])
    assert rc != 0 and b"echo:" not in out
    assert tg.wait_rejection()["reason"] == "protocol_version"
    assert be.count() == 0


@pytest.mark.parametrize("version", ["1.2", "1.3"])
@pytest.mark.parametrize("mode", ["one-way", "mutual"])
def test_tls12_and_tls13_work(serve, pki, version, mode):
    tg, be = serve(listener(mode=mode))
    cert = pki.client("alice") if mode == "mutual" else None
    served(tg, tg_tls.client_ctx(pki, cert=cert, version=version), f"TLSv{version}")


def test_modern_refuses_tls12(serve, pki):
    tg, be = serve(listener(tls_extra={"policy": "modern"}))
    refused(tg, be, tg_tls.client_ctx(pki, version="1.2"), "protocol_version")


def test_modern_serves_tls13(serve, pki):
    tg, be = serve(listener(tls_extra={"policy": "modern"}))
    served(tg, tg_tls.client_ctx(pki, version="1.3"), "TLSv1.3")


def test_custom_tls12_only(serve, pki):
    tg, be = serve(listener(tls_extra={"policy": "custom", "min_version": "TLSv1.2",
                                       "max_version": "TLSv1.2"}))
    served(tg, tg_tls.client_ctx(pki, version="1.2"), "TLSv1.2")
    refused(tg, be, tg_tls.client_ctx(pki, version="1.3"), "protocol_version")


@pytest.mark.parametrize("cipher", ["AES128-GCM-SHA256", "ECDHE-ECDSA-AES128-SHA",
                                    "ECDHE-RSA-AES256-SHA384"])
def test_intermediate_refuses_non_ecdhe_or_non_aead(serve, pki, cipher):
    tg, be = serve(listener(certs=["ecdsa", "rsa"]))
    refused(tg, be, tg_tls.client_ctx(pki, version="1.2", ciphers=cipher), "no_shared_cipher")


@pytest.mark.parametrize("cipher", ["ECDHE-ECDSA-AES128-GCM-SHA256",
                                    "ECDHE-ECDSA-CHACHA20-POLY1305",
                                    "ECDHE-RSA-AES256-GCM-SHA384"])
def test_intermediate_serves_ecdhe_aead(serve, pki, cipher):
    tg, be = serve(listener(certs=["ecdsa", "rsa"]))
    info = served(tg, tg_tls.client_ctx(pki, version="1.2", ciphers=cipher), "TLSv1.2")
    assert info["cipher"][0] == cipher


def test_server_preference_picks_strongest_tls12(serve, pki):
    tg, be = serve(listener())
    ctx = tg_tls.client_ctx(pki, version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256:"
                                                         "ECDHE-ECDSA-AES256-GCM-SHA384")
    info = served(tg, ctx, "TLSv1.2")
    assert info["cipher"][0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    # Twin: offered only the weaker one, the client gets it.
    ctx = tg_tls.client_ctx(pki, version="1.2", ciphers="ECDHE-ECDSA-AES128-GCM-SHA256")
    assert served(tg, ctx, "TLSv1.2")["cipher"][0] == "ECDHE-ECDSA-AES128-GCM-SHA256"


@pytest.mark.parametrize("offer,expect", [
    ("TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384"),
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256")])
def test_server_preference_tls13(serve, pki, offer, expect):
    tg, be = serve(listener(), backend_kw={"mode": "line"})
    rc, out, err = tg_tls.s_client(tg.addr(), pki, extra=["-tls1_3", "-ciphersuites", offer])
    assert b"echo:" in out, err
    m = re.search(r"Ciphersuite: (\S+)", err)
    assert m and m.group(1) == expect, err
