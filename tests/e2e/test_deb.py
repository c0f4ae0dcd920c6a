"""The Debian package: `make deb` builds it (into a scratch directory here),
lintian finds no error, it holds the binary, the unit and the conffile, the
binary it carries runs and checks the config it ships, and its maintainer
scripts create the user and enable the unit without starting it.

Nothing is installed on this machine unless TOLLGATE_DEB_INSTALL_TEST=1 is set
and the test runs as root: then test_install_purge installs the package with
apt, starts it and purges it.
"""

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import urllib.request

import pytest

from tg_proc import REPO, T, free_port, wait_for

TOOLS = {
    "dpkg-buildpackage": "dpkg-dev",
    "dpkg-deb": "dpkg",
    "dh": "debhelper",
    "fakeroot": "fakeroot",
    "lintian": "lintian",
}
# Warnings lintian may give, each for a reason the package cannot fix itself.
LINTIAN_WARNINGS_ALLOWED = set()
PKG_UNIT = "lib/systemd/system/tollgate.service"
CONFFILE = "/etc/tollgate/tollgate.yaml"
INSTALL_TEST = os.environ.get("TOLLGATE_DEB_INSTALL_TEST", "") == "1"


def run(args, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    kw.setdefault("timeout", 120)
    return subprocess.run(args, **kw)


def project_version():
    m = re.search(r"project\(tollgate VERSION ([0-9.]+)", (REPO / "CMakeLists.txt").read_text())
    assert m, "no project VERSION in CMakeLists.txt"
    return m.group(1)


def git_status():
    return run(["git", "status", "--porcelain", "--ignored=no"], cwd=REPO).stdout


@pytest.fixture(scope="module")
def deb(tmp_path_factory):
    """Runs `make deb` with its work and dist directories in a scratch place."""
    missing = [f"{tool} ({pkg})" for tool, pkg in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.fail("building the Debian package needs " + ", ".join(missing) +
                    ": install them (apt-get install dpkg-dev debhelper fakeroot lintian)")
    top = tmp_path_factory.mktemp("deb")
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    before = git_status()
    r = run(["make", "--no-print-directory", "deb", f"DEB_WORK={top}/work", f"DEB_DIST={top}/dist"],
            cwd=REPO, env=env, timeout=900)
    assert r.returncode == 0, f"make deb failed:\n{r.stdout[-6000:]}\n{r.stderr[-6000:]}"
    ver = project_version()
    path = top / "dist" / f"tollgate_{ver}_amd64.deb"
    assert path.is_file(), f"no {path.name} in dist/: {sorted(os.listdir(top / 'dist'))}"
    root = top / "root"
    assert run(["dpkg-deb", "-x", str(path), str(root)]).returncode == 0
    ctl = top / "control"
    assert run(["dpkg-deb", "-e", str(path), str(ctl)]).returncode == 0
    return {"top": top, "path": path, "root": root, "control": ctl, "version": ver,
            "changes": top / "work" / f"tollgate_{ver}_amd64.changes",
            "git_before": before, "log": r.stdout}


def test_make_deb_leaves_tree_clean_and_fills_dist(deb):
    assert git_status() == deb["git_before"], "make deb changed what git status shows"
    names = sorted(os.listdir(deb["top"] / "dist"))
    assert names == [f"tollgate-dbgsym_{deb['version']}_amd64.deb",
                     f"tollgate_{deb['version']}_amd64.deb"], names
    # It ran the unit tests and was built with dpkg-buildflags' hardening.
    assert "dh_auto_test" in deb["log"] and "tests passed" in deb["log"]
    assert "-fstack-protector-strong -Wformat -Werror=format-security" in deb["log"]


def test_changelog_version_is_project_version(deb):
    first = (REPO / "debian" / "changelog").read_text().splitlines()[0]
    assert first.startswith(f"tollgate ({deb['version']}) "), first
    info = run(["dpkg-deb", "-f", str(deb["path"]), "Version"]).stdout.strip()
    assert info == deb["version"]


def lintian_tags(target):
    r = run(["lintian", "--pedantic", "-E", "-I", str(target)], timeout=600)
    assert r.returncode in (0, 1, 2), r.stderr
    tags = re.findall(r"^([EWIPX]): [^:]+: (\S+)", r.stdout, re.M)
    return tags, r.stdout


def lintian_problems(tags):
    errors = [t for lvl, t in tags if lvl == "E"]
    warnings = [t for lvl, t in tags if lvl == "W" and t not in LINTIAN_WARNINGS_ALLOWED]
    return errors, warnings


def test_lintian_finds_no_error(deb):
    tags, out = lintian_tags(deb["changes"])
    print(out)
    errors, warnings = lintian_problems(tags)
    assert not errors and not warnings, out


def test_lintian_catches_a_broken_package(deb):
    # The same package without its copyright file, rebuilt: lintian must
    # complain, so that test_lintian_finds_no_error can fail.
    tree = deb["top"] / "broken"
    assert run(["dpkg-deb", "-R", str(deb["path"]), str(tree)]).returncode == 0
    (tree / "usr/share/doc/tollgate/copyright").unlink()
    broken = deb["top"] / "broken.deb"
    r = run(["dpkg-deb", "--root-owner-group", "-b", str(tree), str(broken)])
    assert r.returncode == 0, r.stderr
    errors, _ = lintian_problems(lintian_tags(broken)[0])
    assert "no-copyright-file" in errors


def contents(deb_path):
    out = run(["dpkg-deb", "--contents", str(deb_path)]).stdout
    return {line.split()[-1].lstrip("."): line.split()[0] for line in out.splitlines()}


def test_contents_binary_unit_conffile(deb):
    files = contents(deb["path"])
    assert files.get("/usr/sbin/tollgate") == "-rwxr-xr-x"
    assert "/" + PKG_UNIT in files
    assert files.get(CONFFILE) == "-rw-r--r--"
    assert "/usr/share/doc/tollgate/OPERATIONS.md" in files  # the unit's Documentation=
    assert files.get("/var/log/tollgate/") == "drwxr-xr-x"  # the config's access log
    conffiles = (deb["control"] / "conffiles").read_text().split()
    assert sorted(conffiles) == sorted([CONFFILE, "/etc/logrotate.d/tollgate"])
    for f in ("/usr/share/man/man8/tollgate.8.gz", "/usr/share/man/man5/tollgate.yaml.5.gz",
              "/usr/share/bash-completion/completions/tollgate"):
        assert f in files, f
    depends = run(["dpkg-deb", "-f", str(deb["path"]), "Depends"]).stdout
    for dep in ("adduser", "libssl3", "libev4", "libfyaml0", "libjansson4"):
        assert dep in depends, depends
    # The shipped config is contrib's, byte for byte.
    assert (deb["root"] / CONFFILE.lstrip("/")).read_bytes() == \
        (REPO / "contrib/tollgate.yaml").read_bytes()


def exec_paths(unit_text):
    """The programs a unit runs (Exec*= lines, systemd's prefixes removed)."""
    return [m.group(1).lstrip("-@:+!") for m in
            re.finditer(r"^Exec\w+=(\S+)", unit_text, re.M)]


def missing_programs(unit_text, files):
    """Exec paths that are neither in the package nor standard system tools."""
    return [p for p in exec_paths(unit_text)
            if p not in files and not p.startswith(("/bin/", "/usr/bin/"))
            or p.startswith("/usr/local/")]


def test_unit_runs_the_packaged_binary(deb):
    unit = (deb["root"] / PKG_UNIT).read_text()
    files = contents(deb["path"])
    assert "ExecStart=/usr/sbin/tollgate run -c /etc/tollgate/tollgate.yaml" in unit
    assert "ExecStartPre=/usr/sbin/tollgate check -c /etc/tollgate/tollgate.yaml" in unit
    assert missing_programs(unit, files) == []
    # contrib's unit points at /usr/local/bin, which the package does not
    # fill: that is why the package has its own unit.
    contrib = (REPO / "contrib/tollgate.service").read_text()
    assert missing_programs(contrib, files) != []


def directives(unit_text):
    return {line.strip() for line in unit_text.splitlines()
            if re.match(r"^[A-Za-z]+=", line.strip()) and not line.startswith("Exec")}


def unit_drift(contrib_text, deb_text):
    return sorted(directives(contrib_text) - directives(deb_text))


def test_unit_keeps_every_directive_of_contrib(deb):
    contrib = (REPO / "contrib/tollgate.service").read_text()
    packaged = (deb["root"] / PKG_UNIT).read_text()
    assert unit_drift(contrib, packaged) == [], \
        "contrib/tollgate.service has directives debian/tollgate.service lacks"
    assert "User=" not in packaged  # the master is root; workers drop to `user:`
    # A directive added to contrib's unit alone is noticed.
    assert unit_drift(contrib + "\n[Service]\nProtectFoo=yes\n", packaged) == ["ProtectFoo=yes"]


def hardening_missing(binary):
    """The properties scripts/check-hardening.sh finds missing in binary."""
    r = run(["bash", str(REPO / "scripts/check-hardening.sh"), str(binary)])
    assert r.returncode in (0, 1), r.stderr
    return [line.split("  ")[0].strip() for line in r.stdout.splitlines() if " MISSING " in line]


def endbr64_at_main(deb):
    """The packaged binary is stripped, so check-hardening cannot find main:
    its address comes from the dbgsym package's symbol table."""
    dbg = deb["top"] / "dbgsym"
    dbgsym = deb["top"] / "dist" / f"tollgate-dbgsym_{deb['version']}_amd64.deb"
    assert run(["dpkg-deb", "-x", str(dbgsym), str(dbg)]).returncode == 0
    debug = next(dbg.glob("usr/lib/debug/.build-id/*/*.debug"))
    syms = run(["readelf", "-sW", str(debug)]).stdout
    addr = next(int(f[1], 16) for f in (l.split() for l in syms.splitlines())
                if len(f) >= 8 and f[7] == "main" and f[3] == "FUNC")
    out = run(["objdump", "-d", "--no-show-raw-insn", f"--start-address={addr:#x}",
               f"--stop-address={addr + 4:#x}", str(deb["root"] / "usr/sbin/tollgate")]).stdout
    producer = run(["readelf", "--debug-dump=info", str(debug)], timeout=300).stdout
    return re.search(r"^\s+[0-9a-f]+:\s+endbr64", out, re.M) is not None, producer


def test_packaged_binary_is_hardened(deb, tmp_path):
    # Everything but CET shows in the stripped binary itself.
    assert hardening_missing(deb["root"] / "usr/sbin/tollgate") in ([], ["cet"])
    has_endbr, producer = endbr64_at_main(deb)
    assert has_endbr, "no endbr64 at main (-fcf-protection)"
    flags = re.search(r"DW_AT_producer.*: (GNU C17 .*)", producer).group(1)
    for flag in ("-O2", "-fstack-protector-strong", "-fstack-clash-protection",
                 "-fcf-protection=full"):
        assert flag in flags, flags
    # The same script finds a binary built without the hardening lacking.
    src = tmp_path / "plain.c"
    src.write_text("#include <stdio.h>\nint main(void) { puts(\"x\"); return 0; }\n")
    plain = tmp_path / "plain"
    assert run(["cc", "-O0", "-fno-stack-protector", "-no-pie", "-fcf-protection=none",
                "-Wl,-z,lazy,-z,norelro", str(src), "-o", str(plain)]).returncode == 0
    assert {"stack protector", "relro", "pie", "cet"} <= set(hardening_missing(plain))


def scratch_user():
    """A user that exists here for `user:`; root may not be the workers' user."""
    return "nobody" if os.geteuid() == 0 else run(["id", "-un"]).stdout.strip()


def scratch_config(deb, user):
    """The shipped config with /etc/tollgate/ moved into the scratch root and
    `user:` set to one that exists here."""
    etc = deb["root"] / "etc/tollgate"
    text = (etc / "tollgate.yaml").read_text()
    assert "/etc/tollgate/pki/" in text and re.search(r"^user: tollgate\b", text, re.M)
    text = text.replace("/etc/tollgate/", f"{etc}/")
    text = re.sub(r"^user: tollgate\b", f"user: {user}", text, flags=re.M)
    cfg = etc / "scratch.yaml"
    cfg.write_text(text)
    return cfg


def test_extracted_binary_runs_and_checks_the_shipped_config(deb):
    tg = str(deb["root"] / "usr/sbin/tollgate")
    r = run([tg, "version"])
    assert r.returncode == 0 and r.stdout.startswith(f"tollgate {deb['version']} "), r.stdout
    cfg = scratch_config(deb, scratch_user())
    # Fresh, before any certificate exists: check refuses the config (why
    # the package does not start the service), naming the missing PKI.
    r = run([tg, "check", "-c", str(cfg)])
    assert r.returncode != 0
    assert "pki/server-ecdsa.crt\": No such file" in r.stdout + r.stderr
    # After `pki init` into the config's PKI directory it checks clean.
    pki = deb["root"] / "etc/tollgate/pki"
    r = run([tg, "pki", "init", str(pki)])
    assert r.returncode == 0, r.stderr
    r = run([tg, "check", "-c", str(cfg)])
    assert r.returncode == 0 and "configuration ok" in r.stdout + r.stderr, r.stdout + r.stderr


def handshake(port, ca, wait_for_refusal=False):
    """A TLS client without a certificate to 127.0.0.1:port: the peer's
    certificate, or the error. Under TLS 1.3 a server refuses a missing
    client certificate after the handshake: wait_for_refusal reads for it."""
    ctx = ssl.create_default_context(cafile=str(ca))
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=T(5)) as raw:
            with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
                if wait_for_refusal:
                    tls.recv(1)
                return tls.getpeercert()
    except (ssl.SSLError, OSError) as e:
        return e


def test_extracted_binary_serves_the_shipped_config(deb, tmp_path):
    """The shipped config, its addresses moved to free loopback ports, run
    by the packaged binary: one-way TLS is served with the PKI's server
    certificate, the mutual listener refuses a client without one."""
    pki = deb["root"] / "etc/tollgate/pki"
    tg = str(deb["root"] / "usr/sbin/tollgate")
    if not (pki / "server-ecdsa.crt").exists():
        assert run([tg, "pki", "init", str(pki)]).returncode == 0
    cfg = scratch_config(deb, scratch_user())
    text = cfg.read_text()
    ports = {}
    for addr in ("0.0.0.0:443", "0.0.0.0:5443", "0.0.0.0:80", "127.0.0.1:9901"):
        assert addr in text, addr
        ports[addr] = free_port()
        text = text.replace(addr, f"127.0.0.1:{ports[addr]}")
    text = text.replace("/var/log/tollgate/access.log", str(tmp_path / "access.log"))
    if os.geteuid() != 0:
        text = re.sub(r"^user: .*$", "", text, flags=re.M)  # only root can switch users
    cfg.write_text(text)
    log = tmp_path / "stderr.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen([tg, "run", "-c", str(cfg)], stdout=subprocess.DEVNULL, stderr=err)
    try:
        admin = ports["127.0.0.1:9901"]

        def ready():
            try:
                url = f"http://127.0.0.1:{admin}/healthz"
                with urllib.request.urlopen(url, timeout=1) as resp:
                    return resp.status == 200
            except OSError:
                assert proc.poll() is None, log.read_text()
                return False
        wait_for(ready, T(15), what="/healthz 200")
        peer = handshake(ports["0.0.0.0:443"], pki / "ca-bundle.crt")
        assert isinstance(peer, dict), peer
        assert ("DNS", "localhost") in peer["subjectAltName"]
        refused = handshake(ports["0.0.0.0:5443"], pki / "ca-bundle.crt", wait_for_refusal=True)
        assert isinstance(refused, ssl.SSLError) and "alert" in str(refused), refused
        wait_for(lambda: "reason=no_client_cert" in log.read_text(), T(5),
                 what="event=tls_handshake_failed reason=no_client_cert")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=T(60))


def test_maintainer_scripts_parse(deb):
    scripts = [p for p in ("preinst", "postinst", "prerm", "postrm")
               if (deb["control"] / p).exists()]
    assert {"postinst", "prerm", "postrm"} <= set(scripts)
    for name in scripts:
        r = run(["sh", "-n", str(deb["control"] / name)])
        assert r.returncode == 0, f"{name}: {r.stderr}"
    # sh -n does reject a script that does not parse.
    bad = deb["top"] / "bad-postinst"
    bad.write_text((deb["control"] / "postinst").read_text().replace("esac", "", 1))
    assert run(["sh", "-n", str(bad)]).returncode != 0


STUB = """#!/bin/sh
echo "{name} $*" >> "{log}"
{body}
"""


def run_script(deb, tmp_path, script, args, user_exists):
    """Runs a maintainer script with every command it may call replaced by a
    stub that records its arguments; PATH holds nothing else, so a command
    without a stub fails the script instead of touching this machine.
    The scripts look at /run/systemd/system, which cannot be faked: callers
    expect what systemd_runs() says."""
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    log = tmp_path / "calls.log"
    log.write_text("")
    bodies = {"getent": "exit 0" if user_exists else "exit 2"}
    for name in ("getent", "adduser", "deb-systemd-helper", "deb-systemd-invoke", "systemctl",
                 "rm", "deluser", "userdel", "delgroup"):
        p = stubs / name
        p.write_text(STUB.format(name=name, log=log, body=bodies.get(name, "exit 0")))
        p.chmod(0o755)
    r = run(["/bin/sh", str(deb["control"] / script)] + args,
            env={"PATH": str(stubs)}, timeout=30)
    assert r.returncode == 0, f"{script} {args}: {r.stdout}{r.stderr}"
    return log.read_text().splitlines()


def systemd_runs():
    return os.path.isdir("/run/systemd/system")


def test_postinst_fresh_install_creates_user_enables_but_does_not_start(deb, tmp_path):
    calls = run_script(deb, tmp_path, "postinst", ["configure"], False)
    adduser = [c for c in calls if c.startswith("adduser ")]
    assert len(adduser) == 1 and "--system" in adduser[0] and "--group" in adduser[0]
    assert adduser[0].endswith(" tollgate")
    assert "deb-systemd-helper enable tollgate.service" in calls
    invoked = [c for c in calls if c.startswith("deb-systemd-invoke") or
               c.startswith("systemctl") and "daemon-reload" not in c]
    assert invoked == [], invoked


def test_postinst_upgrade_keeps_user_and_restarts_only_a_running_unit(deb, tmp_path):
    calls = run_script(deb, tmp_path, "postinst", ["configure", "0.0.9"], True)
    assert not any(c.startswith("adduser") for c in calls)
    starts = [c for c in calls if c.startswith("deb-systemd-invoke")]
    if systemd_runs():
        assert starts == ["deb-systemd-invoke try-restart tollgate.service"]
    else:
        assert starts == []


def test_postrm_purge_removes_logs_and_keeps_user(deb, tmp_path):
    calls = run_script(deb, tmp_path, "postrm", ["purge"], True)
    assert "rm -rf /var/log/tollgate" in calls
    assert "deb-systemd-helper purge tollgate.service" in calls
    assert not any(c.split()[0] in ("deluser", "userdel", "delgroup") for c in calls)
    # A plain remove keeps the logs.
    calls = run_script(deb, tmp_path, "postrm", ["remove"], True)
    assert not any(c.startswith("rm ") for c in calls)


def test_prerm_stops_the_unit_on_remove_only(deb, tmp_path):
    calls = run_script(deb, tmp_path, "prerm", ["remove"], True)
    stop = "deb-systemd-invoke stop tollgate.service"
    assert (stop in calls) == systemd_runs()
    calls = run_script(deb, tmp_path, "prerm", ["upgrade", "0.1.1"], True)
    assert stop not in calls


def healthz(timeout=1):
    try:
        with urllib.request.urlopen("http://127.0.0.1:9901/healthz", timeout=timeout) as resp:
            return resp.status
    except OSError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(not INSTALL_TEST or os.geteuid() != 0,
                    reason="installs onto this machine: needs root and TOLLGATE_DEB_INSTALL_TEST=1")
def test_install_purge(deb):
    assert run(["dpkg-query", "-W", "tollgate"]).returncode != 0, "tollgate is already installed"
    assert not os.path.exists("/etc/tollgate"), "/etc/tollgate exists already"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    r = run(["apt-get", "install", "-y", str(deb["path"])], env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    systemd = systemd_runs()
    proc = None
    try:
        assert run(["getent", "passwd", "tollgate"]).returncode == 0
        assert os.path.islink("/etc/systemd/system/multi-user.target.wants/tollgate.service")
        if systemd:
            assert run(["systemctl", "is-enabled", "tollgate"]).stdout.strip() == "enabled"
            assert run(["systemctl", "is-active", "tollgate"]).stdout.strip() != "active"
        assert healthz() is None, "something answers on the admin port before any start"
        assert run(["/usr/sbin/tollgate", "check", "-c", CONFFILE]).returncode != 0
        assert run(["/usr/sbin/tollgate", "pki", "init", "/etc/tollgate/pki"]).returncode == 0
        r = run(["/usr/sbin/tollgate", "check", "-c", CONFFILE])
        assert r.returncode == 0, r.stdout + r.stderr
        if systemd:
            r = run(["systemctl", "start", "tollgate"], timeout=60)
            assert r.returncode == 0, r.stderr
        else:
            proc = subprocess.Popen(["/usr/sbin/tollgate", "run", "-c", CONFFILE],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: healthz() == 200, T(20), what="/healthz 200")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        r = run(["apt-get", "purge", "-y", "tollgate"], env=env, timeout=600)
        shutil.rmtree("/etc/tollgate/pki", ignore_errors=True)
        shutil.rmtree("/etc/tollgate", ignore_errors=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert run(["dpkg-query", "-W", "-f=${Status}", "tollgate"]).stdout.find("installed") < 0
    assert not os.path.exists("/etc/systemd/system/multi-user.target.wants/tollgate.service")
    assert not os.path.exists("/var/log/tollgate")
    assert run(["getent", "passwd", "tollgate"]).returncode == 0  # kept on purge, see README.Debian
    assert healthz() is None
