"""`concord exec` against real agents: a server with remote exec enabled
(disable_remote_exec false in a config file) runs the command and reports output and exit
code through KV; an agent with Consul's default (remote exec disabled) never acknowledges.

Client agents read the spec and write their acks, output and exit codes through their own HTTP
API in-process, which forwards to a server like any request: the three-node run covers that."""
import json
import os
import re
import signal
import subprocess
import tempfile
import time

import pytest

from agentlib import Agent


def exec_config():
    f = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False, prefix="concord-exec-")
    json.dump({"disable_remote_exec": False}, f)
    f.close()
    return f.name


def start(request, **kw):
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


@pytest.fixture(scope="module")
def exec_agent(request):
    return start(request, node="exec-on", extra_args=["-config-file", exec_config()])


def rexec_keys(agent):
    status, _, body = agent.request("GET", "/v1/kv/_rexec?keys")
    return [] if status == 404 else json.loads(body)


def test_exec_uptime(exec_agent):
    out = exec_agent.cli("exec", "uptime")
    assert out.returncode == 0, (out.stdout, out.stderr, exec_agent.log())
    lines = out.stdout.splitlines()
    assert re.match(r"^    exec-on: .*load average", lines[0]), out.stdout
    assert "==> exec-on: finished with exit code 0" in lines
    assert lines[-1] == "1 / 1 node(s) completed / acknowledged"
    assert out.stderr == ""
    # The session and every key under its prefix are gone afterwards.
    assert rexec_keys(exec_agent) == []
    sessions, _ = exec_agent.get_json("/v1/session/list")
    assert [s for s in sessions if s["Name"] == "Remote Exec"] == []


def test_exec_output_and_exit_code(exec_agent):
    out = exec_agent.cli("exec", "-verbose", "echo one; echo two >&2; exit 3")
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stdout.splitlines()
    assert re.match(r"^Created remote execution session: [0-9a-f-]{36}$", lines[0])
    assert "==> exec-on: acknowledged" in lines
    i = lines.index("    exec-on: one")
    assert lines[i + 1] == "    exec-on: two" and lines[i + 2] == "    exec-on:"
    assert "==> exec-on: finished with exit code 3" in lines
    assert "1 / 1 node(s) completed / acknowledged" in lines
    assert re.match(r"^Completed in \d+\.\d\d seconds$", lines[-1])


def test_exec_heartbeats_and_args_and_script(exec_agent):
    # A quiet command outlives -wait: heartbeats keep the CLI waiting for it.
    t0 = time.time()
    out = exec_agent.cli("exec", "-wait", "1s", "-verbose", "sleep 2.5; echo late")
    assert out.returncode == 0, (out.stdout, out.stderr)
    assert "==> exec-on: heartbeat received" in out.stdout
    assert "    exec-on: late" in out.stdout and time.time() - t0 >= 2.5
    # -shell=false runs the arguments directly; "-" reads a script from stdin.
    out = exec_agent.cli("exec", "-shell=false", "printf", "%s-%s", "a b", "c")
    assert out.returncode == 0 and "    exec-on: a b-c" in out.stdout, out.stdout
    out = exec_agent.cli("exec", "-", input="#!/bin/sh\necho from-script\n")
    assert out.returncode == 0 and "    exec-on: from-script" in out.stdout, out.stdout
    # Filters: a node that does not match never acknowledges.
    out = exec_agent.cli("exec", "-node", "^nomatch$", "uptime")
    assert out.returncode == 0 and out.stdout == "0 / 0 node(s) completed / acknowledged\n"


def test_exec_cli_errors(exec_agent):
    out = exec_agent.cli("exec")
    assert out.returncode == 1 and out.stderr.startswith("Must specify a command to execute\n")
    out = exec_agent.cli("exec", "-tag", "v1", "uptime")
    assert out.returncode == 1
    assert out.stderr == "Cannot provide tag filter without service filter.\n"
    out = exec_agent.cli("exec", "-shell=false", "-")
    assert out.returncode == 1
    assert out.stderr == "Cannot configure -shell=false when reading from stdin\n"
    out = exec_agent.cli("exec", "-wait", "soon", "uptime")
    assert out.returncode == 1 and "invalid value \"soon\" for flag -wait" in out.stderr


def test_exec_refused_when_disabled(request):
    # Consul's default: disable_remote_exec is true, so the node never acknowledges.
    a = start(request, node="exec-off")
    out = a.cli("exec", "uptime")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "0 / 0 node(s) completed / acknowledged\n"
    assert "ignoring remote exec event" in a.log()
    assert "remote exec 'uptime'" not in a.log()
    assert rexec_keys(a) == []


def test_agent_stops_cleanly_with_a_job_running(request):
    a = Agent(node="exec-stop", extra_args=["-config-file", exec_config()])
    a.start()
    request.addfinalizer(a.kill)
    env = dict(os.environ, CONSUL_HTTP_ADDR=a.http_addr)
    cli = subprocess.Popen([a.bin, "exec", "-wait", "5s", "sleep 61; echo never"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not any(k.endswith("/ack") for k in rexec_keys(a)):
            time.sleep(0.1)
        assert any(k.endswith("/ack") for k in rexec_keys(a)), a.log()
        t0 = time.time()
        assert a.stop() == 0, a.log()  # kills the job; no leak, no hang
        assert time.time() - t0 < 10
    finally:
        cli.kill()
        cli.wait()
    assert "never" not in cli.stdout.read()
    assert "killing remote exec job" in a.log()
    time.sleep(0.3)
    assert subprocess.run(["pgrep", "-f", "sleep 61"], stdout=subprocess.DEVNULL).returncode == 1


def test_interrupt_cleans_up(exec_agent):
    # Ctrl-C: Consul's exec stops waiting (exit 1) and still destroys its session and data.
    a = exec_agent
    env = dict(os.environ, CONSUL_HTTP_ADDR=a.http_addr)
    cli = subprocess.Popen([a.bin, "exec", "-wait", "3s", "sleep 30"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 20
        while time.time() < deadline and not any(k.endswith("/ack") for k in rexec_keys(a)):
            time.sleep(0.1)
        assert any(k.endswith("/ack") for k in rexec_keys(a)), a.log()
        cli.send_signal(signal.SIGINT)
        assert cli.wait(15) == 1
    finally:
        cli.kill()
        cli.wait()
    assert rexec_keys(a) == []
    sessions, _ = a.get_json("/v1/session/list")
    assert [s for s in sessions if s["Name"] == "Remote Exec"] == []


def test_exec_three_nodes(request):
    # A server and a client with exec on, a client with Consul's default (off); the CLI talks
    # to a client agent, whose session, KV and event requests are forwarded to the server.
    cfg = exec_config()
    server = start(request, node="ex3-srv", ip="127.0.0.1", extra_args=["-config-file", cfg])
    clients = []
    for i, extra in ((2, ["-config-file", cfg]), (3, [])):
        clients.append(start(request, dev=False, server=False, node="ex3-cli%d" % i,
                             ip="127.0.0.%d" % i,
                             extra_args=extra + ["-join", "127.0.0.1:%d" % server.serf_port]))
    deadline = time.time() + 20
    while time.time() < deadline:
        _, _, body = server.request("GET", "/v1/agent/members")
        if sum(1 for m in json.loads(body) if m["Status"] == 1) == 3:
            break
        time.sleep(0.2)
    # the clients' nodes must be in the catalog for their sessions' checks
    deadline = time.time() + 20
    while time.time() < deadline and len(server.get_json("/v1/catalog/nodes")[0]) < 3:
        time.sleep(0.2)
    out = clients[0].cli("exec", "echo hi from $(hostname) >/dev/null; echo ok")
    assert out.returncode == 0, (out.stdout, out.stderr, clients[0].log())
    for node in ("ex3-srv", "ex3-cli2"):
        assert "    %s: ok" % node in out.stdout, out.stdout
        assert "==> %s: finished with exit code 0" % node in out.stdout, out.stdout
    assert "ex3-cli3" not in out.stdout
    assert out.stdout.endswith("2 / 2 node(s) completed / acknowledged\n")
    assert "ignoring remote exec event" in clients[1].log()
    # A node filter picks one.
    out = server.cli("exec", "-node", "^ex3-cli2$", "exit 5")
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert out.stdout == ("==> ex3-cli2: finished with exit code 5\n"
                          "1 / 1 node(s) completed / acknowledged\n")
