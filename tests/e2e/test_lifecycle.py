"""Signals and processes: reload, crash restart, drain, log reopen, and
session resumption across workers."""

import os
import signal
import socket
import ssl
import threading
import time

import pytest

import tg_tls
from tg_proc import T, group, listener, wait_for


class Loader(threading.Thread):
    """Opens short connections in a loop (handshake, echo, close) and counts
    every failure. Bounded: stops by itself after `max_seconds`."""

    def __init__(self, addr, ctx, max_seconds):
        super().__init__(daemon=True)
        self.addr, self.ctx, self.max_seconds = addr, ctx, max_seconds
        self.ok = 0
        self.failures = []
        self.stop = threading.Event()

    def run(self):
        deadline = time.monotonic() + self.max_seconds
        i = 0
        while not self.stop.is_set() and time.monotonic() < deadline:
            msg = f"load {i}\n".encode()
            try:
                got, _ = tg_tls.roundtrip(self.addr, self.ctx, msg)
                if got != msg:
                    raise AssertionError(f"echo mismatch {got!r}")
                self.ok += 1
            except Exception as e:  # noqa: BLE001 - every failure counts
                self.failures.append(f"{i}: {type(e).__name__}: {e}")
            i += 1

    def wait_more(self, n, timeout):
        start = self.ok
        wait_for(lambda: self.ok >= start + n or not self.is_alive(), timeout,
                 what=f"{n} more loader connections")


def reload_cfg(be, idle):
    return {"workers": 2, "drain_timeout": "30s", "target_groups": {"g": group(be.address)},
            "listeners": [listener(idle_timeout=idle)]}


@pytest.mark.slow
def test_sighup_under_load_refuses_nothing(tollgate, backend, pki):
    be = backend()
    tg = tollgate(reload_cfg(be, "60s"))
    ctx = tg_tls.client_ctx(pki)
    # A long-lived connection from generation 1 must survive every reload.
    long = tg_tls.connect(tg.addr(), ctx)
    long.sendall(b"before\n")
    assert tg_tls.recv_exact(long, 7) == b"before\n"

    loaders = [Loader(tg.addr(), ctx, max_seconds=T(60)) for _ in range(2)]
    for ld in loaders:
        ld.start()
    try:
        for ld in loaders:
            ld.wait_more(20, T(10))
        for gen in range(2, 7):
            pids_before = set(tg.worker_pids())
            tg.write_config(reload_cfg(be, f"{50 + gen}s"))
            tg.signal(signal.SIGHUP)
            tg.wait_event("reload", result="ok", generation=gen, timeout=T(10))
            tg.wait_event("ready", generation=gen, timeout=T(10))
            for ld in loaders:
                ld.wait_more(20, T(10))
            if gen > 2:
                tg.wait_event("generation_retired", generation=gen - 1, timeout=T(15))
            assert set(tg.worker_pids()) != pids_before
        long.sendall(b"after\n")
        assert tg_tls.recv_exact(long, 6) == b"after\n", "an established connection was cut"
    finally:
        for ld in loaders:
            ld.stop.set()
        for ld in loaders:
            ld.join(T(20))
        long.close()
    failures = [f for ld in loaders for f in ld.failures]
    total = sum(ld.ok for ld in loaders) + len(failures)
    assert failures == [], f"{len(failures)} failed of {total}: {failures[:5]}"
    assert total >= 200
    # Generation 1 retires once its last connection (the long one) is gone.
    tg.wait_event("generation_retired", generation=1, timeout=T(15))


def test_bad_config_on_sighup_keeps_old_one_serving(tollgate, backend, pki):
    be = backend()
    tg = tollgate({"workers": 2, "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    ctx = tg_tls.client_ctx(pki)
    pids = set(wait_for(lambda: (lambda p: p if len(p) == 2 else None)(tg.worker_pids()),
                        T(5), what="2 workers"))
    good_text = tg.config_path.read_text()
    bad_text = good_text.replace("listeners:", "colour: blue\nlisteners:").replace(
        "- \"ecdsa\"", "- \"nosuch\"")
    assert bad_text.count("nosuch") == 1
    tg.write_raw_config(bad_text)
    tg.signal(signal.SIGHUP)
    e = tg.wait_event("reload", result="failed")[0]
    errors = tg.wait_event("config_error", count=2)
    text = " ".join(x["_line"] for x in errors)
    assert "colour" in text and "nosuch" in text, "every error must be logged"
    assert e.get("generation") == "1"
    for i in range(5):
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"still here\n")
        assert got == b"still here\n"
    assert set(tg.worker_pids()) == pids, "workers were replaced by a failed reload"
    assert not tg.events("ready", generation=2)
    # Twin: the fixed config is taken.
    tg.write_raw_config(good_text)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"new gen\n")
    assert got == b"new gen\n"


def test_reload_applies_new_targets(tollgate, backend, pki):
    """A reload takes effect: new connections go to the new target."""
    a, b = backend(), backend()
    cfg = {"target_groups": {"g": group(a.address)}, "listeners": [listener()]}
    tg = tollgate(cfg)
    ctx = tg_tls.client_ctx(pki)
    tg_tls.roundtrip(tg.addr(), ctx, b"1\n")
    cfg["target_groups"] = {"g": group(b.address)}
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    tg_tls.roundtrip(tg.addr(), ctx, b"2\n")
    assert (a.count(), b.count()) == (1, 1)


def test_killed_worker_is_restarted(tollgate, backend, pki):
    be = backend()
    tg = tollgate({"workers": 2, "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    pids = wait_for(lambda: (lambda p: p if len(p) == 2 else None)(tg.worker_pids()), T(5),
                    what="2 workers")
    victim = pids[0]
    os.kill(victim, signal.SIGKILL)
    e = tg.wait_event("worker_died", pid=victim)[0]
    assert e.get("action") == "restart", e["_line"]
    new = wait_for(lambda: (lambda p: p if len(p) == 2 and victim not in p else None)(
        tg.worker_pids()), T(10), what="a replacement worker")
    assert pids[1] in new
    ctx = tg_tls.client_ctx(pki)
    for i in range(10):
        got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"after crash\n")
        assert got == b"after crash\n"
    assert tg.alive()


def test_clean_worker_exit_is_not_a_death(tollgate, backend, pki):
    """Twin: workers retired by a reload are not reported as dead."""
    be = backend()
    cfg = {"workers": 2, "target_groups": {"g": group(be.address)}, "listeners": [listener()]}
    tg = tollgate(cfg)
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("generation_retired", generation=1)
    assert not tg.events("worker_died")


def resume_ctx(pki, version):
    ctx = tg_tls.client_ctx(pki, version=version)
    return ctx


@pytest.mark.parametrize("version", ["1.2", "1.3"])
def test_session_resumes_across_workers(tollgate, backend, pki, version):
    be = backend()
    tg = tollgate({"workers": 2, "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    wait_for(lambda: len(tg.worker_pids()) == 2, T(5), what="2 workers")
    ctx = resume_ctx(pki, version)
    got, info = tg_tls.roundtrip(tg.addr(), ctx, b"first\n")
    session = info["session"]
    assert session is not None and not info["reused"]
    ports = []
    pids = set()
    deadline = time.monotonic() + T(30)
    for i in range(200):
        with tg_tls.connect(tg.addr(), ctx, session=session) as s:
            assert s.session_reused, f"connection {i} did not resume"
            s.sendall(b"r\n")
            assert tg_tls.recv_exact(s, 2) == b"r\n"
            ports.append(s.getsockname()[1])
            session = s.session or session
        rec = tg.access_for(ports[-1])
        assert rec["resumed"] is True, rec
        pids.add(rec["conn"].split(".")[0])
        if len(pids) >= 2 and i >= 10:
            break
        assert time.monotonic() < deadline
    assert len(pids) >= 2, f"all {len(ports)} resumed connections went to worker {pids}"
    assert pids <= {str(p) for p in tg.worker_pids()}


def test_session_from_another_instance_does_not_resume(tollgate, backend, pki):
    """Twin: ticket keys are per tollgate instance; a foreign ticket means a
    full handshake (and still works)."""
    be = backend()
    cfg = {"target_groups": {"g": group(be.address)}, "listeners": [listener()]}
    tg1 = tollgate(cfg, name="one")
    tg2 = tollgate(cfg, name="two")
    ctx = tg_tls.client_ctx(pki, version="1.3")
    _, info = tg_tls.roundtrip(tg1.addr(), ctx, b"a\n")
    with tg_tls.connect(tg2.addr(), ctx, session=info["session"]) as s:
        assert not s.session_reused
        s.sendall(b"b\n")
        assert tg_tls.recv_exact(s, 2) == b"b\n"


def test_session_survives_reload(tollgate, backend, pki):
    be = backend()
    cfg = {"target_groups": {"g": group(be.address)}, "listeners": [listener()]}
    tg = tollgate(cfg)
    ctx = tg_tls.client_ctx(pki, version="1.3")
    _, info = tg_tls.roundtrip(tg.addr(), ctx, b"a\n")
    tg.write_config(cfg)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    tg.wait_event("generation_retired", generation=1)
    with tg_tls.connect(tg.addr(), ctx, session=info["session"]) as s:
        assert s.session_reused, "the new generation could not resume a session"


def test_sigterm_drains_open_connection(tollgate, backend, pki):
    be = backend()
    tg = tollgate({"drain_timeout": "30s", "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    workers = tg.worker_pids()
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    try:
        s.sendall(b"before\n")
        assert tg_tls.recv_exact(s, 7) == b"before\n"
        tg.signal(signal.SIGTERM)
        tg.wait_event("worker_draining")
        for i in range(5):
            msg = f"during drain {i}\n".encode()
            s.sendall(msg)
            assert tg_tls.recv_exact(s, len(msg)) == msg
        assert tg.alive(), "the master exited with a connection still open"
    finally:
        s.close()
    assert tg.wait_exit(T(10)) == 0
    tg.wait_event("master_exit")
    for p in workers:
        assert not os.path.exists(f"/proc/{p}") or \
            open(f"/proc/{p}/stat").read().split()[2] == "Z"


def test_sigterm_stops_accepting_new_connections(tollgate, backend, pki):
    """While draining, new clients are refused or closed at once, not left
    hanging in a backlog nobody accepts from."""
    be = backend()
    tg = tollgate({"drain_timeout": "30s", "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    try:
        s.sendall(b"x\n")
        assert tg_tls.recv_exact(s, 2) == b"x\n"
        tg.signal(signal.SIGTERM)
        tg.wait_event("worker_draining")
        t0 = time.monotonic()
        try:
            raw = socket.create_connection(tg.addr(), timeout=3)
            raw.settimeout(3)
            try:
                c = tg_tls.client_ctx(pki).wrap_socket(raw, server_hostname="localhost")
                c.close()
                raise AssertionError("a new connection was served during drain")
            except socket.timeout:
                raise AssertionError("a new connection during drain hung for 3 s: accepted "
                                     "by the kernel, never served, never refused")
            except (ssl.SSLError, OSError):
                pass
            finally:
                raw.close()
        except ConnectionRefusedError:
            pass
        assert time.monotonic() - t0 < 3
    finally:
        s.close()
    assert tg.wait_exit(T(10)) == 0


def test_drain_timeout_closes_what_is_left(tollgate, backend, pki):
    """Twin of the drain: a connection still open at drain_timeout is closed
    and the process exits 0."""
    be = backend()
    tg = tollgate({"drain_timeout": "1s", "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    s = tg_tls.connect(tg.addr(), tg_tls.client_ctx(pki))
    try:
        s.sendall(b"x\n")
        assert tg_tls.recv_exact(s, 2) == b"x\n"
        t0 = time.monotonic()
        tg.signal(signal.SIGTERM)
        assert tg.wait_exit(T(10)) == 0
        assert time.monotonic() - t0 >= 0.8
        s.settimeout(T(5))
        try:
            assert s.recv(10) == b""
        except (ssl.SSLError, ConnectionResetError):
            pass
    finally:
        s.close()
    assert tg.events("drain_timeout")
    assert tg.events("master_exit")


def test_sigusr1_reopens_access_log(tollgate, backend, pki):
    be = backend()
    tg = tollgate({"workers": 2, "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    ctx = tg_tls.client_ctx(pki)
    _, info1 = tg_tls.roundtrip(tg.addr(), ctx, b"1\n")
    tg.access_for(info1["local"][1])
    rotated = tg.access_path.with_suffix(".1")
    os.rename(tg.access_path, rotated)
    # Twin first: without the signal, records still go to the renamed file.
    _, info2 = tg_tls.roundtrip(tg.addr(), ctx, b"2\n")
    wait_for(lambda: f":{info2['local'][1]}\"" in rotated.read_text(), T(5),
             what="record in the rotated file")
    workers = set(tg.worker_pids())
    assert len(workers) == 2
    tg.signal(signal.SIGUSR1)
    wait_for(lambda: workers <= {e["_pid"] for e in tg.events("access_log_reopened")}, T(5),
             what="both workers reopening the access log")
    _, info3 = tg_tls.roundtrip(tg.addr(), ctx, b"3\n")
    rec = tg.access_for(info3["local"][1])
    assert rec["bytes_in"] == 2
    assert f":{info3['local'][1]}\"" not in rotated.read_text()


def test_reload_adds_and_removes_a_listener(tollgate, backend, pki):
    be = backend()
    base = {"target_groups": {"g": group(be.address)}, "listeners": [listener()]}
    tg = tollgate(base)
    ctx = tg_tls.client_ctx(pki)
    more = dict(base, listeners=[listener(), listener(name="second")])
    tg.write_config(more)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=2)
    got, _ = tg_tls.roundtrip(tg.addr("second"), ctx, b"second\n")
    assert got == b"second\n"
    second = tg.addr("second")
    # Twin: removed again, its port stops accepting.
    tg.write_config(base)
    tg.signal(signal.SIGHUP)
    tg.wait_event("reload", result="ok", generation=3)

    def refused():
        try:
            socket.create_connection(second, timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    wait_for(refused, T(10), what="the removed listener's port to close")
    got, _ = tg_tls.roundtrip(tg.addr(), ctx, b"main\n")
    assert got == b"main\n"


def test_workers_auto_is_one_per_core(tollgate, backend):
    be = backend()
    tg = tollgate({"workers": "auto", "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    cores = {os.cpu_count(), len(os.sched_getaffinity(0))}
    n = wait_for(lambda: len(tg.worker_pids()) in cores and len(tg.worker_pids()), T(5),
                 what=f"{cores} workers")
    assert n in cores


@pytest.mark.parametrize("dest", ["stdout", "off"])
def test_access_log_destinations(tollgate, backend, pki, dest):
    be = backend()
    tg = tollgate({"log": {"level": "info", "access": dest},
                   "target_groups": {"g": group(be.address)}, "listeners": [listener()]})
    _, info = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"acc\n")
    port = info["local"][1]
    # A second, later connection as a barrier: its record (if any) comes after.
    _, info2 = tg_tls.roundtrip(tg.addr(), tg_tls.client_ctx(pki), b"acc\n")
    if dest == "stdout":
        wait_for(lambda: f":{info2['local'][1]}\"" in tg.stdout(), T(5),
                 what="access record on stdout")
        import json
        recs = [json.loads(x) for x in tg.stdout().splitlines() if x.startswith("{")]
        assert any(r["client"].endswith(f":{port}") and r["bytes_in"] == 4 for r in recs)
        assert "\"listener\"" not in tg.log(), "access records leaked into the event log"
    else:
        tg.stop()
        assert "\"listener\"" not in tg.stdout() + tg.log()
        assert not tg.access_path.exists()
