"""The `concord` CLI against a real agent: every command and flag the CLI has, run as a
subprocess the way scripts run `consul`, checking stdout, stderr and exit codes to the byte
where Consul's output is fixed, and cross-checking results through the HTTP API."""
import base64
import json
import os
import re
import socket
import subprocess
import tempfile

import pytest


def run(agent, *args, input=None, env=None, addr_flag=False, binary=False):
    """Runs `concord args...`. By default the agent is found through CONSUL_HTTP_ADDR; with
    addr_flag the environment points at a dead port and -http-addr (inserted after the
    command words) must win."""
    e = dict(os.environ)
    for k in list(e):
        if k.startswith("CONSUL_"):
            del e[k]
    e["CONSUL_HTTP_ADDR"] = agent.http_addr
    args = list(args)
    if addr_flag:
        e["CONSUL_HTTP_ADDR"] = "127.0.0.1:%d" % dead_port()
        words = 2 if args and args[0] == "kv" else 1
        args = args[:words] + ["-http-addr=" + agent.url] + args[words:]
    if env:
        e.update(env)
    kw = {} if binary else {"text": True}
    return subprocess.run([agent.bin] + args, env=e, input=input, capture_output=True,
                          timeout=30, **kw)


def dead_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ok(r):
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r.stdout


def http_pair(agent, key):
    status, _, body = agent.request("GET", "/v1/kv/" + key)
    assert status == 200, (status, body)
    return json.loads(body)[0]


# ---- version and help ----

def test_version(agent):
    r = run(agent, "version")
    assert r.returncode == 0 and r.stderr == ""
    lines = r.stdout.split("\n")
    assert re.match(r"^Concord v\d+\.\d+\.\d+$", lines[0])
    assert lines[1] == ("Protocol 2 spoken by default, understands 2 to 3 (agent will "
                        "automatically use protocol >2 when speaking to compatible agents)")
    assert "Consul v1.17.0" in r.stdout
    assert r.stdout.endswith("\n\n")  # as Consul: the formatter's newline plus the UI's
    assert run(agent, "--version").stdout == r.stdout
    assert run(agent, "-v").stdout == r.stdout
    info = json.loads(ok(run(agent, "version", "-format=json")))
    assert info["RPC"] == {"Default": 2, "Min": 2, "Max": 3}
    assert info["Version"] == lines[0][len("Concord v"):]
    r = run(agent, "version", "-format=yaml")
    assert (r.returncode, r.stderr) == (1, "Unknown format: yaml\n")


def test_top_level_help(agent):
    for flag in ("--help", "-h", "-help"):
        r = run(agent, flag)
        assert r.returncode == 0, r
        assert r.stdout.startswith("Usage: concord [--version] [--help] <command> [<args>]\n\n"
                                   "Available commands are:\n")
        names = re.findall(r"^    (\S+)\s{4,}\S", r.stdout, re.M)
        # Sorted, and every command this suite relies on is listed (new ones need no edit).
        assert names == sorted(names)
        assert set(["agent", "catalog", "info", "kv", "maint", "members", "reload",
                    "services", "validate", "version"]) <= set(names)
    r = run(agent, "no-such-command")
    assert r.returncode == 127
    assert r.stdout == "" and "Available commands are:" in r.stderr


@pytest.mark.parametrize("words,flags", [
    (["version"], ["-format"]),
    (["info"], ["-http-addr", "-token", "-token-file"]),
    (["members"], ["-detailed", "-wan", "-status", "-segment", "-filter", "-partition",
                   "-http-addr"]),
    (["kv", "get"], ["-base64", "-detailed", "-keys", "-recurse", "-separator", "-stale",
                     "-datacenter", "-http-addr", "-token", "-namespace"]),
    (["kv", "put"], ["-acquire", "-base64", "-cas", "-flags", "-modify-index", "-release",
                     "-session", "-http-addr"]),
    (["kv", "delete"], ["-cas", "-modify-index", "-recurse", "-http-addr"]),
    (["kv", "export"], ["-http-addr", "-stale"]),
    (["kv", "import"], ["-prefix", "-http-addr"]),
])
def test_command_help(agent, words, flags):
    for h in ("-h", "-help", "--help"):
        r = run(agent, *words, h)
        assert r.returncode == 0 and r.stderr == "", r
        assert r.stdout.startswith("Usage: concord " + " ".join(words))
        for f in flags:
            assert re.search(r"^  %s(=<\w+>)?\n     \S" % re.escape(f), r.stdout, re.M), f
    # -h anywhere on the line wins, as with mitchellh/cli.
    assert run(agent, *words, "x", "-h").returncode == 0


def test_kv_parent_help(agent):
    r = run(agent, "kv")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("Usage: concord kv <subcommand>")
    assert "\nSubcommands:\n    delete    Removes data from the KV store\n" in r.stderr
    r = run(agent, "kv", "-h")
    assert r.returncode == 0 and "Subcommands:" in r.stdout


def test_bad_flag(agent):
    r = run(agent, "kv", "get", "-nope", "x")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("flag provided but not defined: -nope\nUsage:\n  -base64\n")
    r = run(agent, "kv", "put", "-flags=x", "k", "v")
    assert r.returncode == 1
    assert r.stderr.startswith('invalid value "x" for flag -flags: parse error\n')
    r = run(agent, "kv", "get", "-separator")
    assert r.returncode == 1
    assert r.stderr.startswith("flag needs an argument: -separator\n")
    r = run(agent, "-x", "members")
    assert r.returncode == 1 and r.stderr.startswith("Invalid flags before the subcommand.")


# ---- kv put / get ----

@pytest.mark.parametrize("addr_flag", [False, True])
def test_put_get(agent, addr_flag):
    key = "cli/pg/%s" % addr_flag
    r = run(agent, "kv", "put", key, "hello world", addr_flag=addr_flag)
    assert (r.returncode, r.stdout, r.stderr) == (0, "Success! Data written to: %s\n" % key, "")
    r = run(agent, "kv", "get", key, addr_flag=addr_flag)
    assert (r.returncode, r.stdout, r.stderr) == (0, "hello world\n", "")
    # A leading slash is stripped for reads, as Consul does.
    assert ok(run(agent, "kv", "get", "/" + key, addr_flag=addr_flag)) == "hello world\n"
    assert base64.b64decode(http_pair(agent, key)["Value"]) == b"hello world"


def test_put_without_data_and_empty(agent):
    assert ok(run(agent, "kv", "put", "cli/empty1")) == "Success! Data written to: cli/empty1\n"
    assert ok(run(agent, "kv", "put", "cli/empty2", "")) == "Success! Data written to: cli/empty2\n"
    assert ok(run(agent, "kv", "get", "cli/empty1")) == "\n"
    assert http_pair(agent, "cli/empty2")["Value"] is None


def test_get_missing_key(agent):
    r = run(agent, "kv", "get", "cli/does/not/exist")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "Error! No key exists at: cli/does/not/exist\n")
    r = run(agent, "kv", "get")
    assert (r.returncode, r.stderr) == (1, "Error! Missing KEY argument\n")
    r = run(agent, "kv", "get", "a", "b")
    assert (r.returncode, r.stderr) == (1, "Too many arguments (expected 1, got 2)\n")


def test_get_detailed_matches_api(agent):
    ok(run(agent, "kv", "put", "-flags=42", "cli/det", "v1"))
    ok(run(agent, "kv", "put", "-flags=42", "cli/det", "v2"))
    p = http_pair(agent, "cli/det")
    out = ok(run(agent, "kv", "get", "-detailed", "cli/det"))
    assert out == ("CreateIndex      %d\n"
                   "Flags            42\n"
                   "Key              cli/det\n"
                   "LockIndex        0\n"
                   "ModifyIndex      %d\n"
                   "Session          -\n"
                   "Value            v2\n") % (p["CreateIndex"], p["ModifyIndex"])
    out = ok(run(agent, "kv", "get", "-detailed", "-base64", "cli/det"))
    assert out.endswith("Value            djI=\n")


def test_flags_max_uint64(agent):
    ok(run(agent, "kv", "put", "-flags=18446744073709551615", "cli/bigflags", "x"))
    assert http_pair(agent, "cli/bigflags")["Flags"] == 18446744073709551615
    out = ok(run(agent, "kv", "get", "-detailed", "cli/bigflags"))
    assert "Flags            18446744073709551615\n" in out
    exp = json.loads(ok(run(agent, "kv", "export", "cli/bigflags")))
    assert exp == [{"key": "cli/bigflags", "flags": 18446744073709551615, "value": "eA=="}]
    # Hex and underscores go through Go's ParseUint(s, 0, 64).
    ok(run(agent, "kv", "put", "-flags=0x1_0", "cli/hexflags", "x"))
    assert http_pair(agent, "cli/hexflags")["Flags"] == 16


def test_base64_and_binary(agent):
    data = bytes(range(256))
    r = run(agent, "kv", "put", "cli/bin", "-", input=data, binary=True)
    assert r.returncode == 0, r
    r = run(agent, "kv", "get", "cli/bin", binary=True)
    assert r.stdout == data + b"\n"
    b64 = ok(run(agent, "kv", "get", "-base64", "cli/bin"))
    assert base64.b64decode(b64) == data
    ok(run(agent, "kv", "put", "-base64", "cli/bin2", base64.b64encode(b"\x00\xffzz").decode()))
    assert base64.b64decode(http_pair(agent, "cli/bin2")["Value"]) == b"\x00\xffzz"
    r = run(agent, "kv", "put", "-base64", "cli/bin3", "!!notbase64")
    assert r.returncode == 1
    assert r.stderr.startswith("Error! Cannot base 64 decode data: illegal base64 data at input byte ")
    assert agent.request("GET", "/v1/kv/cli/bin3")[0] == 404


def test_value_from_file_and_stdin(agent, tmp_path):
    f = tmp_path / "value.txt"
    f.write_bytes(b"line1\nline2\n")
    ok(run(agent, "kv", "put", "cli/file", "@" + str(f)))
    assert base64.b64decode(http_pair(agent, "cli/file")["Value"]) == b"line1\nline2\n"
    ok(run(agent, "kv", "put", "cli/stdin", "-", input="piped\n"))
    assert ok(run(agent, "kv", "get", "cli/stdin")) == "piped\n\n"
    # "-x" is literal data, not stdin.
    ok(run(agent, "kv", "put", "cli/dash", "-x"))
    assert ok(run(agent, "kv", "get", "cli/dash")) == "-x\n"
    r = run(agent, "kv", "put", "cli/nofile", "@" + str(tmp_path / "missing"))
    assert r.returncode == 1
    assert r.stderr == "Error! Failed to read file: open %s: no such file or directory\n" % (
        tmp_path / "missing")


def test_keys_recurse_separator(agent):
    for k in ("cli/tree/a", "cli/tree/b/1", "cli/tree/b/2", "cli/treeish"):
        ok(run(agent, "kv", "put", k, k[-1]))
    assert ok(run(agent, "kv", "get", "-keys", "cli/tree/")) == "cli/tree/a\ncli/tree/b/\n"
    assert ok(run(agent, "kv", "get", "-keys", "cli/tree")) == "cli/tree/\ncli/treeish\n"
    assert ok(run(agent, "kv", "get", "-keys", "-separator=", "cli/tree/")) == (
        "cli/tree/a\ncli/tree/b/1\ncli/tree/b/2\n")
    assert ok(run(agent, "kv", "get", "-recurse", "cli/tree/")) == (
        "cli/tree/a:a\ncli/tree/b/1:1\ncli/tree/b/2:2\n")
    assert ok(run(agent, "kv", "get", "-recurse", "-base64", "cli/tree/b")) == (
        "cli/tree/b/1:MQ==\ncli/tree/b/2:Mg==\n")
    assert ok(run(agent, "kv", "get", "-recurse", "-keys", "cli/tree/b")) == (
        "cli/tree/b/1\ncli/tree/b/2\n")
    out = ok(run(agent, "kv", "get", "-recurse", "-detailed", "cli/tree/b/"))
    blocks = out.split("\n\n")
    assert len(blocks) == 2
    assert blocks[0].startswith("CreateIndex ") and "Key              cli/tree/b/1\n" in blocks[0]
    # Nothing under a prefix is not an error for -recurse/-keys.
    assert run(agent, "kv", "get", "-recurse", "cli/nothing-here/").stdout == ""
    assert run(agent, "kv", "get", "-keys", "cli/nothing-here/").returncode == 0


def test_stale_and_datacenter(agent):
    ok(run(agent, "kv", "put", "cli/stale", "s"))
    assert ok(run(agent, "kv", "get", "-stale", "cli/stale")) == "s\n"
    assert ok(run(agent, "kv", "get", "-datacenter=dc1", "cli/stale")) == "s\n"


def test_special_keys(agent):
    key = "cli/sp ace/q?uery#frag%25/é"
    ok(run(agent, "kv", "put", key, "odd"))
    assert ok(run(agent, "kv", "get", key)) == "odd\n"
    assert ok(run(agent, "kv", "get", "-recurse", "-keys", "cli/sp ace/")) == key + "\n"
    assert ok(run(agent, "kv", "get", "-keys", "cli/sp ace/")) == "cli/sp ace/q?uery#frag%25/\n"


def test_put_cas(agent):
    r = run(agent, "kv", "put", "-cas", "cli/cas", "first")  # index 0: create only
    assert (r.returncode, r.stdout) == (0, "Success! Data written to: cli/cas\n")
    r = run(agent, "kv", "put", "-cas", "cli/cas", "again")
    assert (r.returncode, r.stdout, r.stderr) == (
        1, "", "Error! Did not write to cli/cas: CAS performed with index=0 and key already exists.\n")
    idx = http_pair(agent, "cli/cas")["ModifyIndex"]
    r = run(agent, "kv", "put", "-cas", "-modify-index=%d" % (idx + 1000), "cli/cas", "stale")
    assert (r.returncode, r.stderr) == (1, "Error! Did not write to cli/cas: CAS failed\n")
    r = run(agent, "kv", "put", "-cas", "-modify-index=%d" % idx, "cli/cas", "second")
    assert (r.returncode, r.stdout) == (0, "Success! Data written to: cli/cas\n")
    assert ok(run(agent, "kv", "get", "cli/cas")) == "second\n"


def test_put_argument_errors(agent):
    cases = [
        (["kv", "put"], "Error! Missing KEY argument\n"),
        (["kv", "put", "a", "b", "c"], "Error! Too many arguments (expected 1 or 2, got 3)\n"),
        (["kv", "put", "-acquire", "a"],
         "Error! Missing -session (required with -acquire and -release)\n"),
        (["kv", "put", "-release", "a"],
         "Error! Missing -session (required with -acquire and -release)\n"),
        (["kv", "put", "/abs", "v"],
         "Error! Failed writing data: Invalid key. Key must not begin with a '/': /abs\n"),
    ]
    for args, err in cases:
        r = run(agent, *args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", err), args


def test_acquire_release(agent):
    status, _, body = agent.request("PUT", "/v1/session/create", json.dumps({"Name": "cli"}))
    if status == 404:
        pytest.skip("the agent has no session endpoint yet")
    assert status == 200, body
    sid = json.loads(body)["ID"]
    r = run(agent, "kv", "put", "-acquire", "-session=" + sid, "cli/lock", "held")
    assert (r.returncode, r.stdout) == (0, "Success! Lock acquired on: cli/lock\n"), r
    p = http_pair(agent, "cli/lock")
    assert p["Session"] == sid and p["LockIndex"] == 1
    out = ok(run(agent, "kv", "get", "-detailed", "cli/lock"))
    assert "Session          %s\n" % sid in out
    r = run(agent, "kv", "put", "-release", "-session=" + sid, "cli/lock")
    assert (r.returncode, r.stdout) == (0, "Success! Lock released on: cli/lock\n"), r
    r = run(agent, "kv", "put", "-release", "-session=" + sid, "cli/lock")
    assert (r.returncode, r.stderr) == (1, "Error! Did not release lock\n")


# ---- kv delete ----

def test_delete(agent):
    ok(run(agent, "kv", "put", "cli/del/one", "1"))
    r = run(agent, "kv", "delete", "cli/del/one")
    assert (r.returncode, r.stdout) == (0, "Success! Deleted key: cli/del/one\n")
    assert agent.request("GET", "/v1/kv/cli/del/one")[0] == 404
    # Deleting what is not there succeeds, as in Consul.
    assert ok(run(agent, "kv", "delete", "cli/del/never")) == "Success! Deleted key: cli/del/never\n"
    for k in ("cli/del/tree/a", "cli/del/tree/b/c", "cli/del/treex"):
        ok(run(agent, "kv", "put", k, "x"))
    r = run(agent, "kv", "delete", "-recurse", "cli/del/tree/")
    assert (r.returncode, r.stdout) == (0, "Success! Deleted keys with prefix: cli/del/tree/\n")
    assert agent.request("GET", "/v1/kv/cli/del/tree/?recurse")[0] == 404
    assert agent.request("GET", "/v1/kv/cli/del/treex")[0] == 200


def test_delete_cas(agent):
    ok(run(agent, "kv", "put", "cli/delcas", "x"))
    idx = http_pair(agent, "cli/delcas")["ModifyIndex"]
    r = run(agent, "kv", "delete", "-cas", "-modify-index=%d" % (idx + 99), "cli/delcas")
    assert (r.returncode, r.stderr) == (1, "Error! Did not delete key cli/delcas: CAS failed\n")
    r = run(agent, "kv", "delete", "-cas", "-modify-index=%d" % idx, "cli/delcas")
    assert (r.returncode, r.stdout) == (0, "Success! Deleted key: cli/delcas\n")
    cases = [
        (["-cas", "k"], "Cannot delete a key that does not exist. Provide a -modify-index "
                        "greater than than 0.\n"),
        (["-modify-index=3", "k"], "Cannot specify -modify-index without -cas!\n"),
        (["-cas", "-modify-index=3", "-recurse", "k"], "Cannot specify both -cas and -recurse!\n"),
        ([], "Error! Missing KEY argument\n"),
        (["a", "b"], "Too many arguments (expected 1, got 2)\n"),
    ]
    for args, err in cases:
        r = run(agent, "kv", "delete", *args)
        assert (r.returncode, r.stderr) == (1, err), args


# ---- kv export / import ----

def test_export_format(agent):
    ok(run(agent, "kv", "put", "-flags=7", "cli/exp/a", "<&>"))
    ok(run(agent, "kv", "put", "cli/exp/b", ""))
    out = ok(run(agent, "kv", "export", "cli/exp/"))
    assert out == ('[\n'
                   '\t{\n'
                   '\t\t"key": "cli/exp/a",\n'
                   '\t\t"flags": 7,\n'
                   '\t\t"value": "PCY+"\n'
                   '\t},\n'
                   '\t{\n'
                   '\t\t"key": "cli/exp/b",\n'
                   '\t\t"flags": 0,\n'
                   '\t\t"value": ""\n'
                   '\t}\n'
                   ']\n')
    assert ok(run(agent, "kv", "export", "cli/no-such-prefix/")) == "[]\n"
    assert ok(run(agent, "kv", "export", "/cli/exp/a")) == ok(run(agent, "kv", "export", "cli/exp/a"))


def test_export_import_roundtrip(agent, tmp_path):
    keys = {"cli/rt/plain": b"v", "cli/rt/bin": bytes(range(256)), "cli/rt/uni": "é€😀".encode(),
            "cli/rt/dir/": b"", "cli/rt/sp ace": b"s"}
    for k, v in keys.items():
        assert agent.request("PUT", "/v1/kv/" + k.replace(" ", "%20") + "?flags=3", v)[0] == 200
    doc = ok(run(agent, "kv", "export", "cli/rt/"))
    # From stdin, with a prefix (joined as Go's path.Join: "cli/copy1/cli/rt/...").
    r = run(agent, "kv", "import", "-prefix=cli/copy1", "-", input=doc)
    assert r.returncode == 0, r
    assert sorted(r.stdout.splitlines()) == sorted("Imported: cli/copy1/" + k for k in keys)
    # From a file, and from the argument itself.
    f = tmp_path / "export.json"
    f.write_text(doc.replace('"cli/rt/', '"cli/copy2/'))
    ok(run(agent, "kv", "import", "@" + str(f)))
    ok(run(agent, "kv", "import", doc.replace('"cli/rt/', '"cli/copy3/')))
    copies = [lambda k: "cli/copy1/" + k,
              lambda k: k.replace("cli/rt/", "cli/copy2/"),
              lambda k: k.replace("cli/rt/", "cli/copy3/")]
    for name in copies:
        for k, v in keys.items():
            p = http_pair(agent, name(k).replace(" ", "%20"))
            assert base64.b64decode(p["Value"] or "") == v and p["Flags"] == 3, name(k)
    assert ok(run(agent, "kv", "export", "cli/copy1/cli/rt/")) == doc.replace(
        '"cli/rt/', '"cli/copy1/cli/rt/')


def test_import_errors(agent, tmp_path):
    cases = [
        ([], "Error! Missing DATA argument\n"),
        ([""], "Error! Empty DATA argument\n"),
        (["a", "b"], "Error! Too many arguments (expected 1, got 2)\n"),
        (['{"key":"x"}'], "Cannot unmarshal data: json: cannot unmarshal object into Go value "
                          "of type []*impexp.Entry\n"),
        (['[{"key":"x","flags":0,"value":"%%%"}]'],
         "Error base 64 decoding value for key x: illegal base64 data at input byte 0\n"),
        (["@" + str(tmp_path / "nope.json")],
         "Error! Failed to read file: open %s: no such file or directory\n" % (tmp_path / "nope.json")),
    ]
    for args, err in cases:
        r = run(agent, "kv", "import", *args)
        assert (r.returncode, r.stdout, r.stderr) == (1, "", err), args
    r = run(agent, "kv", "import", "not json")
    assert r.returncode == 1 and r.stderr.startswith("Cannot unmarshal data: ")


# ---- members, info ----

def test_members(agent):
    out = ok(run(agent, "members"))
    lines = out.rstrip("\n").split("\n")
    assert re.split(r"\s{2,}", lines[0]) == ["Node", "Address", "Status", "Type", "Build",
                                             "Protocol", "DC", "Partition", "Segment"]
    row = re.split(r"\s{2,}", lines[1].rstrip())
    assert row[0] == agent.node and row[2] == "alive" and row[3] == "server"
    assert re.match(r"^127\.0\.0\.1:\d+$", row[1])
    assert row[7:] == ["default", "<all>"]
    # Columns line up: every field starts where its header does.
    for col in ("Address", "Status", "Type"):
        pos = lines[0].index(col)
        assert lines[1][pos - 2:pos] == "  " and lines[1][pos] != " "
    api = agent.get_json("/v1/agent/members")[0][0]
    assert row[1] == "%s:%d" % (api["Addr"], api["Port"])
    assert out == ok(run(agent, "members", addr_flag=True))

    det = ok(run(agent, "members", "-detailed"))
    dl = det.rstrip("\n").split("\n")
    assert re.split(r"\s{2,}", dl[0]) == ["Node", "Address", "Status", "Tags"]
    tags = dict(t.split("=", 1) for t in re.split(r"\s{2,}", dl[1])[3].split(","))
    assert tags["role"] == "consul" and tags["segment"] == "<all>" and tags["ap"] == "default"
    assert list(tags) == sorted(tags)

    assert ok(run(agent, "members", "-status=alive")) == out
    r = run(agent, "members", "-status=^failed$")
    assert (r.returncode, r.stdout, r.stderr) == (2, "", "")
    r = run(agent, "members", "-status=(")
    assert r.returncode == 1 and r.stderr.startswith("Failed to compile status regexp: ")


def test_info(agent):
    out = ok(run(agent, "info"))
    sections = re.findall(r"^(\S+):$", out, re.M)
    assert "agent" in sections and sections == sorted(sections)
    lines = out.rstrip("\n").split("\n")
    for line in lines:
        assert re.match(r"^(\S+:|\t\S+ = .*)$", line), line
    parsed, cur = {}, None
    for line in lines:
        if not line.startswith("\t"):
            cur = parsed.setdefault(line[:-1], {})
        else:
            k, v = line[1:].split(" = ", 1)
            cur[k] = v
    stats = agent.get_json("/v1/agent/self")[0]["Stats"]
    assert {s: set(v) for s, v in parsed.items()} == {s: set(v) for s, v in stats.items()}
    for vals in parsed.values():
        assert list(vals) == sorted(vals)
    assert ok(run(agent, "info", addr_flag=True)).startswith(sections[0] + ":\n")


# ---- transport errors ----

def test_unreachable_agent(agent):
    port = dead_port()
    cases = [
        (["kv", "get", "k"], "Error querying Consul agent: Get \"http://127.0.0.1:%d/v1/kv/k\": "
                             "dial tcp 127.0.0.1:%d: connect: connection refused\n"),
        (["kv", "put", "k", "v"], "Error! Failed writing data: Put \"http://127.0.0.1:%d/v1/kv/k\": "
                                  "dial tcp 127.0.0.1:%d: connect: connection refused\n"),
        (["members"], "Error retrieving members: Get \"http://127.0.0.1:%d/v1/agent/members?"
                      "segment=_all\": dial tcp 127.0.0.1:%d: connect: connection refused\n"),
        (["info"], "Error querying agent: Get \"http://127.0.0.1:%d/v1/agent/self\": dial tcp "
                   "127.0.0.1:%d: connect: connection refused\n"),
    ]
    for args, err in cases:
        r = run(agent, *args, env={"CONSUL_HTTP_ADDR": "127.0.0.1:%d" % port})
        assert (r.returncode, r.stdout, r.stderr) == (1, "", err % (port, port)), args
    r = run(agent, "kv", "delete", "-http-addr=127.0.0.1:%d" % port, "k")
    assert r.returncode == 1 and "connection refused" in r.stderr


def test_https_and_bad_addresses(agent):
    r = run(agent, "kv", "get", "k", env={"CONSUL_HTTP_ADDR": "https://127.0.0.1:8501"})
    assert r.returncode == 1 and r.stderr.startswith("Error connecting to Consul agent: HTTPS")
    r = run(agent, "members", env={"CONSUL_HTTP_SSL": "true"})
    assert r.returncode == 1 and r.stderr.startswith("Error connecting to Consul agent: HTTPS")
    r = run(agent, "info", "-http-addr=gopher://127.0.0.1:1")
    assert (r.returncode, r.stderr) == (
        1, "Error connecting to Consul agent: Unknown protocol scheme: gopher\n")
    r = run(agent, "info", env={"CONSUL_HTTP_TOKEN_FILE": "/nonexistent/token"})
    assert (r.returncode, r.stderr) == (
        1, "Error connecting to Consul agent: Error loading token file: open /nonexistent/token: "
           "no such file or directory\n")
    # An http:// URL with the scheme works like the bare address.
    assert ok(run(agent, "kv", "put", "cli/url", "u", env={"CONSUL_HTTP_ADDR": agent.url}))


def test_token_is_accepted(agent, tmp_path):
    # Without ACLs the agent ignores tokens; the CLI must still send them without harm.
    t = tmp_path / "token"
    t.write_text("  some-token\n")
    ok(run(agent, "kv", "put", "-token=abc", "cli/tok", "t"))
    ok(run(agent, "kv", "get", "-token-file=" + str(t), "cli/tok"))
    ok(run(agent, "kv", "get", "cli/tok", env={"CONSUL_HTTP_TOKEN": "xyz"}))
