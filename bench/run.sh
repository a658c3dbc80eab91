#!/usr/bin/env bash
# Side-by-side benchmarks, all on this machine's loopback, in one run (docs/benchmarks.md):
#  1. KV PUT and GET: Concord (one server, fsync on) vs etcd 3.4 (one member) under wrk with
#     64 keep-alive connections, printed as ratios with p50/p99 latencies;
#  2. 10,000 blocking queries parked on one key, woken by one PUT;
#  3. idle RSS of `concord agent -dev`;
#  4. DNS and catalog (issue #3), by bench/dns.sh once the peers above are stopped: dnsperf A/SRV
#     queries for a service of 1,000 instances against unbound serving the same records from
#     local-data, DNS latency at 100 / 1,000 / 10,000 instances, and catalog register/deregister
#     throughput (env: DNS_SECONDS=10 CLIENTS=8 REG_CONNS=64 SCALE_QPS=2000 SCALE_SECONDS=5);
#  5. the cluster (issue #4), by bench/cluster.sh: 3-server Concord vs 3-member etcd KV writes
#     (leader, follower, client agent), idle RSS of a client agent, and gossip join/failure
#     detection/bytes for GOSSIP_N Concord agents vs GOSSIP_N serf agents (env: GOSSIP_N=100
#     SETTLE=30 STEADY=90; about 10 minutes).
#   usage: bench/run.sh BUILD_DIR   (env: DURATION=10s CONNS=64 PARKED=10000)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build}
BIN=$PWD/$build/concord
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PARKED=${PARKED:-10000}
work=$(mktemp -d /tmp/concord-bench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# Free loopback ports, chosen now so that the run cannot collide with anything else listening.
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
CH=$(free_port) CD=$(free_port) CS=$(free_port) EC=$(free_port) EP=$(free_port)
IH=$(free_port) ID=$(free_port) IS=$(free_port)

wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "timeout waiting for $1" >&2; return 1; }

# wrk prints "Requests/sec: N" and, with --latency, "50% 1.23ms" lines; normalise to ms.
wrk_run() { # url script -> "rps p50ms p99ms"
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$2" "$1" > "$work/wrk.out" 2>&1 || true
  awk '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec:/ { rps=$2 }
    $1=="50%" { p50=ms($2) } $1=="99%" { p99=ms($2) }
    /Non-2xx/ { bad=$NF }
    END { printf "%d %.2f %.2f %d\n", rps, p50, p99, bad+0 }' "$work/wrk.out"
}

echo "== starting Concord (single server, fsync on) and etcd (single member)"
"$BIN" agent -server -bootstrap-expect=1 -data-dir "$work/concord" -node bench -bind 127.0.0.1 \
  -client 127.0.0.1 -http-port $CH -dns-port $CD -server-port $CS -log-level warn \
  > "$work/concord.log" 2>&1 & pids+=($!); cpid=$!
etcd --name bench --data-dir "$work/etcd" --listen-client-urls http://127.0.0.1:$EC \
  --advertise-client-urls http://127.0.0.1:$EC --listen-peer-urls http://127.0.0.1:$EP \
  --initial-advertise-peer-urls http://127.0.0.1:$EP --initial-cluster bench=http://127.0.0.1:$EP \
  --log-level error > "$work/etcd.log" 2>&1 & pids+=($!)
for _ in $(seq 100); do [ "$(curl -s 127.0.0.1:$CH/v1/status/leader)" != '""' ] && curl -sf 127.0.0.1:$CH/v1/status/leader >/dev/null && break; sleep 0.1; done
wait_http http://127.0.0.1:$EC/health
curl -s -X PUT --data v 127.0.0.1:$CH/v1/kv/bench/1 >/dev/null
curl -s -X POST -d '{"key":"YmVuY2gvMQ==","value":"dg=="}' 127.0.0.1:$EC/v3/kv/put >/dev/null

printf "\n%-28s %12s %10s %10s\n" "load ($CONNS conns, $DURATION)" "req/s" "p50 ms" "p99 ms"
read -r c_put c_put50 c_put99 c_bad < <(wrk_run http://127.0.0.1:$CH bench/concord_put.lua)
printf "%-28s %12s %10s %10s\n" "concord PUT" "$c_put" "$c_put50" "$c_put99"
read -r e_put e_put50 e_put99 e_bad < <(wrk_run http://127.0.0.1:$EC bench/etcd_put.lua)
printf "%-28s %12s %10s %10s\n" "etcd put" "$e_put" "$e_put50" "$e_put99"
echo 'wrk.method = "GET"' > "$work/get.lua"
read -r c_get c_get50 c_get99 _ < <(wrk_run http://127.0.0.1:$CH/v1/kv/bench/1 "$work/get.lua")
printf "%-28s %12s %10s %10s\n" "concord GET (default)" "$c_get" "$c_get50" "$c_get99"
read -r c_sget c_sget50 c_sget99 _ < <(wrk_run "http://127.0.0.1:$CH/v1/kv/bench/1?stale" "$work/get.lua")
printf "%-28s %12s %10s %10s\n" "concord GET (stale)" "$c_sget" "$c_sget50" "$c_sget99"
read -r c_cget c_cget50 c_cget99 _ < <(wrk_run "http://127.0.0.1:$CH/v1/kv/bench/1?consistent" "$work/get.lua")
printf "%-28s %12s %10s %10s\n" "concord GET (consistent)" "$c_cget" "$c_cget50" "$c_cget99"
read -r e_get e_get50 e_get99 _ < <(wrk_run http://127.0.0.1:$EC bench/etcd_get.lua)
printf "%-28s %12s %10s %10s\n" "etcd range (linearizable)" "$e_get" "$e_get50" "$e_get99"
[ "$c_bad" = 0 ] || echo "warning: $c_bad non-2xx Concord PUT answers"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
echo
echo "ratio PUT  concord/etcd:                 $(ratio "$c_put" "$e_put")   (target >= 1.5x)"
echo "ratio GET  concord default/etcd linear.: $(ratio "$c_get" "$e_get")   (target >= 3x)"
echo "ratio GET  concord consistent/etcd:      $(ratio "$c_cget" "$e_get")"

echo
echo "== idle RSS of concord agent -dev"
"$BIN" agent -dev -node idle -http-port $IH -dns-port $ID -server-port $IS -log-level warn \
  > "$work/idle.log" 2>&1 & pids+=($!); ipid=$!
wait_http http://127.0.0.1:$IH/v1/status/leader
sleep 2
echo "concord agent -dev RSS: $(awk '/VmRSS/ {print $2, $3}' /proc/$ipid/status)"

echo
echo "== $PARKED blocking queries parked on one key of that fresh agent, woken by one PUT"
/usr/bin/python3 "$root/bench/parked.py" 127.0.0.1 $IH "$ipid" "$PARKED"

echo; cleanup; trap - EXIT
bash "$root/bench/dns.sh" "$build"
echo; exec bash "$root/bench/cluster.sh" "$build"
