"""`make install` and `make uninstall` into a scratch DESTDIR: every file in
its place with its mode, the unit's paths following PREFIX, the installed
binary checking the installed example config, man pages that render without
a warning and cover every command and top-level key, the bash completion."""

import grp
import os
import pwd
import re
import shutil
import stat
import subprocess

import pytest
import tg_tls
from tg_proc import REPO, T, group, listener, wait_for

MAKE_TIMEOUT = 900  # a first `make install` builds the release binary

# Installed with PREFIX=/usr and the default SYSCONFDIR=/etc: path -> mode.
FILES = {
    "usr/sbin/tollgate": 0o755,
    "etc/tollgate/tollgate.yaml": 0o640,
    "usr/lib/systemd/system/tollgate.service": 0o644,
    "etc/logrotate.d/tollgate": 0o644,
    "usr/share/bash-completion/completions/tollgate": 0o644,
    "usr/share/man/man8/tollgate.8": 0o644,
    "usr/share/man/man5/tollgate.yaml.5": 0o644,
}


def make(*args):
    r = subprocess.run(["make", "-C", str(REPO), "--no-print-directory", "JOBS=2", *args],
                       capture_output=True, text=True, timeout=MAKE_TIMEOUT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def install(root, *args):
    return make("install", f"DESTDIR={root}", "PREFIX=/usr", *args)


def tree(root):
    """Every file (not directory) under root, relative."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())


@pytest.fixture(scope="module")
def dest(tmp_path_factory):
    root = tmp_path_factory.mktemp("destdir")
    install(root)
    return root


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, timeout=T(60), **kw)


def man(page):
    r = run(["man", "-l", str(page)], env=dict(os.environ, MANWIDTH="80", MANPAGER="cat",
                                                PAGER="cat", LC_ALL="C.UTF-8"))
    return r


# ---- files ---------------------------------------------------------------------------------

def test_install_puts_every_file_with_its_mode_and_nothing_else(dest):
    assert tree(dest) == sorted(FILES)
    for rel, mode in FILES.items():
        st = (dest / rel).stat()
        assert stat.S_ISREG(st.st_mode), rel
        assert stat.S_IMODE(st.st_mode) == mode, f"{rel}: {oct(stat.S_IMODE(st.st_mode))}"
    # The config directory may hold keys: not readable by others.
    assert stat.S_IMODE((dest / "etc/tollgate").stat().st_mode) == 0o750


def test_install_leaves_the_mode_of_existing_directories_alone(tmp_path):
    """Twin of the above: directories that exist (a setgid sbin, a config
    directory the operator opened up) keep their mode."""
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "usr/sbin").chmod(0o2775)
    (tmp_path / "etc/tollgate").mkdir(parents=True)
    (tmp_path / "etc/tollgate").chmod(0o755)
    install(tmp_path)
    assert stat.S_IMODE((tmp_path / "usr/sbin").stat().st_mode) == 0o2775
    assert stat.S_IMODE((tmp_path / "etc/tollgate").stat().st_mode) == 0o755
    assert (tmp_path / "usr/sbin/tollgate").is_file()


def test_install_writes_the_example_config_and_the_sources_unchanged(dest):
    assert (dest / "etc/tollgate/tollgate.yaml").read_bytes() == \
        (REPO / "contrib/tollgate.yaml").read_bytes()
    assert (dest / "etc/logrotate.d/tollgate").read_bytes() == \
        (REPO / "contrib/tollgate.logrotate").read_bytes()
    assert (dest / "usr/share/bash-completion/completions/tollgate").read_bytes() == \
        (REPO / "contrib/tollgate.bash-completion").read_bytes()


def unit_exec_lines(path):
    return [ln for ln in path.read_text().splitlines() if ln.startswith(("ExecStart", "ExecStartPre"))]


def test_unit_runs_the_installed_binary_on_the_installed_config(dest):
    lines = unit_exec_lines(dest / "usr/lib/systemd/system/tollgate.service")
    assert lines == ["ExecStartPre=/usr/sbin/tollgate check -c /etc/tollgate/tollgate.yaml",
                     "ExecStart=/usr/sbin/tollgate run -c /etc/tollgate/tollgate.yaml"]
    for ln in lines:
        binary, cfg = ln.split("=", 1)[1].split()[0], ln.split()[-1]
        assert (dest / binary.lstrip("/")).is_file() and (dest / cfg.lstrip("/")).is_file()


def test_unit_paths_follow_prefix_and_sysconfdir(tmp_path):
    """The twin of the test above: another PREFIX and SYSCONFDIR, other paths."""
    make("install", f"DESTDIR={tmp_path}", "PREFIX=/opt/tg", "SYSCONFDIR=/opt/tg/etc")
    assert unit_exec_lines(tmp_path / "opt/tg/lib/systemd/system/tollgate.service") == [
        "ExecStartPre=/opt/tg/sbin/tollgate check -c /opt/tg/etc/tollgate/tollgate.yaml",
        "ExecStart=/opt/tg/sbin/tollgate run -c /opt/tg/etc/tollgate/tollgate.yaml"]
    assert (tmp_path / "opt/tg/etc/tollgate/tollgate.yaml").is_file()
    assert (tmp_path / "opt/tg/etc/logrotate.d/tollgate").is_file()
    assert not (tmp_path / "etc").exists() and not (tmp_path / "usr").exists()


def test_logrotate_rotates_the_example_access_log_and_sends_sigusr1(dest):
    conf = (dest / "etc/tollgate/tollgate.yaml").read_text()
    access = re.search(r"^\s+access:\s*(\S+)", conf, re.M).group(1)
    rot = (dest / "etc/logrotate.d/tollgate").read_text()
    pattern = re.search(r"^(/\S+)\s*\{", rot, re.M).group(1)
    assert os.path.dirname(access) == os.path.dirname(pattern)
    assert re.fullmatch(os.path.basename(pattern).replace(".", r"\.").replace("*", ".*"),
                        os.path.basename(access))
    post = rot.split("postrotate", 1)[1].split("endscript", 1)[0]
    assert "SIGUSR1" in post and "tollgate.service" in post
    # docs/OPERATIONS.md says which signal reopens the access log.
    ops = (REPO / "docs/OPERATIONS.md").read_text()
    assert re.search(r"`SIGUSR1` \| reopen the access log", ops)


ROTATE_SIGNAL = "systemctl kill --kill-who=main --signal=SIGUSR1 tollgate.service"


def test_installed_logrotate_file_rotates_and_tollgate_reopens(dest, tollgate, backend, pki,
                                                              tmp_path):
    """The installed file, run by logrotate itself, on a running tollgate's
    access log: only the log path, the owner of the new file and the
    signal's addressee (systemctl, the unit's main PID) are swapped for this
    test's; every other directive is the installed one."""
    logrotate = shutil.which("logrotate", path=os.environ["PATH"] + ":/usr/sbin")
    if logrotate is None:
        pytest.skip("logrotate not installed (Debian package logrotate; scripts/setup.sh test)")
    be = backend()
    tg = tollgate({"workers": 2, "target_groups": {"g": group(be.address)},
                   "listeners": [listener()]})
    ctx = tg_tls.client_ctx(pki)
    _, info1 = tg_tls.roundtrip(tg.addr(), ctx, b"1\n")
    tg.access_for(info1["local"][1])

    text = (dest / "etc/logrotate.d/tollgate").read_text()
    assert text.count("/var/log/tollgate/*.log {") == 1 and text.count(ROTATE_SIGNAL) == 1
    assert text.count("create 0640 tollgate adm") == 1
    me, my_group = pwd.getpwuid(os.getuid()).pw_name, grp.getgrgid(os.getgid()).gr_name
    text = (text.replace("/var/log/tollgate/*.log {", f"{tg.access_path} {{")
            .replace(ROTATE_SIGNAL, f"kill -USR1 {tg.pid}")
            .replace("create 0640 tollgate adm", f"create 0640 {me} {my_group}"))
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text)
    conf.chmod(0o644)
    r = run([logrotate, "--force", "--state", str(tmp_path / "state"), str(conf)])
    assert r.returncode == 0, r.stdout + r.stderr

    rotated = tg.access_path.with_name(tg.access_path.name + ".1")  # delaycompress
    assert f":{info1['local'][1]}\"" in rotated.read_text()
    assert stat.S_IMODE(tg.access_path.stat().st_mode) == 0o640
    workers = set(tg.worker_pids())
    wait_for(lambda: workers <= {e["_pid"] for e in tg.events("access_log_reopened")}, T(5),
             what="both workers reopening the access log")
    _, info2 = tg_tls.roundtrip(tg.addr(), ctx, b"2\n")
    assert tg.access_for(info2["local"][1])["bytes_in"] == 2
    # Twin: the record after the rotation is not in the rotated file.
    assert f":{info2['local'][1]}\"" not in rotated.read_text()


def test_second_install_keeps_an_edited_config(tmp_path):
    install(tmp_path)
    cfg = tmp_path / "etc/tollgate/tollgate.yaml"
    cfg.write_text("# edited by the operator\n")
    r = install(tmp_path)
    assert cfg.read_text() == "# edited by the operator\n"
    assert "keeping" in r.stdout
    # Everything else is installed again.
    (tmp_path / "usr/sbin/tollgate").unlink()
    install(tmp_path)
    assert (tmp_path / "usr/sbin/tollgate").is_file()


def test_uninstall_leaves_only_the_config_directory(tmp_path):
    install(tmp_path)
    assert any(not f.startswith("etc/tollgate/") for f in tree(tmp_path))
    r = make("uninstall", f"DESTDIR={tmp_path}", "PREFIX=/usr")
    assert tree(tmp_path) == ["etc/tollgate/tollgate.yaml"]
    assert "left" in r.stdout


# ---- the installed binary and config -------------------------------------------------------

def test_installed_binary_runs(dest):
    r = run([str(dest / "usr/sbin/tollgate"), "version"])
    assert r.returncode == 0 and r.stdout.startswith("tollgate "), r.stdout + r.stderr


def test_installed_example_config_checks_once_its_pki_exists(tmp_path):
    install(tmp_path)
    tg = str(tmp_path / "usr/sbin/tollgate")
    etc = tmp_path / "etc/tollgate"
    # Its paths are relative to the config: without etc/tollgate/pki, check
    # names the missing files there.
    r = run([tg, "check", "-c", str(etc / "tollgate.yaml")])
    assert r.returncode == 1
    assert f'cannot read "{etc}/pki/server-ecdsa.crt"' in r.stderr or \
        "pki/server-ecdsa.crt" in r.stderr, r.stderr
    r = run([tg, "pki", "init", str(etc / "pki")])
    assert r.returncode == 0, r.stderr
    r = run([tg, "check", "-c", str(etc / "tollgate.yaml")])
    try:
        pwd.getpwnam("tollgate")
        assert r.returncode == 0, r.stderr
    except KeyError:
        # `user: tollgate` must exist on the host: the only error left.
        errors = [ln for ln in r.stderr.splitlines()
                  if re.match(r"\S+:\d+:\d+: (?!warning: )", ln)]
        assert r.returncode == 1 and len(errors) == 1, r.stderr
        assert 'user: unknown user "tollgate"' in errors[0]
    # With a user that exists, next to the original so pki/ resolves the same.
    text = (etc / "tollgate.yaml").read_text()
    (etc / "as-root.yaml").write_text(re.sub(r"^user: \S+", "user: root", text, flags=re.M))
    r = run([tg, "check", "-c", str(etc / "as-root.yaml")])
    assert r.returncode == 0, r.stderr


# ---- man pages -----------------------------------------------------------------------------

@pytest.mark.parametrize("page", ["usr/share/man/man8/tollgate.8",
                                  "usr/share/man/man5/tollgate.yaml.5"])
def test_man_page_renders_without_warnings(dest, page):
    r = man(dest / page)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert re.search(r"^NAME\n\s+tollgate(\.yaml)? - ", r.stdout, re.M), r.stdout[:500]


def test_man_check_sees_troff_warnings(tmp_path):
    """Twin: docs/CONFIG.md's tables converted as tables (without
    man/tables.lua) do not fit 80 columns, and the check above would say so."""
    page = tmp_path / "raw.5"
    r = run(["pandoc", "--standalone", "--from", "gfm", "--to", "man", "--metadata",
             "title=RAW", "-o", str(page), str(REPO / "docs/CONFIG.md")])
    assert r.returncode == 0, r.stderr
    r = man(page)
    assert "warning" in r.stderr


def unwrap(text):
    """Rendered man text as one line: words broken at the line end joined."""
    text = re.sub(r"\u2010\n\s*", "", text)
    text = re.sub(r"-\n\s*", "-", text)
    return " ".join(text.split())


def config_top_level_keys():
    text = (REPO / "docs/CONFIG.md").read_text()
    section = text.split("\n## Top level\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z_]+)` \|", section, re.M)


def test_config_man_page_lists_every_top_level_key(dest):
    keys = config_top_level_keys()
    assert len(keys) >= 10 and "listeners" in keys and "workers" in keys, keys
    out = man(dest / "usr/share/man/man5/tollgate.yaml.5").stdout
    top = re.split(r"\n\S", out.split("\nTop level\n", 1)[1], 1)[0] if "\nTop level\n" in out else ""
    assert top, out[:2000]
    for key in keys:
        # Each key is a term of the "Top level" section, at the term indent.
        assert re.search(rf"^ {{7}}{key}\b", top, re.M), key
    # Every section of docs/CONFIG.md is a section of the man page.
    for h in re.findall(r"^## (.+)$", (REPO / "docs/CONFIG.md").read_text(), re.M):
        assert re.search(rf"^{re.escape(h)}$", out, re.M), h


COMMANDS = ["run", "check", "demo", "pki init", "pki revoke", "cert inspect", "cert verify",
            "cert match", "cert convert", "probe", "trust diff", "fleet push", "version"]


def usage_lines(binary):
    """The usage line of each command's --help (continuation lines joined),
    as "tollgate COMMAND OPTIONS..."."""
    entries = []
    for cmd in COMMANDS:
        r = run([binary, *cmd.split(), "--help"])
        assert r.returncode == 0, (cmd, r.stderr)
        lines = r.stdout.splitlines()
        assert lines[0].startswith("usage: tollgate "), (cmd, lines[0])
        entry = lines[0][len("usage: "):]
        for ln in lines[1:]:
            if not ln.startswith("      ") or not ln.strip().startswith("["):
                break
            entry += " " + ln.strip()
        entries.append(entry)
    return entries


def command_of(entry):
    words = entry.split()[1:]
    return words[:2] if words[0] in ("cert", "pki", "trust", "fleet") else words[:1]


def options_of(entry):
    return sorted(set(re.findall(r"(?<![\w-])(--?[A-Za-z](?:[\w-]|\.\d)*)", entry)))


def test_tollgate8_documents_every_command_and_option(dest):
    entries = usage_lines(str(dest / "usr/sbin/tollgate"))
    assert len(entries) >= 9, entries
    out = man(dest / "usr/share/man/man8/tollgate.8").stdout
    flat = unwrap(out)
    synopsis = unwrap(out.split("\nSYNOPSIS\n", 1)[1].split("\nDESCRIPTION\n", 1)[0])
    for e in entries:
        cmd = " ".join(["tollgate", *command_of(e)])
        assert cmd in synopsis, cmd
        for opt in options_of(e):
            assert opt in flat, f"{cmd}: {opt}"
    for section in ("COMMANDS", "OPTIONS", "SIGNALS", "EXIT STATUS", "FILES"):
        assert re.search(rf"^{section}$", out, re.M), section
    for sig in ("SIGHUP", "SIGTERM", "SIGUSR1"):
        assert sig in out
    # Each command is a term with its description indented below it.
    # (groff justifies alternate lines from either side: spaces vary)
    assert re.search(r"^ {7}run -c FILE\n {14}Start +the +master", out, re.M), out[:3000]


# ---- bash completion -----------------------------------------------------------------------

def complete(dest, *words):
    """COMPREPLY of the installed completion for `tollgate WORDS` (the last
    word is the one being completed), in a bash without any profile."""
    script = (f'source {dest}/usr/share/bash-completion/completions/tollgate\n'
              'COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _tollgate\n'
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    r = run(["bash", "--norc", "--noprofile", "-c", script, "bash", "tollgate", *words],
            cwd=dest)
    assert r.returncode == 0, r.stderr
    return [w for w in r.stdout.splitlines() if w]


def test_completion_file_parses(dest):
    r = run(["bash", "-n", str(dest / "usr/share/bash-completion/completions/tollgate")])
    assert r.returncode == 0, r.stderr


def test_completion_completes_commands(dest):
    assert complete(dest, "ce") == ["cert"]
    assert complete(dest, "cert", "ve") == ["verify"]
    assert complete(dest, "pki", "") == ["init", "revoke"]
    assert complete(dest, "pki", "init", "d", "--key", "") == ["ecdsa", "rsa"]
    # Twin: nothing for what is no command.
    assert complete(dest, "xy") == []


def test_completion_offers_every_option_of_each_command(dest):
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    for e in usage_lines(str(dest / "usr/sbin/tollgate")):
        cmd = command_of(e)
        opts = options_of(e)
        if not opts:
            continue
        offered = complete(dest, *cmd, "-")
        missing = [o for o in opts if o not in offered]
        assert not missing, f"tollgate {' '.join(cmd)}: {missing} (offered {offered})"
