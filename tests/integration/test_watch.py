"""Watches, as a user drives them: `concord watch` (printing JSON, running a handler per
change, bad flags, Ctrl-C, surviving an agent restart with backoff) and watches from the
agent's config ("watches": script and HTTP handlers, replaced on SIGHUP).

Each handler is a small shell script that appends "<CONSUL_INDEX><TAB><stdin>" to a file, so a
test sees exactly which runs happened, with which index and data."""
import base64
import http.server
import json
import os
import signal
import subprocess
import tempfile
import threading
import time

import pytest

from agentlib import Agent, BIN


def wait_for(fn, timeout=15.0, interval=0.05):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError("condition not met in %.1fs (last: %r)" % (timeout, last))


class Recorder:
    """A handler script and the runs it recorded: [(index, data)]."""

    def __init__(self):
        d = tempfile.mkdtemp(prefix="concord-watch-")
        self.out = os.path.join(d, "runs.txt")
        self.script = os.path.join(d, "handler.sh")
        with open(self.script, "w") as f:
            f.write('#!/bin/sh\n{ printf "%%s\\t" "$CONSUL_INDEX"; cat; } >> %s\n' % self.out)
        os.chmod(self.script, 0o755)

    def runs(self):
        try:
            with open(self.out) as f:
                text = f.read()
        except FileNotFoundError:
            return []
        runs = []
        # A run still writing leaves a line without its newline: not counted yet.
        for line in text.split("\n")[:-1]:
            idx, _, data = line.partition("\t")
            runs.append((int(idx), json.loads(data)))
        return runs

    def wait_runs(self, n, timeout=15.0):
        return wait_for(lambda: len(self.runs()) >= n and self.runs(), timeout=timeout)


def kv_value(pair):
    return base64.b64decode(pair["Value"]).decode() if pair and pair.get("Value") else None


def put_kv(a, key, value):
    status, _, body = a.request("PUT", "/v1/kv/" + key, value)
    assert status == 200, body


def watch_config(*watches):
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"watches": list(watches)}, f)
    f.close()
    return f.name


def start_agent(request, **kw):
    a = Agent(**kw)
    a.start()

    def fin():
        try:
            code = a.stop()
        finally:
            a.kill()
        assert code == 0, "agent exited with %s:\n%s" % (code, a.log())
    request.addfinalizer(fin)
    return a


def start_cli_watch(a, *args):
    e = dict(os.environ)
    e["CONSUL_HTTP_ADDR"] = a.http_addr
    return subprocess.Popen([BIN, "watch"] + list(args), env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stop_cli(p):
    if p.poll() is None:
        p.send_signal(signal.SIGINT)
    try:
        out, err = p.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
    return p.returncode, out, err


# ---- agent config watches ----

def test_agent_key_watch_runs_once_per_change(request):
    rec = Recorder()
    cfg = watch_config({"type": "key", "key": "app/a", "args": [rec.script]})
    a = start_agent(request, node="watch-key", extra_args=["-config-file", cfg])
    # The first answer always runs the handler: the key does not exist yet.
    runs = rec.wait_runs(1)
    assert runs[0][1] is None
    put_kv(a, "app/a", "one")
    runs = rec.wait_runs(2)
    idx1, pair = runs[1]
    assert kv_value(pair) == "one" and pair["Key"] == "app/a"
    assert idx1 == pair["ModifyIndex"]
    assert list(pair) == ["Key", "CreateIndex", "ModifyIndex", "LockIndex", "Flags", "Value"]
    # Writes to other keys move the index but not the value: no run.
    put_kv(a, "app/b", "other")
    put_kv(a, "app/c", "other")
    time.sleep(1.0)
    assert len(rec.runs()) == 2
    put_kv(a, "app/a", "two")
    runs = rec.wait_runs(3)
    assert kv_value(runs[2][1]) == "two" and runs[2][0] > idx1
    time.sleep(0.5)
    assert len(rec.runs()) == 3


def test_agent_keyprefix_and_catalog_watches(request):
    recs = {t: Recorder() for t in ("keyprefix", "services", "service", "checks", "nodes")}
    cfg = watch_config(
        {"type": "keyprefix", "prefix": "cfg/", "args": [recs["keyprefix"].script]},
        {"type": "services", "handler": recs["services"].script},
        {"type": "service", "service": "web", "args": [recs["service"].script]},
        {"type": "checks", "service": "web", "args": [recs["checks"].script]},
        {"type": "nodes", "args": [recs["nodes"].script]},
    )
    a = start_agent(request, node="watch-cat", extra_args=["-config-file", cfg])
    for r in recs.values():
        r.wait_runs(1)
    assert recs["keyprefix"].runs()[0][1] is None
    assert wait_for(lambda: any(n["Node"] == "watch-cat" for n in recs["nodes"].runs()[-1][1]))
    put_kv(a, "cfg/x", "1")
    runs = recs["keyprefix"].wait_runs(2)
    assert [p["Key"] for p in runs[-1][1]] == ["cfg/x"]
    status, _, body = a.request("PUT", "/v1/catalog/register", json.dumps({
        "Node": "ext1", "Address": "10.0.0.9",
        "Service": {"Service": "web", "Port": 80, "Tags": ["v1"]},
        "Check": {"CheckID": "web-ok", "Name": "web ok", "ServiceID": "web",
                  "Status": "passing"}}))
    assert status == 200, body
    assert wait_for(lambda: "web" in recs["services"].runs()[-1][1])
    assert recs["services"].runs()[-1][1]["web"] == ["v1"]
    entries = wait_for(lambda: recs["service"].runs()[-1][1])
    assert entries[0]["Service"]["Service"] == "web" and entries[0]["Node"]["Node"] == "ext1"
    checks = wait_for(lambda: recs["checks"].runs()[-1][1])
    assert checks[0]["CheckID"] == "web-ok" and checks[0]["Status"] == "passing"
    assert wait_for(lambda: any(n["Node"] == "ext1" for n in recs["nodes"].runs()[-1][1]))


class _Sink(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n)
        self.server.posts.append((self.command, self.path, dict(self.headers), body))
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"thanks")

    do_PUT = do_POST

    def log_message(self, *a):
        pass


@pytest.fixture
def sink():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    srv.posts = []
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_agent_http_handler(request, sink):
    url = "http://127.0.0.1:%d/hook?x=1" % sink.server_address[1]
    cfg = watch_config({"type": "key", "key": "h", "handler_type": "http",
                        "http_handler_config": {"path": url, "method": "PUT",
                                                "header": {"X-Custom": ["a", "b"]},
                                                "timeout": "5s"}})
    a = start_agent(request, node="watch-http", extra_args=["-config-file", cfg])
    wait_for(lambda: len(sink.posts) >= 1)
    put_kv(a, "h", "hello")
    wait_for(lambda: len(sink.posts) >= 2)
    method, path, headers, body = sink.posts[1]
    assert method == "PUT" and path == "/hook?x=1"
    assert headers["Content-Type"] == "application/json"
    pair = json.loads(body)
    assert kv_value(pair) == "hello"
    assert int(headers["X-Consul-Index"]) == pair["ModifyIndex"]
    assert headers["X-Custom"] in ("a, b", "a")  # repeated header lines
    assert json.loads(sink.posts[0][3]) is None


def test_agent_reload_replaces_watches(request, tmp_path):
    rec_a, rec_b = Recorder(), Recorder()
    d = tmp_path / "conf"
    d.mkdir()
    f = d / "watch.json"
    f.write_text(json.dumps({"watches": [{"type": "key", "key": "ka", "args": [rec_a.script]}]}))
    a = start_agent(request, node="watch-hup", extra_args=["-config-dir", str(d)])
    rec_a.wait_runs(1)
    put_kv(a, "ka", "1")
    rec_a.wait_runs(2)
    f.write_text(json.dumps({"watches": [{"type": "key", "key": "kb", "args": [rec_b.script]}]}))
    a.proc.send_signal(signal.SIGHUP)
    rec_b.wait_runs(1)
    put_kv(a, "kb", "2")
    assert kv_value(rec_b.wait_runs(2)[1][1]) == "2"
    put_kv(a, "ka", "3")
    time.sleep(1.0)
    assert len(rec_a.runs()) == 2, "the old watch still runs after the reload"
    # A bad watch on reload keeps the running set.
    f.write_text(json.dumps({"watches": [{"type": "key", "args": ["x"]}]}))
    a.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "Must specify a single key to watch" in a.log())
    put_kv(a, "kb", "4")
    assert kv_value(rec_b.wait_runs(3)[2][1]) == "4"


def test_agent_refuses_bad_watch_config(tmp_path):
    cfg = watch_config({"type": "key", "key": "a"})
    a = Agent(node="watch-bad", extra_args=["-config-file", cfg])
    p = subprocess.run(a.args(), capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "watches[0]: Failed to parse watch: Must define a watch handler" in p.stdout + p.stderr


# ---- concord watch ----

@pytest.fixture(scope="module")
def agent(request):
    return start_agent(request, node="watch-cli")


def test_cli_prints_json_and_exits(agent):
    put_kv(agent, "cli/k", "v")
    p = agent.cli("watch", "-type", "key", "-key", "cli/k")
    assert p.returncode == 0, p.stderr
    pair = json.loads(p.stdout)
    assert kv_value(pair) == "v"
    assert p.stdout.startswith('{\n    "Key": "cli/k",\n    "CreateIndex": ')
    p = agent.cli("watch", "-type", "services")
    assert p.returncode == 0 and json.loads(p.stdout) == {"consul": []}
    p = agent.cli("watch", "-type", "key", "-key", "cli/missing")
    assert p.returncode == 0 and p.stdout == "null\n"


@pytest.mark.parametrize("args,msg", [
    ([], "Watch type must be specified"),
    (["-type", "nope"], "Unsupported watch type: nope"),
    (["-type", "key"], "Must specify a single key to watch"),
    (["-type", "keyprefix"], "Must specify a single prefix to watch"),
    (["-type", "service"], "Must specify a single service to watch"),
    (["-type", "checks", "-service", "a", "-state", "any"], "Cannot specify service and state"),
    (["-type", "service", "-service", "a", "-passingonly", "maybe"],
     'Failed to parse passingonly flag: strconv.ParseBool: parsing "maybe": invalid syntax'),
    (["-type", "event", "-stale"], "Invalid parameters: [stale]"),
    (["-bogus"], "flag provided but not defined: -bogus"),
])
def test_cli_bad_flags(agent, args, msg):
    p = agent.cli("watch", *args)
    assert p.returncode == 1
    assert p.stderr.startswith(msg), p.stderr
    assert p.stdout == ""


def test_cli_unreachable_agent():
    e = dict(os.environ, CONSUL_HTTP_ADDR="127.0.0.1:1")
    p = subprocess.run([BIN, "watch", "-type", "nodes"], env=e, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 1
    assert p.stderr.startswith("Error querying Consul agent: ")


def test_cli_handler_per_change_and_ctrl_c(agent):
    rec = Recorder()
    put_kv(agent, "cli/h", "0")
    p = start_cli_watch(agent, "-type", "key", "-key", "cli/h", rec.script)
    try:
        rec.wait_runs(1)
        put_kv(agent, "cli/h", "1")
        put_kv(agent, "cli/other", "x")
        runs = rec.wait_runs(2)
        assert [kv_value(r[1]) for r in runs] == ["0", "1"]
        assert runs[1][0] == runs[1][1]["ModifyIndex"]
        time.sleep(0.5)
        assert len(rec.runs()) == 2
    finally:
        code, out, err = stop_cli(p)
    assert code == 0, err


def test_cli_handler_without_shell_and_failure(agent):
    rec = Recorder()
    p = start_cli_watch(agent, "-shell=false", "-type", "nodes", rec.script)
    try:
        runs = rec.wait_runs(1)
        assert runs[0][1][0]["Node"] == "watch-cli"
    finally:
        stop_cli(p)
    # A handler that fails ends the watch with exit 1.
    p = agent.cli("watch", "-type", "nodes", "exit 3")
    assert p.returncode == 1
    assert "Error executing handler: exit status 3" in p.stderr


def test_cli_watch_survives_agent_restart(request):
    a = start_agent(request, dev=False, node="watch-restart")
    rec = Recorder()
    put_kv(a, "r/k", "before")
    p = start_cli_watch(a, "-type", "key", "-key", "r/k", rec.script)
    try:
        rec.wait_runs(1)
        a.stop()
        a.start()
        put_kv(a, "r/k", "after")
        # The watch retries after 5 s, then sees the new value.
        wait_for(lambda: kv_value(rec.runs()[-1][1]) == "after", timeout=30)
        assert p.poll() is None
    finally:
        code, out, err = stop_cli(p)
    assert code == 0
    assert "[ERROR] watch: Watch errored: type=key" in err


def test_agent_watch_survives_restart(request):
    rec = Recorder()
    cfg = watch_config({"type": "key", "key": "s/k", "args": [rec.script]})
    a = start_agent(request, dev=False, node="watch-restart2", extra_args=["-config-file", cfg])
    rec.wait_runs(1)
    put_kv(a, "s/k", "1")
    rec.wait_runs(2)
    a.stop()
    a.start()
    put_kv(a, "s/k", "2")
    wait_for(lambda: kv_value(rec.runs()[-1][1]) == "2")


def test_event_watch(agent):
    status, _, _ = agent.request("PUT", "/v1/event/fire/deploy", "v1")
    if status == 404:
        pytest.skip("/v1/event/* is not in this build yet")
    rec = Recorder()
    p = start_cli_watch(agent, "-type", "event", "-name", "deploy", rec.script)
    try:
        rec.wait_runs(1)
        n = len(rec.runs())
        agent.request("PUT", "/v1/event/fire/deploy", "v2")
        runs = rec.wait_runs(n + 1)
        # The first run after the fire holds only the new event. (Event indexes are hashes: when
        # one is lower than the last, Consul's plan restarts at 0 and hands on the whole list
        # once more, which a later run may show.)
        new = runs[n][1]
        assert [base64.b64decode(e["Payload"]).decode() for e in new] == ["v2"]
        assert runs[n][0] != 0
    finally:
        stop_cli(p)


def test_agent_changes_during_a_run_fold_into_one(request):
    """Consul's plan runs its handler inline: writes made while a handler runs are seen by the
    next query as one change, not queued as one run each."""
    rec = Recorder()
    slow = rec.script + ".slow"
    with open(slow, "w") as f:
        f.write("#!/bin/sh\n%s\nsleep 1.5\n" % rec.script)
    os.chmod(slow, 0o755)
    cfg = watch_config({"type": "key", "key": "f", "args": [slow]})
    a = start_agent(request, node="watch-fold", extra_args=["-config-file", cfg])
    rec.wait_runs(1)
    put_kv(a, "f", "0")  # the handler of this one is running for 1.5 s ...
    rec.wait_runs(2)
    for i in range(1, 6):  # ... while these land
        put_kv(a, "f", str(i))
    runs = rec.wait_runs(3)
    time.sleep(2.5)
    runs = rec.runs()
    assert [kv_value(r[1]) for r in runs[1:]] == ["0", "5"], runs
    # The last run is the last write.
    assert runs[-1][0] == a.get_json("/v1/kv/f")[0][0]["ModifyIndex"]


def test_validate_checks_watches(tmp_path):
    f = tmp_path / "w.json"
    f.write_text(json.dumps({"data_dir": str(tmp_path), "watches": [{"type": "keyprefix",
                                                                       "args": ["x"]}]}))
    p = subprocess.run([BIN, "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 1
    assert "Must specify a single prefix to watch" in p.stdout + p.stderr
    f.write_text(json.dumps({"data_dir": str(tmp_path), "watches": [{"type": "keyprefix",
                                                                       "prefix": "a/",
                                                                       "args": ["x"]}]}))
    p = subprocess.run([BIN, "validate", str(f)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stdout + p.stderr


def test_agent_stops_promptly_with_handlers_running(tmp_path):
    """A handler still running (from the current set or one replaced by a reload) does not
    hold up shutdown; the agent exits 0 (under ASan: nothing leaked)."""
    marker = tmp_path / "started"
    script = tmp_path / "slow.sh"
    # Each run appends its pid (exec keeps it) so the test can end exactly those processes.
    script.write_text("#!/bin/sh\necho $$ >> %s\nexec sleep 20\n" % marker)
    script.chmod(0o755)
    d = tmp_path / "conf"
    d.mkdir()
    (d / "w.json").write_text(json.dumps({"watches": [{"type": "nodes", "args": [str(script)]}]}))
    a = Agent(node="watch-stop", extra_args=["-config-dir", str(d)])
    a.start()
    try:
        wait_for(marker.exists)
        a.proc.send_signal(signal.SIGHUP)  # the running handler is now detached
        wait_for(lambda: a.log().count("running 1 watch") >= 2)
        t0 = time.time()
        code = a.stop()
        assert code == 0, a.log()
        assert time.time() - t0 < 10
    finally:
        a.kill()
        for pid in (marker.read_text().split() if marker.exists() else []):
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_agent_watch_on_a_client_agent(request):
    """A watch in a client agent's config blocks on the client's own HTTP API, which forwards
    to the servers: the same watch works on servers and clients."""
    server = start_agent(request, dev=False, node="watch-srv")
    rec = Recorder()
    cfg = watch_config({"type": "key", "key": "c/k", "args": [rec.script]})
    client = Agent(dev=False, server=False, node="watch-cli1", ip="127.0.0.2",
                   extra_args=["-join", server.serf_addr, "-config-file", cfg])
    client.start()

    def fin():
        try:
            code = client.stop()
        finally:
            client.kill()
        assert code == 0, client.log()
    request.addfinalizer(fin)
    try:
        wait_for(lambda: client.request("GET", "/v1/kv/c/k")[0] in (200, 404), timeout=10)
    except AssertionError:
        pytest.skip("this build's client agents do not forward reads yet")
    put_kv(server, "c/k", "from-server")
    wait_for(lambda: rec.runs() and kv_value(rec.runs()[-1][1]) == "from-server", timeout=30)
