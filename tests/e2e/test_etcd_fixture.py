"""The etcd the fleet tests run (tg_etcd, the `etcd` and `etcd_cluster`
fixtures): a put is read back, a crash and a restart keep the data, a
cluster of three elects a leader and goes on when one member dies. And the
shapes of etcd's JSON gateway that the fleet's client relies on: zero
values left out ("succeeded" of a failed transaction, "kvs" of an empty
range, the TTL of a lease that is gone), 64-bit integers as strings, a
watch as one JSON object a line, a watch from a compacted revision
canceled with compact_revision."""

import http.client
import json

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


# ---- the JSON gateway's shapes the fleet's client relies on ------------------------------

def test_gateway_omits_zero_fields_and_writes_int64_as_strings(etcd):
    b64 = tg_etcd.b64
    r = etcd.call("/v3/kv/range", {"key": b64("tg/absent")})
    assert set(r) == {"header"}  # no "kvs", no "count": zero values are left out
    assert isinstance(r["header"]["revision"], str)
    etcd.put("tg/empty", b"")
    kv = etcd.call("/v3/kv/range", {"key": b64("tg/empty")})["kvs"][0]
    assert "value" not in kv and "lease" not in kv and kv["version"] == "1"
    # Compare-and-swap on the mod revision: "succeeded" is there only when true.
    rev = etcd.put("tg/cas", "v1")
    cas = {"compare": [{"key": b64("tg/cas"), "target": "MOD", "result": "EQUAL",
                        "mod_revision": str(rev)}],
           "success": [{"request_put": {"key": b64("tg/cas"), "value": b64("v2")}}],
           "failure": [{"request_range": {"key": b64("tg/cas")}}]}
    won = etcd.call("/v3/kv/txn", cas)
    assert won["succeeded"] is True and "response_put" in won["responses"][0]
    lost = etcd.call("/v3/kv/txn", cas)
    assert "succeeded" not in lost
    assert tg_etcd.unb64(lost["responses"][0]["response_range"]["kvs"][0]["value"]) == b"v2"
    # Create only if absent: create_revision 0.
    create = {"compare": [{"key": b64("tg/new"), "target": "CREATE", "result": "EQUAL",
                           "create_revision": "0"}],
              "success": [{"request_put": {"key": b64("tg/new"), "value": b64("x")}}]}
    assert etcd.call("/v3/kv/txn", create)["succeeded"] is True
    assert set(etcd.call("/v3/kv/txn", create)) == {"header"}


def test_gateway_lease_keepalive_of_a_gone_lease_has_no_ttl(etcd):
    lease = etcd.grant(30)
    alive = etcd.call("/v3/lease/keepalive", {"ID": str(lease)})
    assert alive["result"]["ID"] == str(lease) and alive["result"]["TTL"] == "30"
    etcd.call("/v3/lease/revoke", {"ID": str(lease)})
    gone = etcd.call("/v3/lease/keepalive", {"ID": str(lease)})
    assert "TTL" not in gone["result"]
    assert etcd.call("/v3/lease/timetolive", {"ID": str(lease)})["TTL"] == "-1"
    with pytest.raises(tg_etcd.EtcdError) as e:
        etcd.call("/v3/lease/revoke", {"ID": str(lease)})
    assert e.value.status == 404 and e.value.body["code"] == 5


def test_gateway_watch_is_newline_delimited_json_and_a_compacted_start_is_canceled(etcd):
    b64 = tg_etcd.b64

    def watch(create):
        conn = http.client.HTTPConnection("127.0.0.1", etcd.client_port, timeout=T(5))
        conn.request("POST", "/v3/watch", json.dumps({"create_request": create}))
        resp = conn.getresponse()
        assert resp.status == 200
        return conn, resp

    conn, resp = watch({"key": b64("tg/w/"), "range_end": b64("tg/w0")})
    try:
        first = json.loads(resp.readline())
        assert first["result"]["created"] is True and "watch_id" not in first["result"]
        etcd.put("tg/w/a", "1")
        etcd.delete_prefix("tg/w/")
        put = json.loads(resp.readline())["result"]["events"][0]
        assert "type" not in put and tg_etcd.unb64(put["kv"]["value"]) == b"1"
        deleted = json.loads(resp.readline())["result"]["events"][0]
        assert deleted["type"] == "DELETE" and set(deleted["kv"]) == {"key", "mod_revision"}
    finally:
        conn.close()
    rev = etcd.put("tg/w/b", "2")
    etcd.call("/v3/kv/compaction", {"revision": str(rev)})
    conn, resp = watch({"key": b64("tg/w/b"), "start_revision": str(rev - 1)})
    try:
        assert json.loads(resp.readline())["result"]["created"] is True
        canceled = json.loads(resp.readline())["result"]
        assert canceled["canceled"] is True and canceled["compact_revision"] == str(rev)
    finally:
        conn.close()
