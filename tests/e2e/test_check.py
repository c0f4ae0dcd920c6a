"""`tollgate check`: every error class with file:line:col, all errors at once,
warnings, exit codes."""

import json
import re
import subprocess
from pathlib import Path

import pytest

from tg_proc import T, TOLLGATE_BIN, free_port, run_tollgate

DIAG = re.compile(r"^(?P<file>.+?):(?P<line>\d+):(?P<col>\d+): (?P<warn>warning: )?"
                  r"(?P<key>[^:]+): (?P<msg>.+)$")


def base_lines(pki, cert=None, key=None):
    """A good config, one YAML line per list item (line numbers are 1-based)."""
    cert = cert or pki.path("server-ecdsa.crt")
    key = key or pki.path("server-ecdsa.key")
    return [
        "workers: 1",                                   # 1
        "log: { level: info, access: stdout }",         # 2
        "certificates:",                                # 3
        "  site:",                                      # 4
        f"    cert: {cert}",                            # 5
        f"    key: {key}",                              # 6
        "client_cas:",                                  # 7
        "  partners:",                                  # 8
        f"    ca: {pki.path('root.crt')}",              # 9
        f"    crl: {pki.path('clients.crl')}",          # 10
        "target_groups:",                               # 11
        "  web:",                                       # 12
        "    algorithm: wrr",                           # 13
        "    targets:",                                 # 14
        "      - address: 127.0.0.1:9",                 # 15
        "        weight: 2",                            # 16
        "listeners:",                                   # 17
        "  - name: a",                                  # 18
        "    protocol: tcp_ssl",                        # 19
        f"    listen: 127.0.0.1:{free_port()}",         # 20
        "    tls:",                                     # 21
        "      mode: one-way",                          # 22
        "      certificates: [site]",                   # 23
        "    target_group: web",                        # 24
        "    handshake_timeout: 2s",                    # 25
        "    idle_timeout: 5m",                         # 26
    ]


def run_check(tmp_path, lines, name="tollgate.yaml"):
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["check", "-c", str(path)])
    diags = []
    for ln in r.stderr.splitlines():
        m = DIAG.match(ln)
        if m:
            d = m.groupdict()
            d["line"], d["col"] = int(d["line"]), int(d["col"])
            diags.append(d)
    return r, path, diags


def cols(line_text, word):
    """1-based columns of `word` and of the value after it on a line."""
    i = line_text.index(word)
    if ":" not in line_text[i:]:
        return {i + 1}
    after = line_text.index(":", i) + 1
    while after < len(line_text) and line_text[after] == " ":
        after += 1
    return {i + 1, after + 1}


def find(diags, path, line, warn=False):
    hits = [d for d in diags if d["line"] == line and bool(d["warn"]) == warn]
    assert hits, f"no {'warning' if warn else 'error'} at line {line}; got {diags}"
    for d in hits:
        assert d["file"] == str(path)
    return hits


def test_good_config_passes(tmp_path, pki):
    r, path, diags = run_check(tmp_path, base_lines(pki))
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    assert diags == [], r.stderr


# (name, mutate(lines) -> (lines, line no, word at that line, message regex))
def m_unknown_key(lines):
    lines = lines[:24] + ["    colour: blue"] + lines[24:]
    return lines, 25, "colour", r"colou?r|unknown"


def m_wrong_type(lines):
    lines = list(lines)
    lines[15] = "        weight: heavy"
    return lines, 16, "weight", r"number|integer|whole"


def m_bad_duration(lines):
    lines = list(lines)
    lines[25] = "    idle_timeout: 5 minutes"
    return lines, 26, "idle_timeout", r"duration|5 minutes"


def m_missing_file(lines):
    lines = list(lines)
    lines[4] = "    cert: /nonexistent/e2e/server.crt"
    return lines, 5, "cert", r"/nonexistent/e2e/server\.crt"


def m_dangling_cert(lines):
    lines = list(lines)
    lines[22] = "      certificates: [site, nosuch]"
    return lines, 23, "nosuch", r"nosuch"


def m_dangling_group(lines):
    lines = list(lines)
    lines[23] = "    target_group: nowhere"
    return lines, 24, "target_group", r"nowhere"


def m_mutual_without_ca(lines):
    lines = list(lines)
    lines[21] = "      mode: mutual"
    return lines, 22, "mode", r"client_ca"


MUTATIONS = {f.__name__[2:]: f for f in (m_unknown_key, m_wrong_type, m_bad_duration,
                                          m_missing_file, m_dangling_cert, m_dangling_group,
                                          m_mutual_without_ca)}


@pytest.mark.parametrize("name", list(MUTATIONS))
def test_error_class_has_file_line_col(tmp_path, pki, name):
    lines, line, word, msg = MUTATIONS[name](base_lines(pki))
    r, path, diags = run_check(tmp_path, lines)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "configuration ok" not in r.stdout
    hits = find([d for d in diags if not d["warn"]], path, line)
    d = hits[0]
    text = lines[line - 1]
    if word in text:
        assert d["col"] in cols(text, word) or d["col"] == text.index(word) + 1, (d, text)
    assert re.search(msg, d["msg"] + " " + d["key"], re.I), d


def test_all_errors_at_once(tmp_path, pki):
    lines = base_lines(pki)
    # Apply every mutation that does not shift lines, then the insertion last.
    expected = []
    for name in ("wrong_type", "bad_duration", "missing_file", "dangling_cert",
                 "mutual_without_ca"):
        lines, line, _, _ = MUTATIONS[name](lines)
        expected.append(line)
    lines, line, _, _ = m_unknown_key(lines)
    expected = [x if x < 25 else x + 1 for x in expected] + [line]
    r, path, diags = run_check(tmp_path, lines)
    assert r.returncode == 1
    got = {d["line"] for d in diags if not d["warn"]}
    missing = sorted(set(expected) - got)
    assert not missing, f"errors not reported for lines {missing}:\n{r.stderr}"


def test_run_refuses_a_bad_config_cleanly(tmp_path, pki):
    """`run` with a bad config reports every error, does not start, and
    leaves nothing behind (under ASan: no leak report at exit)."""
    lines, line, _, _ = MUTATIONS["wrong_type"](base_lines(pki))
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["run", "-c", str(path)])
    assert r.returncode == 1, r.stderr
    assert f"{path}:{line}:" in r.stderr and "not started" in r.stderr, r.stderr
    assert "Sanitizer" not in r.stderr, r.stderr


def test_warning_for_certificate_expiring_within_30_days(tmp_path, pki, bad_certs):
    cert, key = bad_certs["server_expiring"]
    r, path, diags = run_check(tmp_path, base_lines(pki, cert=cert, key=key))
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    warns = [d for d in diags if d["warn"]]
    assert warns, f"no warning for a certificate expiring in 10 days:\n{r.stderr}"
    assert any(re.search(r"expir", w["msg"], re.I) for w in warns), warns
    assert all(w["file"] == str(path) for w in warns)
    assert any(w["line"] in (4, 5) for w in warns), warns


def test_no_warning_for_certificate_valid_for_long(tmp_path, pki, bad_certs):
    cert, key = bad_certs["server_fresh"]
    r, path, diags = run_check(tmp_path, base_lines(pki, cert=cert, key=key))
    assert r.returncode == 0, r.stderr
    assert not [d for d in diags if d["warn"] and re.search("expir", d["msg"], re.I)], r.stderr


def test_key_not_matching_certificate_is_an_error(tmp_path, pki):
    r, path, diags = run_check(tmp_path, base_lines(pki, key=pki.path("server-rsa.key")))
    assert r.returncode == 1, (r.stdout, r.stderr)
    errs = [d for d in diags if not d["warn"]]
    assert any(re.search(r"match", d["msg"], re.I) for d in errs), r.stderr
    assert any(d["line"] in (4, 5, 6) for d in errs), errs


def test_client_key_as_server_key_not_matching(tmp_path, pki):
    r, path, diags = run_check(tmp_path, base_lines(pki, key=pki.path("alice.key")))
    assert r.returncode == 1, r.stderr


def test_relative_paths_resolve_against_config_dir(tmp_path, pki):
    import shutil
    d = tmp_path / "conf"
    (d / "pki").mkdir(parents=True)
    for f in ("server-ecdsa.crt", "server-ecdsa.key", "root.crt", "clients.crl"):
        shutil.copy(pki.path(f), d / "pki" / f)
    lines = base_lines(pki, cert="pki/server-ecdsa.crt", key="pki/server-ecdsa.key")
    lines[8] = "    ca: pki/root.crt"
    lines[9] = "    crl: pki/clients.crl"
    r, path, diags = run_check(d, lines)
    assert r.returncode == 0, r.stderr
    # Twin: from another directory the same relative names are still found
    # (they are relative to the config, not to the working directory).
    r2 = run_tollgate(["check", "-c", str(path)], cwd="/")
    assert r2.returncode == 0, r2.stderr
    (d / "pki" / "root.crt").unlink()
    r3 = run_tollgate(["check", "-c", str(path)], cwd=str(d / "pki"))
    assert r3.returncode == 1


def test_exit_codes(tmp_path, pki):
    assert run_tollgate(["check"]).returncode == 2
    assert run_tollgate(["check", "-c"]).returncode == 2
    assert run_tollgate(["frobnicate"]).returncode == 2
    r = run_tollgate(["check", "-c", str(tmp_path / "missing.yaml")])
    assert r.returncode == 1 and "missing.yaml" in r.stderr
    bad = tmp_path / "syntax.yaml"
    bad.write_text("listeners: [\n  - {name: a\n")
    r = run_tollgate(["check", "-c", str(bad)])
    assert r.returncode == 1
    assert any(DIAG.match(ln) or ln.startswith(f"{bad}:") for ln in r.stderr.splitlines()), \
        r.stderr


def test_run_refuses_a_bad_config(tmp_path, pki):
    """`run` checks like `check` and does not start with errors."""
    lines, line, _, _ = m_dangling_cert(base_lines(pki))
    path = tmp_path / "bad.yaml"
    path.write_text("\n".join(lines) + "\n")
    r = run_tollgate(["run", "-c", str(path)], timeout=30)
    assert r.returncode == 1
    assert f"{path}:{line}:" in r.stderr


def write_stale_crl(pki, path):
    """An intermediate CRL past its nextUpdate, plus the root's current CRL."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization

    import tg_certs
    inter = tg_certs.load_cert(pki.path("intermediate.crt"))
    key = serialization.load_pem_private_key(open(pki.path("intermediate.key"), "rb").read(),
                                             None)
    now = datetime.datetime.now(datetime.timezone.utc)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(inter.subject)
           .last_update(now - datetime.timedelta(days=10))
           .next_update(now - datetime.timedelta(days=1))
           .sign(key, hashes.SHA256()))
    root_subject = tg_certs.load_cert(pki.path("root.crt")).subject
    text = open(pki.path("clients.crl"), "rb").read()
    marker = b"-----BEGIN X509 CRL-----"
    root_crl = [marker + p for p in text.split(marker)[1:]
                if x509.load_pem_x509_crl(marker + p).issuer == root_subject]
    assert len(root_crl) == 1
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM) + root_crl[0])
    return str(path)


def mutual_lines(pki, crl):
    lines = base_lines(pki)
    lines[9] = f"    crl: {crl}"
    lines[21] = "      mode: mutual"
    return lines[:23] + ["      client_ca: partners"] + lines[23:]


def test_warning_for_crl_past_next_update(tmp_path, pki):
    crl = write_stale_crl(pki, tmp_path / "stale.crl")
    r, path, diags = run_check(tmp_path, mutual_lines(pki, crl))
    assert r.returncode == 0, r.stderr
    warns = [d for d in diags if d["warn"] and d["line"] in (8, 9, 10)]
    assert warns, f"no warning for a CRL past its nextUpdate:\n{r.stderr}"
    # Twin: the current CRL gives no such warning.
    r, path, diags = run_check(tmp_path, mutual_lines(pki, pki.path("clients.crl")))
    assert r.returncode == 0, r.stderr
    assert not [d for d in diags if d["warn"] and d["line"] in (8, 9, 10)], r.stderr


def test_chain_out_of_order_is_reported(tmp_path, pki):
    """intermediate first, then the leaf: tollgate must say so (a warning
    about the order, or an error), never accept it silently."""
    from pathlib import Path
    leaf, inter = Path(pki.path("server-ecdsa.crt")).read_text().split(
        "-----END CERTIFICATE-----\n")[:2]
    bad = tmp_path / "reversed.crt"
    bad.write_text(inter + "-----END CERTIFICATE-----\n" + leaf + "-----END CERTIFICATE-----\n")
    r, path, diags = run_check(tmp_path, base_lines(pki, cert=str(bad)))
    assert [d for d in diags if d["line"] in (4, 5, 6)], \
        f"nothing reported for a chain in the wrong order:\n{r.stderr}"


def _pem_blocks(path):
    from pathlib import Path
    end = "-----END CERTIFICATE-----\n"
    return [b + end for b in Path(path).read_text().split(end) if b.strip()]


def test_chain_missing_intermediate_is_an_error(tmp_path, pki):
    """leaf + root without the intermediate between them: no client that
    holds only the root can verify it, so check refuses it (exit 1)."""
    leaf = _pem_blocks(pki.path("server-ecdsa.crt"))[0]
    root = _pem_blocks(pki.path("root.crt"))[0]
    gap = tmp_path / "gap.crt"
    gap.write_text(leaf + root)
    r, path, diags = run_check(tmp_path, base_lines(pki, cert=str(gap)))
    assert r.returncode == 1, r.stderr
    errs = [d for d in diags if not d["warn"] and d["line"] == 5]
    assert errs and "chain is incomplete" in errs[0]["msg"] \
        and "add the missing intermediate" in errs[0]["msg"], r.stderr


def test_chain_ending_at_intermediate_is_accepted(tmp_path, pki):
    """The twin: leaf + intermediate, root left to the clients, is normal."""
    blocks = _pem_blocks(pki.path("server-ecdsa.crt"))
    assert len(blocks) >= 2
    ok = tmp_path / "ok.crt"
    ok.write_text("".join(blocks[:2]))
    r, path, diags = run_check(tmp_path, base_lines(pki, cert=str(ok)))
    assert r.returncode == 0, r.stderr
    assert not [d for d in diags if d["line"] in (4, 5, 6)], r.stderr


def test_readme_config_examples_check(tmp_path, pki):
    """Every YAML example in README.md is a valid config (with the PKI's files)."""
    from tg_proc import REPO
    blocks = re.findall(r"```yaml\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    assert len(blocks) >= 2
    pki_dir = str(Path(pki.path("root.crt")).parent) + "/"
    for i, text in enumerate(blocks):
        path = tmp_path / f"readme{i}.yaml"
        path.write_text(text.replace("pki/", pki_dir))
        r = run_tollgate(["check", "-c", str(path)])
        assert r.returncode == 0, f"README example {i}:\n{r.stderr}"


def optional_tcp_lines(pki, client_auth="optional", proxy=None):
    """The tcp_ssl listener of base_lines made mutual with client_auth at
    line 24 and, when given, proxy_protocol at line 28."""
    lines = base_lines(pki)
    lines[21] = "      mode: mutual"
    lines = lines[:23] + [f"      client_auth: {client_auth}",   # 24
                          "      client_ca: partners"] + lines[23:]
    if proxy is not None:
        lines.append(f"    proxy_protocol: {proxy}")            # 29
    return lines


@pytest.mark.parametrize("proxy", [None, "none", "v1"])
def test_optional_tcp_ssl_without_proxy_v2_is_an_error(tmp_path, pki, proxy):
    """mutual + optional on tcp_ssl relays every client, and without PROXY
    v2 the target cannot learn which ones were verified: an error at
    client_auth that names both ways out. Twins: proxy_protocol: v2, or
    client_auth: required, pass."""
    lines = optional_tcp_lines(pki, proxy=proxy)
    r, path, diags = run_check(tmp_path, lines)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "configuration ok" not in r.stdout
    d = find(diags, path, 24)[0]
    assert d["col"] in cols(lines[23], "client_auth"), d
    assert d["key"] == "listeners[0].tls.client_auth", d
    assert "proxy_protocol: v2" in d["msg"] and "client_auth: required" in d["msg"], d

    for twin in (optional_tcp_lines(pki, proxy="v2"),
                 optional_tcp_lines(pki, client_auth="required", proxy=proxy)):
        r, path, diags = run_check(tmp_path, twin)
        assert r.returncode == 0, r.stderr
        assert "configuration ok" in r.stdout
        assert diags == [], r.stderr


# ---- --format json ----------------------------------------------------------

def run_check_json(path):
    r = run_tollgate(["check", "-c", str(path), "--format", "json"])
    return r, json.loads(r.stdout)


def assert_entry_shape(e):
    assert set(e) == {"file", "line", "column", "key", "message"}, e
    assert isinstance(e["line"], int) and isinstance(e["column"], int)
    assert isinstance(e["message"], str) and e["message"]


def test_json_good_config_is_ok(tmp_path, pki):
    r, path, _ = run_check(tmp_path, base_lines(pki))
    assert r.returncode == 0
    rj, doc = run_check_json(path)
    assert rj.returncode == 0, rj.stderr
    assert doc["ok"] is True and doc["errors"] == [], doc
    assert isinstance(doc["warnings"], list)
    assert rj.stderr == ""  # everything a pipeline reads is on stdout


def test_json_bad_config_same_errors_as_text(tmp_path, pki):
    """Every error of the text form, at the same file:line:col, is in the JSON
    form, no more and no fewer; the exit code is the same."""
    lines = base_lines(pki)
    for name in ("wrong_type", "bad_duration", "missing_file", "dangling_cert",
                 "mutual_without_ca"):
        lines, _, _, _ = MUTATIONS[name](lines)
    r, path, diags = run_check(tmp_path, lines)
    assert r.returncode == 1
    rj, doc = run_check_json(path)
    assert rj.returncode == 1, rj.stderr
    assert doc["ok"] is False
    for e in doc["errors"] + doc["warnings"]:
        assert_entry_shape(e)
    text_errors = sorted((d["file"], d["line"], d["col"], d["key"], d["msg"])
                         for d in diags if not d["warn"])
    json_errors = sorted((e["file"], e["line"], e["column"], e["key"], e["message"])
                         for e in doc["errors"])
    assert len(text_errors) >= 5
    assert json_errors == text_errors
    text_warnings = [d for d in diags if d["warn"]]
    assert len(doc["warnings"]) == len(text_warnings)


def test_json_stays_valid_with_hostile_bytes_in_a_message(tmp_path, pki):
    """A YAML string with quotes, a backslash, a newline, control bytes and a
    stray byte that is not UTF-8 ends up in an error message (an unknown
    target group): the output is still one JSON document, and the message
    holds the name as it was written."""
    name = 'we"b\\x\n\x01\x1f\x7f'
    lines = base_lines(pki)
    lines[23] = "    target_group: " + json.dumps(name)
    r, path, diags = run_check(tmp_path, lines)
    assert r.returncode == 1
    rj, doc = run_check_json(path)
    assert rj.returncode == 1
    assert any(name in e["message"] and e["line"] == 24 for e in doc["errors"]), doc


def test_json_stays_valid_with_hostile_bytes_in_a_path(tmp_path, pki):
    """Paths are bytes, not UTF-8: a config whose name holds a quote, a
    newline, a control byte and a byte that is not UTF-8 gives valid UTF-8
    JSON (U+FFFD for the stray byte) naming that file."""
    lines, _, _, _ = MUTATIONS["wrong_type"](base_lines(pki))
    name = b'we"ird\n\x01\xff.yaml'
    path = bytes(tmp_path) + b"/" + name
    with open(path, "wb") as f:
        f.write(("\n".join(lines) + "\n").encode())
    r = subprocess.run([TOLLGATE_BIN.encode(), b"check", b"-c", path, b"--format", b"json"],
                       capture_output=True, timeout=T(60))
    assert r.returncode == 1, r.stderr
    doc = json.loads(r.stdout.decode("utf-8"))  # strict: valid UTF-8, no raw control byte
    files = {e["file"] for e in doc["errors"]}
    assert files == {str(tmp_path) + '/we"ird\n\x01\ufffd.yaml'}, files


def test_json_missing_file_is_a_finding(tmp_path):
    rj, doc = run_check_json(tmp_path / "missing.yaml")
    assert rj.returncode == 1
    assert doc["ok"] is False and doc["errors"], doc
    assert any("missing.yaml" in (e["file"] or "") + e["message"] for e in doc["errors"])


@pytest.mark.parametrize("args", [["--format", "yaml"], ["--format"], ["--format", "json", "-T"]])
def test_json_format_usage_errors(tmp_path, pki, args):
    r, path, _ = run_check(tmp_path, base_lines(pki))
    assert r.returncode == 0
    r = run_tollgate(["check", "-c", str(path), *args])
    assert r.returncode == 2, (args, r.stderr)
    assert r.stdout == ""


def test_text_is_the_default_and_explicit(tmp_path, pki):
    lines, _, _, _ = MUTATIONS["wrong_type"](base_lines(pki))
    r, path, diags = run_check(tmp_path, lines)
    rt = run_tollgate(["check", "-c", str(path), "--format=text"])
    assert (rt.returncode, rt.stdout, rt.stderr) == (r.returncode, r.stdout, r.stderr)
    assert diags and r.stdout == ""
