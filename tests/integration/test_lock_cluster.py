"""`concord lock` across a real cluster (3 servers on 127.0.0.1-3, 2 client agents on
127.0.0.4-5): five contenders, one per agent, never overlap; a semaphore of three across the
agents; kill -9 of the agent a holder talks to: its session is invalidated when gossip marks the
node failed, and a waiter on another agent takes the lock after the lock-delay."""
import sys
import time

import pytest

from test_cluster import start_cluster, wait_until
from test_lock import (child, events, finish, intervals, run_contenders,  # noqa: F401
                       session_named, start_lock, started, wait_for)


@pytest.fixture(scope="module")
def lock_cluster(request):
    servers, clients = start_cluster(request, prefix="l")
    return servers, clients


def test_five_contenders_on_five_agents(lock_cluster, child, tmp_path):  # noqa: F811
    servers, clients = lock_cluster
    agents = servers + clients
    log = str(tmp_path / "log")
    run_contenders(agents, child, log, "cluster/mutex", 1, 5, 0.4)
    spans = intervals(log)
    assert sorted(name for _, _, name in spans) == ["c%d" % i for i in range(5)]
    for (s1, e1, n1), (s2, e2, n2) in zip(spans, spans[1:]):
        assert e1 <= s2, "%s [%f, %f] overlaps %s [%f, %f]" % (n1, s1, e1, n2, s2, e2)


def test_semaphore_of_three_across_agents(lock_cluster, child, tmp_path):  # noqa: F811
    servers, clients = lock_cluster
    agents = servers + clients
    log = str(tmp_path / "log")
    run_contenders(agents, child, log, "cluster/sem", 3, 6, 1.5)
    spans = intervals(log)
    assert len(spans) == 6
    points = sorted([(s, 1) for s, _, _ in spans] + [(e, -1) for _, e, _ in spans],
                    key=lambda x: (x[0], x[1]))
    cur = peak = 0
    for _, d in points:
        cur += d
        peak = max(peak, cur)
    assert peak == 3


def test_holders_agent_killed_waiter_takes_over(lock_cluster, child, tmp_path):  # noqa: F811
    servers, clients = lock_cluster
    victim = clients[0]
    log = str(tmp_path / "log")
    prefix = "cluster/failover"
    holder = start_lock(victim, "-shell=false", "-name", "holder", prefix, sys.executable,
                        child, log, "holder", "300", "note-term")
    waiter = None
    try:
        wait_for(lambda: started(log, "holder"), 30, "holder to start")
        waiter = start_lock(clients[1], "-shell=false", "-name", "waiter", prefix,
                            sys.executable, child, log, "waiter", "0.2")
        wait_for(lambda: session_named(servers[0], "waiter"), 30, "waiter's session")
        holder_session = session_named(servers[0], "holder")[0]
        assert holder_session["Node"] == victim.node
        killed = time.monotonic()
        victim.kill()
        # the leader invalidates the session once gossip marks the node failed
        assert wait_until(lambda: not session_named(servers[1], "holder"), timeout=60)
        invalidated = time.monotonic()
        code, out, err = finish(waiter, timeout=90)
        assert code == 0, (out, err)
        ws = [t for w, n, t, _ in events(log) if w == "start" and n == "waiter"]
        assert ws, events(log)
        # never while the old holder could still have believed it held the lock: the waiter
        # starts after the invalidation plus (most of) the 15 s lock-delay
        assert ws[0] > invalidated + 10, (ws[0] - killed, invalidated - killed)
    finally:
        for p in (holder, waiter):
            if p and p.poll() is None:
                p.kill()
                p.wait()
        victim.start(wait=False)
        victim.wait_http()
