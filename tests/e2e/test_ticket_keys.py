"""Session-ticket keys: rotation (ticket_key_rotation), a key file shared by
several instances (ticket_keys_file), its reload, and config errors."""

import base64
import os
import signal
import time

import pytest

import tg_tls
from test_check import base_lines, cols, run_check
from tg_proc import T, group, listener

VERSIONS = ["1.2", "1.3"]


def cfg_of(be, **top):
    return {"target_groups": {"g": group(be.address)}, "listeners": [listener()], **top}


def rotations(tg):
    return len(tg.events("ticket_key_rotated"))


def wait_rotations(tg, n):
    # A rotation every 2s: n of them, with room for a busy machine.
    tg.wait_event("ticket_key_rotated", timeout=T(2 * n + 10), count=n)


def resume(tg, ctx, session, payload=b"r\n"):
    """(reused?, the session the server left the client with)."""
    with tg_tls.connect(tg.addr(), ctx, session=session) as s:
        s.sendall(payload)
        assert tg_tls.recv_exact(s, len(payload)) == payload  # a full handshake still works
        return s.session_reused, s.session


def write_keys(path, keys, text=False):
    data = b"".join(base64.b64encode(k) + b"\n" for k in keys) if text else b"".join(keys)
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    return str(path)


@pytest.mark.parametrize("version", VERSIONS)
def test_rotation_keeps_two_old_keys(tollgate, backend, pki, version):
    """With ticket_key_rotation: 2s, a ticket resumes after one rotation and
    is renewed; a ticket older than three rotations is refused (a full
    handshake, which still works); the renewed one still resumes then. Twin
    (running alongside): with the default 1h rotation the same old ticket
    resumes."""
    be = backend()
    fast = tollgate(cfg_of(be, ticket_key_rotation="2s"), name="fast")
    slow = tollgate(cfg_of(be), name="slow")
    ctx = tg_tls.client_ctx(pki, version=version)
    _, info = tg_tls.roundtrip(fast.addr(), ctx, b"a\n")
    _, slow_info = tg_tls.roundtrip(slow.addr(), ctx, b"a\n")
    old, slow_old = info["session"], slow_info["session"]
    assert old is not None and slow_old is not None
    r0 = rotations(fast)

    wait_rotations(fast, r0 + 1)
    reused, renewed = resume(fast, ctx, old)
    assert reused, "a ticket from before one rotation did not resume"
    assert renewed is not None and renewed.id != b"" and renewed != old

    wait_rotations(fast, r0 + 3)
    reused, _ = resume(fast, ctx, renewed)
    assert reused, "the ticket renewed after a rotation did not resume"
    reused, _ = resume(fast, ctx, old)
    assert not reused, "a ticket older than three rotations resumed"

    reused, _ = resume(slow, ctx, slow_old)
    assert reused, "with a 1h rotation the same old ticket should resume"
    assert not slow.events("ticket_key_rotated")


def test_frequent_reloads_do_not_postpone_rotation(tollgate, backend):
    """Reloads closer together than ticket_key_rotation keep its countdown
    (restarting it at each reload would mean a key that never rotates);
    a session made before them all still resumes after them."""
    be = backend()
    cfg = cfg_of(be, ticket_key_rotation="2s")
    tg = tollgate(cfg)
    r0 = rotations(tg)
    deadline = time.monotonic() + T(15)
    gen = 1
    while rotations(tg) < r0 + 2:
        assert time.monotonic() < deadline, f"no rotation over {gen - 1} reloads"
        gen += 1
        reload(tg, cfg, gen)
        tg.wait_event("generation_retired", generation=gen - 1)
    assert gen >= 4, "reloads came too slowly to test anything"


@pytest.mark.parametrize("version", VERSIONS)
def test_shared_key_file_resumes_across_instances(tollgate, backend, pki, version, tmp_path):
    """Two processes reading the same keys (one from the binary file, one
    from the base64 form) resume each other's sessions. The twin, two
    processes without the file, is
    test_lifecycle.py::test_session_from_another_instance_does_not_resume."""
    be = backend()
    keys = [os.urandom(80), os.urandom(80)]
    binary = write_keys(tmp_path / "keys.bin", keys)
    text = write_keys(tmp_path / "keys.txt", keys, text=True)
    one = tollgate(cfg_of(be, ticket_keys_file=binary), name="one")
    two = tollgate(cfg_of(be, ticket_keys_file=text), name="two")
    ctx = tg_tls.client_ctx(pki, version=version)
    _, info = tg_tls.roundtrip(one.addr(), ctx, b"a\n")
    reused, _ = resume(two, ctx, info["session"])
    assert reused, "a session from an instance with the same key file did not resume"
    _, info = tg_tls.roundtrip(two.addr(), ctx, b"b\n")
    reused, _ = resume(one, ctx, info["session"])
    assert reused
    assert not one.events("ticket_key_rotated")
    assert one.events("ticket_keys", source="file", keys=2)
    for tg in (one, two):
        log = tg.log()
        for k in keys:  # never a byte of a key in the event log
            assert k[:16].hex() not in log and base64.b64encode(k)[:20].decode() not in log


def reload(tg, cfg, generation):
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=generation)


@pytest.mark.parametrize("version", VERSIONS)
def test_reload_rereads_key_file(tollgate, backend, pki, version, tmp_path):
    """A reload re-reads the file: a ticket under a key still in it
    resumes, one under a removed key does not. With several keys the last
    but one encrypts (a lone key file holding that key resumes it)."""
    be = backend()
    k1, k2, k3 = (os.urandom(80) for _ in range(3))
    path = tmp_path / "keys.bin"
    cfg = cfg_of(be, ticket_keys_file=write_keys(path, [k1]))
    tg = tollgate(cfg)
    ctx = tg_tls.client_ctx(pki, version=version)
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
    under_k1 = info["session"]

    write_keys(path, [k1, k2, k3])
    reload(tg, cfg, 2)
    reused, _ = resume(tg, ctx, under_k1)
    assert reused, "a ticket under a key kept in the file did not resume after the reload"
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"b\n")
    under_k2 = info["session"]

    write_keys(path, [k2, k3])
    reload(tg, cfg, 3)
    reused, _ = resume(tg, ctx, under_k1)
    assert not reused, "a ticket under a key removed from the file resumed"
    reused, _ = resume(tg, ctx, under_k2)
    assert reused, "a ticket under a key kept in the file did not resume"

    only_k2 = tollgate(cfg_of(be, ticket_keys_file=write_keys(tmp_path / "k2.bin", [k2])),
                       name="only_k2")
    only_k3 = tollgate(cfg_of(be, ticket_keys_file=write_keys(tmp_path / "k3.bin", [k3])),
                       name="only_k3")
    reused, _ = resume(only_k2, ctx, under_k2)
    assert reused, "the last but one key of the file did not encrypt"
    reused, _ = resume(only_k3, ctx, under_k2)
    assert not reused, "the last key of the file encrypted"


# ---- config errors ----

def check_with(tmp_path, pki, *extra):
    lines = base_lines(pki) + list(extra)
    return run_check(tmp_path, lines)


def test_key_file_errors(tmp_path, pki):
    n = len(base_lines(pki)) + 1  # the line of the first extra key
    cases = {
        "short.bin": (b"\x01" * 81, "holds 81 bytes"),
        "empty.bin": (b"", "is empty"),
        "badline.txt": (base64.b64encode(os.urandom(48)) + b"\n", "line 1 is not one base64 key"),
        "nine.bin": (os.urandom(80 * 9), "holds 720 bytes"),
        "twins.bin": (b"\x02" * 160, "same name"),
    }
    for name, (data, why) in cases.items():
        p = tmp_path / name
        p.write_bytes(data)
        os.chmod(p, 0o600)
        r, path, diags = check_with(tmp_path, pki, f"ticket_keys_file: {p}")
        assert r.returncode == 1, (name, r.stderr)
        errs = [d for d in diags if not d["warn"]]
        assert len(errs) == 1, (name, r.stderr)
        d = errs[0]
        assert (d["file"], d["line"], d["key"]) == (str(path), n, "ticket_keys_file"), r.stderr
        assert d["col"] in cols(f"ticket_keys_file: {p}", "ticket_keys_file"), r.stderr
        assert why in d["msg"], (name, d["msg"])
        assert not data or data.hex()[:32] not in r.stderr  # no key bytes in messages
    r, _, diags = check_with(tmp_path, pki, f"ticket_keys_file: {tmp_path / 'missing'}")
    assert r.returncode == 1 and "cannot read" in r.stderr


def test_key_file_accepted_and_world_readable_warns(tmp_path, pki):
    """Twin of the errors: good files load; a file others can read loads
    with a warning."""
    good = tmp_path / "good.txt"
    good.write_bytes(b"\n".join(base64.b64encode(os.urandom(80)) for _ in range(3)) + b"\n")
    os.chmod(good, 0o600)
    r, _, diags = check_with(tmp_path, pki, f"ticket_keys_file: {good}")
    assert r.returncode == 0 and diags == [], r.stderr
    loose = tmp_path / "loose.bin"
    loose.write_bytes(os.urandom(160))
    os.chmod(loose, 0o644)
    r, _, diags = check_with(tmp_path, pki, f"ticket_keys_file: {loose}")
    assert r.returncode == 0, r.stderr
    assert [d["key"] for d in diags if d["warn"]] == ["ticket_keys_file"], r.stderr
    assert "can be read by other users" in r.stderr


@pytest.mark.parametrize("value,ok", [("1s", True), ("168h", True), ("1h", True),
                                      ("500ms", False), ("169h", False), ("0", False),
                                      ("soon", False)])
def test_rotation_bounds(tmp_path, pki, value, ok):
    n = len(base_lines(pki)) + 1
    r, path, diags = check_with(tmp_path, pki, f"ticket_key_rotation: {value}")
    if ok:
        assert r.returncode == 0 and diags == [], r.stderr
        return
    assert r.returncode == 1
    assert [(d["line"], d["key"]) for d in diags] == [(n, "ticket_key_rotation")], r.stderr
    assert diags[0]["col"] in cols(f"ticket_key_rotation: {value}", "ticket_key_rotation")


def test_tls13_resumption_hands_out_a_fresh_ticket(tollgate, backend, pki, tmp_path):
    """A client that always resumes with the ticket it got last (as browsers
    and OpenSSL's own clients do) resumes every time: a TLS 1.3 resumption
    gets a new ticket, as it does with OpenSSL's built-in ticket keys.
    Twin: TLS 1.2 keeps its ticket while the key is current."""
    tg = tollgate(cfg_of(backend()))
    for version, fresh in (("1.3", True), ("1.2", False)):
        ctx = tg_tls.client_ctx(pki, version=version)
        reused, session = resume(tg, ctx, None)
        assert not reused
        for _ in range(4):
            reused, new = resume(tg, ctx, session)
            assert reused, f"TLS {version}: the last ticket did not resume"
            assert (new.id != session.id) == fresh, f"TLS {version}: fresh ticket {fresh} expected"
            session = new
