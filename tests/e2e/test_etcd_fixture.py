"""The etcd the fleet tests run (tg_etcd, the `etcd` and `etcd_cluster`
fixtures): a put is read back, a crash and a restart keep the data, a
cluster of three elects a leader and goes on when one member dies."""

import pytest

import tg_etcd
from tg_proc import T, wait_for


def test_put_get_prefix_and_delete(etcd):
    rev0 = etcd.revision()
    assert etcd.put("tg/a", "one") == rev0 + 1
    etcd.put("tg/b", b"\x00\xff binary")
    etcd.put("tg0", "outside the prefix")
    assert etcd.get("tg/a") == b"one"
    assert etcd.get("tg/missing") is None
    assert etcd.revision() == rev0 + 3
    assert etcd.range_prefix("tg/") == {"tg/a": b"one", "tg/b": b"\x00\xff binary"}
    assert etcd.delete_prefix("tg/") == 2
    assert etcd.range_prefix("tg/") == {}
    assert etcd.get("tg0") == b"outside the prefix"


def test_a_lease_takes_its_key_with_it(etcd):
    lease = etcd.grant(1)
    etcd.put("tg/leased", "v", lease=lease)
    assert etcd.get("tg/leased") == b"v"
    wait_for(lambda: etcd.get("tg/leased") is None, T(10), interval=0.1, what="lease expiry")


def test_kill_and_restart_keep_data_and_address(etcd):
    url = etcd.url
    rev = etcd.put("tg/kept", "before the crash")
    etcd.kill()
    assert not etcd.alive()
    with pytest.raises(OSError):
        etcd.get("tg/kept")
    etcd.start()
    assert etcd.url == url
    assert etcd.get("tg/kept") == b"before the crash"
    assert etcd.revision() == rev
    # Twin: a clean stop keeps it too.
    etcd.stop()
    etcd.start()
    assert etcd.get("tg/kept") == b"before the crash"


def test_a_too_large_request_is_an_http_error_not_a_hang(etcd):
    with pytest.raises(tg_etcd.EtcdError) as e:
        etcd.put("tg/big", b"x" * (2 * 1024 * 1024))
    assert e.value.status >= 400
    assert etcd.get("tg/big") is None


def test_cluster_elects_a_leader_and_survives_one_member_killed(etcd_cluster):
    c = etcd_cluster
    assert len(c) == 3 and len(set(c.urls)) == 3
    leader = c.leader()
    c[0].put("tg/k", "v1")
    assert [m.get("tg/k") for m in c] == [b"v1"] * 3
    leader.kill()
    rest = [m for m in c if m is not leader]
    new = c.leader()
    assert new is not leader and new in rest
    rest[0].put("tg/k", "v2")
    assert [m.get("tg/k") for m in rest] == [b"v2"] * 2
    # The member that died comes back, on its address, and catches up.
    leader.start()
    assert leader.get("tg/k") == b"v2"
