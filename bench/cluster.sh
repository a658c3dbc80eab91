#!/usr/bin/env bash
# Cluster benchmarks of issue #4, all on loopback, in one run (docs/benchmarks.md):
#  1. a 3-server Concord cluster (-bootstrap-expect=3 on 127.0.0.1-3, plus one client agent on
#     127.0.0.4) against a 3-member etcd cluster (127.0.0.1-3, fsync on, as both default):
#     idle RSS of the client agent and of the servers (10 s after the client joined), then KV
#     writes under wrk (2 threads, CONNS keep-alive connections, DURATION each, the same lua
#     scripts as run.sh) sent to the leader, to a follower (forwarded to the leader) and, for
#     Concord, to the client agent (forwarded over RPC): req/s, p50/p99, CPU of the whole
#     cluster, and the ratios Concord/etcd;
#  2. gossip: GOSSIP_N Concord client agents, then GOSSIP_N serf agents (Debian's serf), each
#     pool alone in a network namespace of its own (bench/gossip.py): join convergence time,
#     bytes/packets sent per node per second at steady state (the namespace's lo counters, with
#     a breakdown by memberlist message type), CPU and RSS per node, failure-detection time
#     after kill -9 of a member (three, one at a time: the median). The serf agents carry the
#     tags a Consul client agent gossips, so members are the same size in both pools.
#   usage: bench/cluster.sh BUILD_DIR  (env: DURATION=10s CONNS=64 GOSSIP_N=100 SETTLE=30 STEADY=90
#          STAGGER=0.03 PARTS="kv gossip")
# Everything started here is killed on exit; ports are chosen free at run time; nothing leaves
# 127.0.0.0/8.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build}
case $build in /*) BIN=$build/concord ;; *) BIN=$PWD/$build/concord ;; esac
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
GOSSIP_N=${GOSSIP_N:-100}
STEADY=${STEADY:-90}
SETTLE=${SETTLE:-30}
STAGGER=${STAGGER:-0.03}
PARTS=${PARTS:-kv gossip}
for t in etcd serf wrk curl ip; do
  command -v "$t" >/dev/null || { echo "cluster.sh: $t not found (make deps bench-deps)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "cluster.sh: no $BIN (build it first)" >&2; exit 1; }
work=$(mktemp -d /tmp/concord-clusterbench-XXXXXX)
pids=()
netns=()
cleanup() {
  local p ns
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # gossip.py kills its agents itself; anything left in our own namespaces was started by us.
  for ns in "${netns[@]}"; do
    for p in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$p" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

# A port free for TCP and UDP on the given loopback address now (gossip listens on both).
free_port() {
  /usr/bin/python3 -c '
import socket, sys
while True:
    t = socket.socket(); t.bind((sys.argv[1], 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind((sys.argv[1], p)); print(p); break
    except OSError:
        pass' "$1"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
rss() { awk '/VmRSS/ { printf "%.1f MB", $2 / 1024 }' "/proc/$1/status"; }
cpu_ticks() { local p s=0; for p in "$@"; do s=$((s + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo $s; }
hz=$(getconf CLK_TCK)

# wrk as run.sh, plus the CPU of the cluster's processes: url script pids... ->
# "rps p50ms p99ms non2xx cpu%" (cpu% = sum over the cluster's processes, 100 = one core).
wrk_run() {
  local url=$1 script=$2; shift 2
  local c0 c1 t0 t1
  c0=$(cpu_ticks "$@"); t0=$(date +%s%N)
  wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$script" "$url" > "$work/wrk.out" 2>&1 || true
  c1=$(cpu_ticks "$@"); t1=$(date +%s%N)
  awk -v cpu="$(( (c1 - c0) * 100 * 1000000000 / hz / (t1 - t0) ))" '
    function ms(v) { if (v ~ /us$/) return v/1000; if (v ~ /ms$/) return v+0; if (v ~ /s$/) return v*1000; return v }
    /Requests\/sec:/ { rps=$2 }
    $1=="50%" { p50=ms($2) } $1=="99%" { p99=ms($2) }
    /Non-2xx/ { bad=$NF }
    END { printf "%d %.2f %.2f %d %d\n", rps, p50, p99, bad+0, cpu }' "$work/wrk.out"
}

kv_part() {
  echo "== KV writes: 3-server Concord cluster vs 3-member etcd $(etcd --version | awk 'NR==1 {print $3}') cluster (fsync on)"
  local i ip
  declare -gA H S L W EC EP
  for i in 1 2 3 4; do
    ip=127.0.0.$i
    H[$i]=$(free_port $ip) S[$i]=$(free_port $ip) L[$i]=$(free_port $ip) W[$i]=$(free_port $ip)
    EC[$i]=$(free_port $ip) EP[$i]=$(free_port $ip)
  done
  cpids=()
  for i in 1 2 3; do
    local join=()
    [ "$i" = 1 ] || join=(-retry-join "127.0.0.1:${L[1]}" -retry-interval 1s)
    "$BIN" agent -server -bootstrap-expect=3 -data-dir "$work/srv$i" -node "srv$i" \
      -bind 127.0.0.$i -client 127.0.0.$i -http-port "${H[$i]}" -dns-port -1 \
      -server-port "${S[$i]}" -serf-lan-port "${L[$i]}" -serf-wan-port "${W[$i]}" \
      -log-level warn "${join[@]}" > "$work/srv$i.log" 2>&1 & pids+=($!); cpids+=($!)
  done
  "$BIN" agent -data-dir "$work/cli" -node cli1 -bind 127.0.0.4 -client 127.0.0.4 \
    -http-port "${H[4]}" -dns-port -1 -server-port "${S[4]}" -serf-lan-port "${L[4]}" \
    -log-level warn -retry-join "127.0.0.1:${L[1]}" -retry-interval 1s \
    > "$work/cli.log" 2>&1 & pids+=($!); clipid=$!

  # One leader that all three servers and the client agree on.
  local leader="" l t
  for t in $(seq 400); do
    l=$(for i in 1 2 3 4; do curl -sf "127.0.0.$i:${H[$i]}/v1/status/leader" 2>/dev/null || echo x; echo; done | sort -u)
    if [ "$(echo "$l" | wc -l)" = 1 ] && [ "$l" != x ] && [ "$l" != '""' ]; then leader=$l; break; fi
    sleep 0.1
  done
  [ -n "$leader" ] || { echo "no leader:"; tail -5 "$work"/srv*.log "$work/cli.log"; exit 1; }
  leader=${leader//\"/}
  local li=0 fi=0
  for i in 1 2 3; do
    if [ "$leader" = "127.0.0.$i:${S[$i]}" ]; then li=$i; elif [ "$fi" = 0 ]; then fi=$i; fi
  done
  [ "$li" != 0 ] || { echo "leader $leader is none of ours"; exit 1; }
  for t in $(seq 300); do
    [ "$(curl -sf "127.0.0.4:${H[4]}/v1/agent/members" | grep -o '"Status":1' | wc -l)" = 4 ] && break
    sleep 0.1
  done
  echo "concord leader srv$li, follower srv$fi; client cli1 lists 4 members alive"

  echo
  echo "-- idle RSS, 10 s after the client agent joined (no load yet)"
  sleep 10
  printf "%-24s %s\n" "client agent cli1" "$(rss "$clipid")"
  for i in 1 2 3; do
    printf "%-24s %s\n" "server srv$i ($([ "$i" = "$li" ] && echo leader || echo follower))" \
      "$(rss "${cpids[$((i - 1))]}")"
  done

  local cluster="" epids=()
  for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.$i:${EP[$i]}"; done
  for i in 1 2 3; do
    etcd --name "e$i" --data-dir "$work/etcd$i" \
      --listen-client-urls "http://127.0.0.$i:${EC[$i]}" --advertise-client-urls "http://127.0.0.$i:${EC[$i]}" \
      --listen-peer-urls "http://127.0.0.$i:${EP[$i]}" --initial-advertise-peer-urls "http://127.0.0.$i:${EP[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "cb-$$" \
      --log-level error > "$work/etcd$i.log" 2>&1 & pids+=($!); epids+=($!)
  done
  local eli=0 efi=0 st
  for t in $(seq 300); do
    for i in 1 2 3; do
      st=$(curl -sf -X POST -d '{}' "127.0.0.$i:${EC[$i]}/v3/maintenance/status" 2>/dev/null || true)
      [ -n "$st" ] || continue
      # etcd's JSON gateway: {"header": {"member_id": ..}, "leader": ..}, ids as strings.
      if /usr/bin/python3 -c 'import json, sys
d = json.loads(sys.argv[1])
sys.exit(0 if d.get("leader") and d["leader"] == d["header"]["member_id"] else 1)' "$st"; then
        eli=$i
      fi
    done
    [ "$eli" != 0 ] && break
    sleep 0.1
  done
  [ "$eli" != 0 ] || { echo "etcd elected no leader:"; tail -5 "$work"/etcd*.log; exit 1; }
  for i in 1 2 3; do curl -sf "127.0.0.$i:${EC[$i]}/health" >/dev/null || { echo "etcd e$i unhealthy"; exit 1; }; done
  for i in 1 2 3; do [ "$i" != "$eli" ] && { efi=$i; break; }; done
  echo
  echo "etcd leader e$eli, follower e$efi"
  curl -sf -X PUT --data v "127.0.0.$li:${H[$li]}/v1/kv/bench/1" >/dev/null
  curl -sf -X POST -d '{"key":"YmVuY2gvMQ==","value":"dg=="}' "127.0.0.$eli:${EC[$eli]}/v3/kv/put" >/dev/null

  echo
  echo "-- PUT of 10,000 keys, 128-byte values, wrk -t2 -c$CONNS -d$DURATION;" \
    "cpu = all of that cluster's processes (100 = one core)"
  printf "%-34s %10s %9s %9s %7s %6s\n" "target" "req/s" "p50 ms" "p99 ms" "non2xx" "cpu%"
  declare -gA R
  row() { # key label url script pids...
    local key=$1 label=$2; shift 2
    local r; r=$(wrk_run "$@")
    R[$key]=$r
    set -- $r
    printf "%-34s %10s %9s %9s %7s %6s\n" "$label" "$1" "$2" "$3" "$4" "$5"
  }
  local all_c=("${cpids[@]}" "$clipid")
  row cl "concord leader (srv$li)"            "http://127.0.0.$li:${H[$li]}"  bench/concord_put.lua "${all_c[@]}"
  row el "etcd leader (e$eli)"                "http://127.0.0.$eli:${EC[$eli]}" bench/etcd_put.lua "${epids[@]}"
  row cf "concord follower (srv$fi, fwd)"     "http://127.0.0.$fi:${H[$fi]}"  bench/concord_put.lua "${all_c[@]}"
  row ef "etcd follower (e$efi, fwd)"         "http://127.0.0.$efi:${EC[$efi]}" bench/etcd_put.lua "${epids[@]}"
  row cc "concord client agent (cli1, RPC)"   "http://127.0.0.4:${H[4]}"      bench/concord_put.lua "${all_c[@]}"
  local k
  for k in cl cf cc; do
    set -- ${R[$k]}
    [ "$4" = 0 ] || echo "warning: $4 non-2xx Concord answers ($k)"
  done
  # Every write acknowledged through the leader is readable on every server (a cheap check
  # that the load really went through Raft and replicated).
  for i in 1 2 3; do
    curl -sf "127.0.0.$i:${H[$i]}/v1/kv/bench/1?stale" >/dev/null || { echo "srv$i lost bench/1"; exit 1; }
  done
  echo
  f() { echo "${R[$1]}" | awk '{ print $1 }'; }
  echo "ratio PUT concord/etcd, leader:            $(ratio "$(f cl)" "$(f el)")   (target >= 1.5x)"
  echo "ratio PUT concord/etcd, follower:          $(ratio "$(f cf)" "$(f ef)")"
  echo "ratio PUT concord client agent/etcd leader: $(ratio "$(f cc)" "$(f el)")"
  echo "concord forwarded/direct: follower $(ratio "$(f cf)" "$(f cl)"), client agent $(ratio "$(f cc)" "$(f cl)")"
  echo "concord leader p99 $(echo "${R[cl]}" | awk '{ print $3 }') ms (target <= 20 ms)"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  pids=()
}

gossip_part() {
  echo
  echo "== gossip: $GOSSIP_N Concord client agents vs $GOSSIP_N serf agents ($(serf version | head -1)), each pool alone"
  declare -gA G
  local impl bin ns iso out
  for impl in concord serf; do
    [ "$impl" = concord ] && bin=$BIN || bin=$(command -v serf)
    ns=cb-$$-$impl
    echo "-- $impl"
    if ip netns add "$ns" 2>/dev/null && ip -n "$ns" link set lo up; then
      netns+=("$ns"); iso=(ip netns exec "$ns"); out=(--isolated)
    else
      echo "   (no network namespace: running on the host's lo, bytes not measured)"
      iso=(); out=()
    fi
    "${iso[@]}" /usr/bin/python3 "$root/bench/gossip.py" "$impl" "$GOSSIP_N" "$bin" "$work/$impl" \
      "${out[@]}" --settle "$SETTLE" --steady "$STEADY" --stagger "$STAGGER" > "$work/gossip-$impl.out" 2>&1 &
    pids+=($!)
    wait $! || { cat "$work/gossip-$impl.out"; echo "gossip.py $impl failed"; exit 1; }
    pids=()
    grep -v '^RESULT' "$work/gossip-$impl.out"
    G[$impl]=$(grep '^RESULT' "$work/gossip-$impl.out")
    rm -rf "${work:?}/$impl"
    if [ "${#iso[@]}" -gt 0 ]; then ip netns del "$ns"; fi
  done
  v() { echo "${G[$1]}" | tr ' ' '\n' | awk -F= -v k="$2" '$1 == k { print $2 }'; }
  echo
  printf "%-40s %12s %12s %10s\n" "gossip, $GOSSIP_N members" "concord" "serf" "c/s"
  grow() {
    local c s; c=$(v concord "$2") s=$(v serf "$2")
    printf "%-40s %12s %12s %10s\n" "$1" "$c" "$s" "$(ratio "$c" "$s")"
  }
  grow "join convergence, s (lower is better)" join_s
  grow "failure detection, all observers, s" fail_s
  grow "  (median of 3 kills) first observer, s" fail_first_s
  grow "IP bytes sent per node per s" bytes
  grow "packets sent per node per s" pkts
  grow "CPU per node, % of a core" cpu
  grow "RSS per node, KB" rss_kb
}

case " $PARTS " in *" kv "*) kv_part ;; esac
case " $PARTS " in *" gossip "*) gossip_part ;; esac
