"""The command line: --help and -h for every command (description, options,
examples; exit 0 on stdout), usage errors (exit 2 on stderr), and "did you
mean" for an unknown command, subcommand or option."""

import pytest

from tg_proc import run_tollgate

COMMANDS = [
    [], ["run"], ["check"], ["demo"], ["pki"], ["pki", "init"], ["pki", "revoke"], ["cert"],
    ["cert", "inspect"],
    ["cert", "verify"], ["cert", "match"], ["cert", "convert"], ["probe"], ["version"],
    ["fleet"], ["fleet", "push"], ["fleet", "status"],
]


def name(cmd):
    return " ".join(cmd) or "tollgate"


@pytest.mark.parametrize("cmd", COMMANDS, ids=name)
def test_help_has_description_options_and_examples(cmd):
    r = run_tollgate([*cmd, "--help"])
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    out = r.stdout
    assert out.startswith("usage: tollgate"), out
    desc = out.splitlines()[1]
    assert desc.startswith("  ") and len(desc.strip()) > 20, out  # a sentence, not options
    assert ("options:" in out) or ("subcommands:" in out) or ("commands:" in out), out
    assert "examples:" in out
    examples = out.split("examples:", 1)[1].strip().splitlines()
    assert examples[0].strip().startswith("tollgate " + " ".join(cmd[:1])), examples
    assert run_tollgate([*cmd, "-h"]).stdout == out
    too_wide = [ln for ln in out.splitlines() if len(ln) > 80]
    assert not too_wide, too_wide  # fits a terminal


@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c], ids=name)
def test_help_command_is_the_same_as_dash_dash_help(cmd):
    assert run_tollgate(["help", *cmd]).stdout == run_tollgate([*cmd, "--help"]).stdout


@pytest.mark.parametrize("cmd", [["run"], ["check"], ["pki", "init"], ["pki", "revoke"],
                                 ["pki", "revoke", "d"], ["cert"], ["probe"],
                                 ["cert", "inspect"], ["cert", "verify"], ["cert", "match"],
                                 ["cert", "convert"], ["pki"], []], ids=name)
def test_missing_arguments_are_usage_errors(cmd):
    r = run_tollgate(cmd)
    assert r.returncode == 2, (cmd, r.stdout, r.stderr)
    assert r.stdout == "" and "usage" in r.stderr


# (argv, the suggestion expected)
CLOSE = [
    (["chek"], "check"),
    (["verison"], "version"),
    (["prboe", "x:1"], "probe"),
    (["--hlep"], "--help"),
    (["pki", "int", "d"], "init"),
    (["pki", "revok", "d", "alice"], "revoke"),
    (["pki", "revoke", "d", "alice", "--reson", "superseded"], "--reason"),
    (["pki", "revoke", "d", "alice", "--reason", "keyCompromize"], "keyCompromise"),
    (["cert", "inspcet", "f"], "inspect"),
    (["run", "--conifg", "x"], "--config"),
    (["check", "--fromat", "json", "-c", "x"], "--format"),
    (["check", "-c", "x", "--format", "jsno"], "json"),
    (["demo", "--dri", "x"], "--dir"),
    (["pki", "init", "d", "--client", "bob"], "--clients"),
    (["cert", "inspect", "f", "--jsno"], "--json"),
    (["cert", "verify", "f", "--hots", "h"], "--host"),
    (["cert", "match", "--crt", "c", "--key", "k"], "--cert"),
    (["cert", "convert", "in", "-o", "out", "--key-ot", "k"], "--key-out"),
    (["probe", "--sin", "x", "localhost:1"], "--sni"),
    (["probe", "--sin=x", "localhost:1"], "--sni"),
    (["probe", "localhost:1", "--timout", "3"], "--timeout"),
]


@pytest.mark.parametrize("argv,want", CLOSE, ids=lambda v: v if isinstance(v, str) else None)
def test_unknown_word_suggests_the_closest(argv, want):
    r = run_tollgate(argv)
    assert r.returncode == 2, (argv, r.stdout, r.stderr)
    assert r.stdout == ""
    assert f"did you mean '{want}'?" in r.stderr, r.stderr
    assert f"'{argv[0]}'" in r.stderr or any(f"'{a}'" in r.stderr for a in argv), r.stderr


# The rejecting twins: nothing close, so no suggestion, but the same usage error.
FAR = [
    ["xyzzy"],
    ["--frobnicate"],
    ["pki", "destroy", "d"],
    ["pki", "revoke", "d", "alice", "--reason", "certificateHold"],
    ["cert", "sign", "f"],
    ["run", "--verbose"],
    ["check", "-c", "x", "--format", "yaml"],
    ["demo", "--port", "1"],
    ["cert", "inspect", "f", "--zzz"],
    ["probe", "--foo", "x", "localhost:1"],
]


@pytest.mark.parametrize("argv", FAR, ids=lambda v: " ".join(v))
def test_unknown_word_far_from_everything_gets_no_suggestion(argv):
    r = run_tollgate(argv)
    assert r.returncode == 2, (argv, r.stdout, r.stderr)
    assert r.stdout == ""
    assert "unknown" in r.stderr and "did you mean" not in r.stderr, r.stderr
    assert "--help" in r.stderr  # says where to look instead


def test_version():
    r = run_tollgate(["version"])
    assert r.returncode == 0 and r.stdout.startswith("tollgate ") and "OpenSSL" in r.stdout
    assert run_tollgate(["--version"]).stdout == r.stdout
    r = run_tollgate(["version", "--bogus"])
    assert r.returncode == 2 and r.stdout == ""


def test_top_level_help_lists_every_command_and_exit_codes():
    out = run_tollgate(["--help"]).stdout
    for cmd in ("run", "check", "demo", "pki init", "pki revoke", "cert", "probe", "fleet",
                "version"):
        assert f"\n  {cmd} " in out, cmd
    assert "exit codes: 0" in out and "2 usage error" in out
