"""Fixtures for the end-to-end suite.

- `pki`, `foreign_pki`, `bad_certs`, `idents`: one throwaway PKI per run
  (session), minted by `tollgate pki init`, plus bad client certificates
  and identity client certificates (tg_certs.IDENTS: SPIFFE URIs, email,
  IP, DNS, CN), each a (cert path, key path).
- `tollgate`: a factory that starts tollgate from a config dict on free
  loopback ports, waits until it is ready, puts its log into the report of a
  failed test, and stops it afterwards (SIGTERM, then SIGKILL).
- `backend`: a factory for recording TCP backends (tg_backend.Backend).
- `etcd`: a running one-member etcd on loopback (tg_etcd.Etcd), its own
  data directory in the test's tmp_path; `etcd_cluster`: three members
  (tg_etcd.EtcdCluster). Their logs go into the report of a failed test;
  they are stopped afterwards. Without /usr/bin/etcd they fail (it is a
  test tool scripts/setup.sh installs), never skip.
"""

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import tg_backend  # noqa: E402
import tg_certs  # noqa: E402
import tg_etcd  # noqa: E402
import tg_proc  # noqa: E402


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: takes more than 10 seconds (still run by default)")


def pytest_sessionstart(session):
    if not os.access(tg_proc.TOLLGATE_BIN, os.X_OK):
        raise pytest.UsageError(f"tollgate binary not found at {tg_proc.TOLLGATE_BIN}; build it "
                                "(cmake --preset debug && cmake --build build) or set TOLLGATE_BIN")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call" and rep.failed:
        for tg in getattr(item, "_tollgates", []):
            rep.sections.append((f"tollgate {tg.name} stderr (event log)", tg.log()[-20000:]))
            out = tg.stdout()
            if out:
                rep.sections.append((f"tollgate {tg.name} stdout", out[-5000:]))
            try:
                acc = tg.access_path.read_text(errors="replace")
            except OSError:
                acc = ""
            if acc:
                rep.sections.append((f"tollgate {tg.name} access log", acc[-10000:]))
        for e in getattr(item, "_etcds", []):
            rep.sections.append((f"etcd {e.name} log", e.log()[-10000:]))


@pytest.fixture(scope="session")
def pki_bundle(tmp_path_factory):
    return tg_certs.mint_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def pki(pki_bundle):
    return pki_bundle[0]


@pytest.fixture(scope="session")
def foreign_pki(pki_bundle):
    return pki_bundle[1]


@pytest.fixture(scope="session")
def bad_certs(pki_bundle):
    return pki_bundle[2]


@pytest.fixture(scope="session")
def idents(pki_bundle):
    return pki_bundle[3]


@pytest.fixture
def tollgate(request, tmp_path, pki):
    """tollgate(cfg_dict, name="tg", wait=True) -> running tg_proc.Tollgate."""
    started = []
    request.node._tollgates = started

    def start(cfg, name="tg", wait=True):
        tg = tg_proc.Tollgate(tmp_path / name, pki, name=name)
        started.append(tg)
        return tg.start(cfg, wait=wait)

    yield start

    tg_proc.stop_all(started, what="tollgate")


@pytest.fixture
def backend():
    """backend(**kw) -> running tg_backend.Backend (closed after the test)."""
    made = []

    def make(**kw):
        b = tg_backend.Backend(**kw)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.fixture
def etcd(request, tmp_path):
    """A running one-member etcd (tg_etcd.Etcd): .url, get/put/range_prefix/
    delete_prefix/revision, stop/kill/start."""
    e = tg_etcd.Etcd(tmp_path / "etcd")
    request.node._etcds = getattr(request.node, "_etcds", []) + [e]
    try:
        yield e.start()
    finally:
        e.stop()


@pytest.fixture
def etcd_cluster(request, tmp_path):
    """A running three-member etcd cluster (tg_etcd.EtcdCluster, a list of
    tg_etcd.Etcd with .urls and .leader())."""
    c = tg_etcd.Etcd.cluster(tmp_path / "etcd-cluster", n=3)
    request.node._etcds = getattr(request.node, "_etcds", []) + list(c)
    try:
        yield c
    finally:
        c.stop()


@pytest.fixture
def serve(tollgate, backend):
    """serve(*listeners, backend_kw=None, groups=None, **top) -> (tg, backend).

    Starts one recording backend and tollgate with target group "g" pointing
    at it; listeners default to one one-way listener named "main"."""

    def start(*listeners, backend_kw=None, groups=None, name="tg", wait=True, **top):
        be = backend(**(backend_kw or {}))
        cfg = dict(top)
        cfg["target_groups"] = groups if groups is not None else {"g": tg_proc.group(be.address)}
        cfg["listeners"] = list(listeners) or [tg_proc.listener()]
        return tollgate(cfg, name=name, wait=wait), be

    return start
