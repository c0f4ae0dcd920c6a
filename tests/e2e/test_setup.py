"""scripts/setup.sh: each purpose installs only what it needs, and no service
that was there before is ever stopped, disabled or reconfigured.

The script runs against stand-ins for dpkg-query, apt-get, systemctl,
service and sudo (a PATH of shell scripts recording what they were asked), and with
POLICY_RC_D pointing into the test's directory: nothing is installed and no
real service is touched. The fake apt-get behaves like Debian's haproxy,
nginx, prometheus and etcd-server packages: installing one starts its
service (etcd-server's is named etcd) unless policy-rc.d answers 101."""

import os
import re
import subprocess
import textwrap

import pytest
from tg_proc import REPO, T

SETUP = REPO / "scripts" / "setup.sh"
DAEMONS = {"haproxy", "nginx", "prometheus", "etcd-server"}


def packages(purpose):
    r = subprocess.run(["bash", str(SETUP), "--print", purpose], capture_output=True,
                       text=True, timeout=T(30))
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


# ---- what each purpose installs ------------------------------------------------------------

@pytest.mark.parametrize("purpose", ["build", "demo", "fuzz"])
def test_build_demo_and_fuzz_install_no_daemon_and_no_test_tool(purpose):
    pkgs = packages(purpose)
    assert {"cmake", "libssl-dev", "libev-dev", "libfyaml-dev", "node-llhttp",
            "libjansson-dev"} <= set(pkgs)
    assert not DAEMONS & set(pkgs), pkgs
    assert not {"chromium", "valgrind", "python3-pytest", "wrk", "lintian"} & set(pkgs), pkgs


def test_build_installs_the_man_page_tool_and_demo_its_clients():
    assert "pandoc" in packages("build")
    assert {"openssl", "curl"} <= set(packages("demo"))


def test_test_installs_every_tool_the_suite_uses():
    pkgs = set(packages("test"))
    needed = {"libcmocka-dev", "clang-format", "clang", "libclang-rt-dev", "valgrind",
              "python3-pytest", "python3-cryptography", "openssl", "curl", "gnutls-bin",
              "nghttp2-client", "prometheus", "pandoc", "man-db", "logrotate", "chromium", "debhelper",
              "lintian", "dpkg-dev", "fakeroot", "etcd-server", "etcd-client", "time"}
    assert needed <= pkgs, needed - pkgs
    # Twin: the peers of the benchmark are not test tools.
    assert not {"haproxy", "nginx", "wrk", "linux-perf"} & pkgs


def test_bench_installs_the_peers():
    assert {"haproxy", "nginx", "libnginx-mod-stream", "wrk", "nghttp2-client",
            "linux-perf"} <= set(packages("bench"))


def test_unknown_purpose_is_a_usage_error():
    r = subprocess.run(["bash", str(SETUP), "--print", "everything"], capture_output=True,
                       text=True, timeout=T(30))
    assert r.returncode == 2 and "usage" in r.stderr and r.stdout == ""


def test_script_never_disables_and_stops_only_what_it_installed():
    text = SETUP.read_text()
    code = "\n".join(ln for ln in text.splitlines() if not ln.lstrip().startswith("#"))
    assert "disable --now" not in code and not re.search(r"systemctl\s+disable", code)
    assert not re.search(r"\bservice\s+\S+\s+stop", code)
    # The only stop is inside the loop over the packages this run installed.
    stops = [m.start() for m in re.finditer(r"systemctl stop", code)]
    loop = code.find('for p in "${missing[@]}"; do')
    assert len(stops) == 1 and 0 < loop < stops[0]


# ---- running it against a fake apt ---------------------------------------------------------

FAKES = {
    "dpkg-query": """
        # dpkg-query -W -f=... PKG: installed when PKG is a line of $FAKE/installed
        pkg="${@: -1}"
        grep -qx "$pkg" "$FAKE/installed" && echo "install ok installed" && exit 0
        exit 1
    """,
    "apt-get": """
        echo "apt-get $*" >>"$FAKE/log"
        [ -e "$FAKE/apt-fails" ] && exit 100
        case " $* " in *" install "*) ;; *) exit 0 ;; esac
        for pkg in "$@"; do
            case $pkg in -*|install) continue ;; esac
            echo "$pkg" >>"$FAKE/installed"
            case $pkg in
            haproxy|nginx|prometheus) unit=$pkg ;;
            etcd-server) unit=etcd ;;
            *) continue ;;
            esac
            # What the package's postinst does: invoke-rc.d asks policy-rc.d.
            if [ -x "$POLICY_RC_D" ] && { "$POLICY_RC_D" "$unit" start; [ $? -eq 101 ]; }; then
                echo "start-refused $unit" >>"$FAKE/log"
            else
                echo "started $unit" >>"$FAKE/log"; echo "$unit" >>"$FAKE/active"
            fi
        done
    """,
    "systemctl": """
        echo "systemctl $*" >>"$FAKE/log"
        case $1 in
        is-active) grep -qx "${@: -1}" "$FAKE/active" ;;
        stop) grep -vx "$2" "$FAKE/active" >"$FAKE/active.new"; mv "$FAKE/active.new" "$FAKE/active" ;;
        *) exit 0 ;;
        esac
    """,
    "service": 'echo "service $*" >>"$FAKE/log"\n',
    "sudo": 'exec "$@"\n',
}


@pytest.fixture
def fake(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in FAKES.items():
        p = bindir / name
        p.write_text("#!/bin/bash\n" + textwrap.dedent(body))
        p.chmod(0o755)
    for f in ("installed", "active", "log"):
        (tmp_path / f).write_text("")
    return tmp_path


def run_setup(fake, purpose, installed, active=()):
    (fake / "installed").write_text("".join(p + "\n" for p in installed))
    (fake / "active").write_text("".join(p + "\n" for p in active))
    env = dict(os.environ, PATH=f"{fake / 'bin'}:{os.environ['PATH']}", FAKE=str(fake),
               POLICY_RC_D=str(fake / "policy-rc.d"))
    return subprocess.run(["bash", str(SETUP), purpose], capture_output=True, text=True,
                          env=env, timeout=T(60))


def log(fake):
    return (fake / "log").read_text().splitlines()


def test_nothing_missing_is_silent_and_installs_nothing(fake):
    r = run_setup(fake, "bench", packages("bench"), active=["nginx", "haproxy"])
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and r.stderr == "" and log(fake) == []
    assert not (fake / "policy-rc.d").exists()


def test_new_daemons_are_not_started_and_running_ones_not_touched(fake):
    # haproxy was installed and running before; nginx and wrk are missing.
    before = [p for p in packages("bench") if p not in ("nginx", "wrk")]
    r = run_setup(fake, "bench", before, active=["haproxy"])
    assert r.returncode == 0, r.stderr
    calls = log(fake)
    assert "apt-get -o DPkg::Lock::Timeout=600 -qq install -y --no-install-recommends nginx wrk" in calls
    assert "start-refused nginx" in calls and "started nginx" not in calls
    assert not [c for c in calls if c.startswith(("systemctl", "service")) and "is-active" not in c], calls
    assert (fake / "active").read_text().split() == ["haproxy"]
    assert not (fake / "policy-rc.d").exists()  # removed when done
    assert "policy-rc.d" in r.stdout and "nginx installed" in r.stdout
    assert "haproxy" not in r.stdout


def test_existing_policy_is_kept_and_only_a_daemon_this_run_installed_is_stopped(fake):
    """Twin of the above: the machine's own policy-rc.d allows starts, so the
    new nginx starts; the script stops that one, says so, and leaves the
    policy file and the haproxy that ran before alone."""
    policy = fake / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    before = [p for p in packages("bench") if p != "nginx"]
    r = run_setup(fake, "bench", before, active=["haproxy"])
    assert r.returncode == 0, r.stderr
    calls = log(fake)
    assert "started nginx" in calls
    assert "systemctl stop nginx" in calls
    assert [c for c in calls if c.startswith(("systemctl stop", "service"))] == ["systemctl stop nginx"]
    assert "stopping nginx" in r.stdout
    assert (fake / "active").read_text().split() == ["haproxy"]
    assert policy.read_text() == "#!/bin/sh\nexit 0\n"


def test_etcd_server_is_kept_from_starting_by_the_temporary_policy(fake):
    before = [p for p in packages("test") if p not in ("etcd-server", "etcd-client")]
    r = run_setup(fake, "test", before)
    assert r.returncode == 0, r.stderr
    calls = log(fake)
    assert "start-refused etcd" in calls and "started etcd" not in calls
    assert not [c for c in calls if c.startswith(("systemctl", "service")) and "is-active" not in c], calls
    assert "etcd-server installed; etcd is not running" in r.stdout
    assert not (fake / "policy-rc.d").exists()


def test_etcd_server_is_stopped_by_its_unit_name(fake):
    """etcd-server's unit is etcd: with a policy-rc.d that allows starts, the
    etcd a test install started is stopped by that name; an etcd that ran
    before (etcd-server installed earlier) is never touched."""
    policy = fake / "policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 0\n")
    policy.chmod(0o755)
    before = [p for p in packages("test") if p not in ("etcd-server", "etcd-client")]
    r = run_setup(fake, "test", before)
    assert r.returncode == 0, r.stderr
    calls = log(fake)
    assert "started etcd" in calls
    assert [c for c in calls if c.startswith(("systemctl stop", "service"))] == ["systemctl stop etcd"]
    assert "stopping etcd, started by the etcd-server package" in r.stdout
    assert (fake / "active").read_text().split() == []
    # Twin: installed before and running, it stays as it is.
    (fake / "log").write_text("")
    r = run_setup(fake, "test", packages("test"), active=["etcd"])
    assert r.returncode == 0 and r.stdout == "" and log(fake) == []
    assert (fake / "active").read_text().split() == ["etcd"]


def test_failed_install_still_removes_the_temporary_policy(fake):
    (fake / "apt-fails").write_text("")
    r = run_setup(fake, "build", [])
    assert r.returncode != 0
    assert any(c.startswith("apt-get") for c in log(fake))
    assert not (fake / "policy-rc.d").exists()
