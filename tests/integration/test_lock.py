"""`concord lock` against real agents: mutual exclusion among five contenders, a semaphore of
three (and its `.lock` entry in Consul's shape), a holder whose session is destroyed (SIGTERM,
then SIGKILL 5 s later, and a waiter taking over), Ctrl-C releasing at once, -timeout,
-child-exit-code, -pass-stdin, and Consul's usage errors.

Every `concord lock` process is started against an agent passed in (`agents[i % len]`), so the
same tests can run with one contender per agent of a cluster. Children are a small Python
program (written to tmp_path) that appends "start"/"end" lines with CLOCK_MONOTONIC times to a
shared file; the tests read the intervals back."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

LOCK_FLAG = 0x2ddccbc058a50c18
SEM_FLAG = 0xe0f69a2baa414de0

CHILD = r'''
import os, signal, sys, time
log, name, hold = sys.argv[1], sys.argv[2], float(sys.argv[3])
mode = sys.argv[4] if len(sys.argv) > 4 else ""
def note(what):
    with open(log, "a") as f:
        f.write("%s %s %.6f %s\n" % (what, name, time.monotonic(),
                                     os.environ.get("CONSUL_LOCK_HELD", "")))
        f.flush()
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, lambda *a: note("term"))
elif mode == "note-term":
    def term(*a):
        note("term")
        note("end")
        os._exit(0)
    signal.signal(signal.SIGTERM, term)
note("start")
deadline = time.monotonic() + hold
while time.monotonic() < deadline:
    time.sleep(0.02)
note("end")
'''


@pytest.fixture
def child(tmp_path):
    p = tmp_path / "child.py"
    p.write_text(CHILD)
    return str(p)


def env_for(agent, extra=None):
    e = dict(os.environ)
    e["CONSUL_HTTP_ADDR"] = agent.http_addr
    e.pop("CONSUL_HTTP_TOKEN", None)
    e.pop("CONSUL_LOCK_HELD", None)
    if extra:
        e.update(extra)
    return e


def start_lock(agent, *args, stdin=subprocess.DEVNULL):
    """Starts `concord lock <args>` against agent; returns the Popen."""
    return subprocess.Popen([agent.bin, "lock"] + list(args), env=env_for(agent),
                            stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(p, timeout=60):
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def events(path):
    """[(what, name, t)] from the shared log."""
    if not os.path.exists(path):
        return []
    out = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3:
                out.append((parts[0], parts[1], float(parts[2]),
                            parts[3] if len(parts) > 3 else ""))
    return out


def intervals(path):
    starts, spans = {}, []
    for what, name, t, _ in events(path):
        if what == "start":
            starts[name] = t
        elif what == "end" and name in starts:
            spans.append((starts.pop(name), t, name))
    return sorted(spans)


def wait_for(pred, timeout=30, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def started(path, name):
    return any(w == "start" and n == name for w, n, _, _ in events(path))


def sessions(agent):
    return agent.get_json("/v1/session/list")[0]


def session_named(agent, name):
    return [s for s in sessions(agent) if s["Name"] == name]


# ---- mutual exclusion ----

def run_contenders(agents, child, log, prefix, n, count, hold):
    procs = []
    for i in range(count):
        a = agents[i % len(agents)]
        args = ["-shell=false"] + (["-n", str(n)] if n != 1 else []) + \
            [prefix, sys.executable, child, log, "c%d" % i, str(hold)]
        procs.append(start_lock(a, *args))
    results = [finish(p, timeout=120) for p in procs]
    for code, out, err in results:
        assert code == 0, (code, out, err)
    return results


@pytest.fixture
def contenders(agent):
    """The agents the contending `concord lock` processes use, in turn (process i talks to
    contenders[i % len]). One server today; five agents of a cluster once client agents
    forward to the servers (then the cleanup checks below should read from any of them)."""
    return [agent]


def test_five_contenders_never_overlap(agent, contenders, child, tmp_path):
    agents = contenders
    log = str(tmp_path / "log")
    run_contenders(agents, child, log, "test/mutex", 1, 5, 0.4)
    spans = intervals(log)
    assert sorted(name for _, _, name in spans) == ["c%d" % i for i in range(5)]
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        assert e1 <= s2, "%s [%f, %f] overlaps %s [%f, %f]" % (n1, s1, e1, n2, s2, e2)
    # Every child saw the lock as held.
    assert all(held == "true" for w, _, _, held in events(log) if w == "start")
    # Nothing is left behind: the released key is cleaned up, the sessions destroyed.
    status, _, _ = agent.request("GET", "/v1/kv/test/mutex/.lock")
    assert status == 404
    assert not [s for s in sessions(agent) if "test/mutex" in s["Name"]]


def test_semaphore_three_holders(agent, contenders, child, tmp_path):
    agents = contenders
    log = str(tmp_path / "log")
    prefix = "test/sem"
    procs = []
    for i in range(6):
        procs.append(start_lock(agents[i % len(agents)], "-n", "3", "-shell=false", prefix,
                                sys.executable, child, log, "s%d" % i, "2.5"))
    try:
        # While three hold it, look at the KV layout.
        wait_for(lambda: sum(1 for w, *_ in events(log) if w == "start") >= 3, 60,
                 "three holders")
        status, _, raw = agent.request("GET", "/v1/kv/%s/.lock?raw" % prefix)
        assert status == 200
        raw = raw.decode()
        doc = json.loads(raw)
        assert list(doc) == ["Limit", "Holders"]  # Go's field order, compact
        assert " " not in raw
        assert doc["Limit"] == 3
        assert 1 <= len(doc["Holders"]) <= 3
        assert all(v is True for v in doc["Holders"].values())
        pairs, _ = agent.get_json("/v1/kv/%s?recurse" % prefix)
        by_key = {p["Key"]: p for p in pairs}
        assert by_key[prefix + "/.lock"]["Flags"] == SEM_FLAG
        assert "Session" not in by_key[prefix + "/.lock"]
        contenders = [p for k, p in by_key.items() if k != prefix + "/.lock"]
        assert len(contenders) >= 3
        for p in contenders:
            assert p["Key"] == prefix + "/" + p["Session"]
            assert p["Flags"] == SEM_FLAG
        for h in doc["Holders"]:
            assert prefix + "/" + h in by_key
        ss = [s for s in sessions(agent) if s["Name"].endswith("at '%s'" % prefix)]
        assert len(ss) >= 3
        for s in ss:
            assert s["Behavior"] == "delete" and s["TTL"] == "15s"
            assert s["Name"].startswith("Consul lock for '%s %s %s " %
                                        (sys.executable, child, log))
    finally:
        results = [finish(p, timeout=120) for p in procs]
    for code, out, err in results:
        assert code == 0, (code, out, err)
    spans = intervals(log)
    assert len(spans) == 6
    # Sweep: never more than three at once, and three at once at some point.
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans],
                    key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in points:
        cur += d
        peak = max(peak, cur)
    assert peak == 3
    status, _, _ = agent.request("GET", "/v1/kv/%s?recurse" % prefix)
    assert status == 404  # contender keys and the entry are gone


# ---- losing the lock ----

def test_destroyed_session_terms_then_kills_child_and_waiter_takes_over(agent, child,
                                                                         tmp_path):
    log = str(tmp_path / "log")
    prefix = "test/lost"
    holder = start_lock(agent, "-shell=false", "-name", "holder", prefix, sys.executable,
                        child, log, "holder", "120", "ignore-term")
    waiter = None
    try:
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        waiter = start_lock(agent, "-shell=false", "-name", "waiter", prefix, sys.executable,
                            child, log, "waiter", "0.2")
        wait_for(lambda: session_named(agent, "waiter"), 30, "waiter's session")
        sid = session_named(agent, "holder")[0]["ID"]
        t0 = time.monotonic()
        status, _, _ = agent.request("PUT", "/v1/session/destroy/" + sid)
        assert status == 200
        code, out, err = finish(holder, timeout=60)
        t_exit = time.monotonic()
        # Consul: a lost lock is not an error of the command.
        assert code == 0, (out, err)
        assert "Error running handler: signal: killed" in err
        ev = events(log)
        terms = [t for w, n, t, _ in ev if w == "term" and n == "holder"]
        assert len(terms) == 1, ev
        assert terms[0] - t0 < 10  # the monitor noticed promptly
        assert 4.0 <= t_exit - terms[0] <= 20, (terms[0], t_exit)  # SIGKILL after ~5 s
        assert not any(w == "end" and n == "holder" for w, n, _, _ in ev)
        # The waiter gets it (after the 15 s lock-delay of the invalidated session).
        code, out, err = finish(waiter, timeout=90)
        assert code == 0, (out, err)
        ws = [t for w, n, t, _ in events(log) if w == "start" and n == "waiter"]
        assert ws and ws[0] > t_exit
    finally:
        for p in (holder, waiter):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_sigint_releases_at_once(agent, child, tmp_path):
    log = str(tmp_path / "log")
    prefix = "test/sigint"
    holder = start_lock(agent, "-shell=false", "-verbose", "-name", "h", prefix,
                        sys.executable, child, log, "holder", "120", "note-term")
    waiter = None
    try:
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        waiter = start_lock(agent, "-shell=false", "-name", "w", prefix, sys.executable, child,
                            log, "waiter", "0.2")
        wait_for(lambda: session_named(agent, "w"), 30, "waiter's session")
        t0 = time.monotonic()
        holder.send_signal(signal.SIGINT)
        code, out, err = finish(holder, timeout=30)
        assert code == 0, (out, err)
        assert "Shutdown triggered, killing child" in out
        assert "Child terminated" in out
        code, out, err = finish(waiter, timeout=30)
        assert code == 0, (out, err)
        ws = [t for w, n, t, _ in events(log) if w == "start" and n == "waiter"]
        # No lock-delay after an explicit release: well under its 15 s.
        assert ws and ws[0] - t0 < 12, ws[0] - t0
        assert not session_named(agent, "h")
    finally:
        for p in (holder, waiter):
            if p and p.poll() is None:
                p.kill()
                p.wait()


def test_sigint_while_waiting(agent, child, tmp_path):
    log = str(tmp_path / "log")
    prefix = "test/sigint-wait"
    holder = start_lock(agent, "-shell=false", prefix, sys.executable, child, log, "holder",
                        "120", "note-term")
    try:
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        waiter = start_lock(agent, "-n", "1", "-name", "sw", prefix, "true")
        wait_for(lambda: session_named(agent, "sw"), 30, "waiter's session")
        t0 = time.monotonic()
        waiter.send_signal(signal.SIGINT)
        code, out, err = finish(waiter, timeout=30)
        assert time.monotonic() - t0 < 10  # the pending 15 s blocking query is dropped
        assert code == 1
        assert err == "Shutdown triggered or timeout during lock acquisition\n"
        assert not session_named(agent, "sw")
    finally:
        holder.send_signal(signal.SIGTERM)
        code, _, err = finish(holder, timeout=30)
        assert code == 0, err


# ---- options ----

def test_timeout(agent, child, tmp_path):
    log = str(tmp_path / "log")
    prefix = "test/timeout"
    for n in ("1", "2"):
        holders = [start_lock(agent, "-n", n, "-shell=false", prefix, sys.executable, child,
                              log, "h%s%d" % (n, i), "120", "note-term")
                   for i in range(int(n))]
        try:
            wait_for(lambda: all(started(log, "h%s%d" % (n, i)) for i in range(int(n))), 30,
                     "holders")
            t0 = time.monotonic()
            p = start_lock(agent, "-n", n, "-timeout=1500ms", "-name", "late" + n, prefix,
                           "touch", str(tmp_path / "never"))
            code, out, err = finish(p, timeout=60)
            took = time.monotonic() - t0
            assert code == 1
            assert err == "Shutdown triggered or timeout during lock acquisition\n"
            assert 1.4 <= took < 15, took
            assert not os.path.exists(tmp_path / "never")
            assert not session_named(agent, "late" + n)
        finally:
            for h in holders:
                h.send_signal(signal.SIGTERM)
                assert finish(h, timeout=30)[0] == 0
    # A free lock is taken at once even with a timeout.
    p = start_lock(agent, "-timeout", "5s", prefix, "echo $CONSUL_LOCK_HELD")
    assert finish(p) == (0, "true\n", "")


def test_child_exit_code(agent):
    code, out, err = finish(start_lock(agent, "test/exit", "echo out; exit 3"))
    assert (code, out, err) == (0, "out\n", "Error running handler: exit status 3\n")
    code, out, err = finish(start_lock(agent, "-child-exit-code", "test/exit", "exit 3"))
    assert (code, err) == (2, "Error running handler: exit status 3\n")
    code, out, err = finish(start_lock(agent, "-child-exit-code", "test/exit", "exit 0"))
    assert (code, err) == (0, "")
    code, out, err = finish(start_lock(agent, "-child-exit-code", "-shell=false", "test/exit",
                                       "no-such-program-xyz"))
    assert code == 2
    assert 'exec: "no-such-program-xyz": executable file not found in $PATH' in err


def test_shell_and_stdin(agent):
    p = start_lock(agent, "-pass-stdin", "test/stdin", "cat", "-", stdin=subprocess.PIPE)
    out, err = p.communicate("fed\n", timeout=30)
    assert (p.returncode, out, err) == (0, "fed\n", "")
    p = start_lock(agent, "test/stdin", "cat", stdin=subprocess.PIPE)
    out, err = p.communicate("not passed\n", timeout=30)
    assert (p.returncode, out, err) == (0, "", "")
    # Without a shell the arguments reach the program as they are.
    p = start_lock(agent, "-shell=false", "test/stdin", "printf", "%s|", "a b", "$HOME")
    assert finish(p) == (0, "a b|$HOME|", "")
    # With one, they are joined into one command line for $SHELL -c.
    p = subprocess.run([agent.bin, "lock", "test/stdin", "echo", "$X"], capture_output=True,
                       text=True, timeout=30,
                       env=env_for(agent, {"X": "expanded", "SHELL": "/bin/sh"}))
    assert (p.returncode, p.stdout) == (0, "expanded\n")


def test_conflicting_use(agent):
    status, _, _ = agent.request("PUT", "/v1/kv/test/conflict/.lock", "plain")
    assert status == 200
    code, out, err = finish(start_lock(agent, "test/conflict", "true"))
    assert (code, err) == (1, "Lock acquisition failed: Existing key does not match lock use\n")
    code, out, err = finish(start_lock(agent, "-n", "2", "test/conflict", "true"))
    assert (code, err) == (1, "Lock acquisition failed: Existing key does not match "
                              "semaphore use\n")
    assert not [s for s in sessions(agent) if "test/conflict" in s["Name"]]


@pytest.mark.parametrize("args,msg", [
    ([], "Key prefix and child command must be specified\n"),
    (["only-prefix"], "Key prefix and child command must be specified\n"),
    (["-n", "0", "p", "true"], "Lock holder limit must be positive\n"),
    (["-n=-2", "p", "true"], "Lock holder limit must be positive\n"),
    (["-timeout=-1s", "p", "true"], "Timeout must be positive\n"),
    (["-monitor-retry=-1", "p", "true"], "Number for 'monitor-retry' must be >= 0\n"),
])
def test_usage_errors(agent, args, msg):
    code, out, err = finish(start_lock(agent, *args))
    assert (code, out, err) == (1, "", msg)


def test_bad_flags_and_unreachable_agent(agent):
    code, out, err = finish(start_lock(agent, "-bogus", "p", "true"))
    assert code == 1
    assert err.startswith("flag provided but not defined: -bogus\nUsage:\n")
    code, out, err = finish(start_lock(agent, "-timeout=soon", "p", "true"))
    assert code == 1
    assert err.startswith('invalid value "soon" for flag -timeout: parse error\nUsage:\n')
    p = subprocess.run([agent.bin, "lock", "p", "true"], capture_output=True, text=True,
                       timeout=30, env=env_for(agent, {"CONSUL_HTTP_ADDR": "127.0.0.1:1"}))
    assert p.returncode == 1
    assert p.stderr.startswith('Error querying Consul agent: Get "http://127.0.0.1:1/v1/agent/'
                               'self": dial tcp 127.0.0.1:1: connect: connection refused')
    p = subprocess.run([agent.bin, "lock", "-h"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith("Usage: concord lock [options] prefix")


def test_semaphore_slot_lost_when_session_destroyed(agent, child, tmp_path):
    log = str(tmp_path / "log")
    prefix = "test/sem-lost"
    holder = start_lock(agent, "-n", "2", "-shell=false", "-name", "semholder", prefix,
                        sys.executable, child, log, "holder", "120", "note-term")
    try:
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        sid = session_named(agent, "semholder")[0]["ID"]
        status, _, _ = agent.request("PUT", "/v1/session/destroy/" + sid)
        assert status == 200
        code, out, err = finish(holder, timeout=30)
        assert code == 0, (out, err)
        assert [w for w, n, _, _ in events(log) if n == "holder"] == ["start", "term", "end"]
        # The contender key went with the session (Behavior delete); the entry was cleaned up.
        status, _, _ = agent.request("GET", "/v1/kv/%s?recurse" % prefix)
        assert status == 404
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_agent_unreachable_loses_the_lock(child, tmp_path):
    """The agent goes away: after -monitor-retry retries the child is stopped; releasing then
    fails, which (as in Consul) is exit 1."""
    from agentlib import Agent
    a = Agent(node="lock-gone")
    a.start()
    log = str(tmp_path / "log")
    holder = None
    try:
        holder = start_lock(a, "-shell=false", "-monitor-retry=2", "test/gone", sys.executable,
                            child, log, "holder", "120", "note-term")
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        assert a.stop() == 0
        t0 = time.monotonic()
        code, out, err = finish(holder, timeout=60)
        assert code == 1
        assert "Lock release failed: failed to release lock: " in err
        assert "connection refused" in err
        terms = [t for w, n, t, _ in events(log) if w == "term"]
        assert terms and terms[0] - t0 < 15  # two 1 s retries, then SIGTERM
    finally:
        if holder and holder.poll() is None:
            holder.kill()
            holder.wait()
        a.kill()


def test_verbose_messages(agent):
    code, out, err = finish(start_lock(agent, "-verbose", "/test/verbose", "true"))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Setting up lock at path: test/verbose/.lock",
        "Attempting lock acquisition",
        "Starting handler",
        "Child terminated, releasing lock",
        "Cleanup succeeded",
    ]
    code, out, err = finish(start_lock(agent, "-verbose", "-n=2", "-pass-stdin", "test/verbose2",
                                       "true"))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "Setting up semaphore (limit 2) at prefix: test/verbose2",
        "Attempting lock acquisition",
        "Starting handler",
        "Stdin passed to handler process",
        "Child terminated, releasing lock",
        "Cleanup succeeded",
    ]
