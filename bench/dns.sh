#!/usr/bin/env bash
# DNS and catalog benchmark of issue #3, all on loopback, in one run (docs/benchmarks.md):
#  1. `concord agent -dev`; 1,000 nodes web-00000.. at 127.1.x.y, each with one instance of
#     `web` and a passing check, registered with PUT /v1/catalog/register and removed with
#     /v1/catalog/deregister (bench/catalog_load.py), over REG_CONNS keep-alive connections and
#     over one (one request at a time): registrations/s and deregistrations/s;
#  2. unbound (one thread) serving the same records from local-data only (bench/unbound_conf.py),
#     plus `web3`, the same shape with only 3 instances, the size of Concord's answer;
#  3. dnsperf (UDP, no EDNS, CLIENTS sockets, no rate limit, DNS_SECONDS each) for A and SRV
#     against both, interleaved; then A over TCP, where both send all 1,000 records. Prints
#     what each answers, qps, average/stddev latency, the server's CPU and the ratios;
#  4. latency at a fixed SCALE_QPS as `web` grows to 100, 1,000 and 10,000 instances (p50/p99
#     from dnsperf -v); it must stay flat.
#   usage: bench/dns.sh BUILD_DIR  (env: DNS_SECONDS=10 CLIENTS=8 REG_CONNS=64 SCALE_QPS=2000
#          SCALE_SECONDS=5)
# Nothing leaves 127.0.0.0/8: unbound refuses every name outside consul. and may not query any
# address, so it never recurses.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${1:-build}
case $build in /*) BIN=$build/concord ;; *) BIN=$PWD/$build/concord ;; esac
DNS_SECONDS=${DNS_SECONDS:-10}
CLIENTS=${CLIENTS:-8}
REG_CONNS=${REG_CONNS:-64}
SCALE_QPS=${SCALE_QPS:-2000}
SCALE_SECONDS=${SCALE_SECONDS:-5}
N=1000
for t in dnsperf unbound dig curl; do
  command -v "$t" >/dev/null || { echo "dns.sh: $t not found (make bench-deps)" >&2; exit 1; }
done
[ -x "$BIN" ] || { echo "dns.sh: no $BIN (build it first)" >&2; exit 1; }
work=$(mktemp -d /tmp/concord-dnsbench-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

# A loopback port free for both TCP and UDP (DNS listens on both).
free_port() {
  /usr/bin/python3 -c '
import socket
while True:
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass'
}
CH=$(free_port) CD=$(free_port) CS=$(free_port) CL=$(free_port) CW=$(free_port) UB=$(free_port)

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
load() { /usr/bin/python3 "$root/bench/catalog_load.py" 127.0.0.1 "$CH" "$@"; }
# {"op": .., "per_s": R, "errors": E} -> "R E"
load_fields() { /usr/bin/python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(d["per_s"], d["errors"], d["seconds"], d["client_cpu_pct"])'; }
# One catalog load with the server's CPU share: label op first count conns -> a table row.
loadrow() {
  local label=$1 op=$2 first=$3 count=$4 conns=$5 c0 c1 t0 t1 r
  c0=$(cpu_ticks "$cpid"); t0=$(date +%s%N)
  r=$(load "$op" "$first" "$count" "$conns" | load_fields)
  c1=$(cpu_ticks "$cpid"); t1=$(date +%s%N)
  set -- $r
  printf "%-40s %9s %8s %7s %10s %10s\n" "$label" "$1" "$3" "$2" \
    "$(( (c1 - c0) * 100 * 1000000000 / hz / (t1 - t0) ))" "$4"
}
instances() { curl -sf "127.0.0.1:$CH/v1/catalog/service/web" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# dnsperf against PORT with query file QFILE, server PID; extra dnsperf args follow.
# -> "qps avg_ms sd_ms response_bytes lost server_cpu%"
perf() {
  local port=$1 qfile=$2 pid=$3; shift 3
  local c0 c1
  c0=$(cpu_ticks "$pid")
  dnsperf -s 127.0.0.1 -p "$port" -d "$qfile" -l "$DNS_SECONDS" -c "$CLIENTS" "$@" > "$work/perf.out" 2>&1 || true
  c1=$(cpu_ticks "$pid")
  awk -v cpu="$(( (c1 - c0) * 100 / hz ))" -v secs="$DNS_SECONDS" '
    /Queries lost:/ { lost = $3 }
    /Average packet size:/ { resp = $7 }
    /Queries per second:/ { qps = $4 }
    /Average Latency/ && !lat { lat = $4 * 1000 }
    /Latency StdDev/ && !sd { sd = $4 * 1000 }
    END { printf "%d %.3f %.3f %d %d %d\n", qps, lat, sd, resp, lost, cpu / secs }' "$work/perf.out"
}

# What a server answers to one query: "answers additional TC bytes" (dig, no retry over TCP).
answers() { # port name type [dig options]
  local port=$1 name=$2 type=$3; shift 3
  dig +ignore +noedns "$@" @127.0.0.1 -p "$port" "$name" "$type" | awk '
    /;; flags:/ { tc = ($0 ~ / tc[ ;]/) ? "TC" : "-"
                  for (i = 1; i <= NF; i++) { if ($i == "ANSWER:") an = $(i+1); if ($i == "ADDITIONAL:") ad = $(i+1) } }
    /MSG SIZE/ { sz = $NF }
    END { gsub(",", "", an); printf "%s %s %s %s\n", an, ad, tc, sz }'
}

echo "== DNS and catalog (issue #3): concord agent -dev vs unbound $(unbound -V | awk 'NR==1 {print $2}'), dnsperf $(dnsperf -h 2>&1 | awk '/^Version/ {print $2}')"
"$BIN" agent -dev -node bench -http-port "$CH" -dns-port "$CD" -server-port "$CS" \
  -serf-lan-port "$CL" -serf-wan-port "$CW" -log-level warn > "$work/concord.log" 2>&1 & pids+=($!); cpid=$!
for _ in $(seq 100); do
  l=$(curl -sf "127.0.0.1:$CH/v1/status/leader" 2>/dev/null || true)
  [ -n "$l" ] && [ "$l" != '""' ] && break; sleep 0.1
done
[ -n "${l:-}" ] && [ "$l" != '""' ] || { echo "concord did not elect itself:"; cat "$work/concord.log"; exit 1; }

echo
echo "-- catalog: $N nodes, one 'web' instance and one passing check each (cpu% = share of one core)"
printf "%-40s %9s %8s %7s %10s %10s\n" "operation" "per s" "seconds" "errors" "server%" "loader%"
loadrow "register, $REG_CONNS connections"    register   0 $N "$REG_CONNS"
loadrow "deregister, $REG_CONNS connections"  deregister 0 $N "$REG_CONNS"
loadrow "register, 1 connection"              register   0 $N 1
loadrow "deregister, 1 connection"            deregister 0 $N 1
load register 0 $N "$REG_CONNS" > /dev/null
got=$(instances); [ "$got" = $N ] || { echo "expected $N instances of web, catalog has $got"; exit 1; }

/usr/bin/python3 "$root/bench/unbound_conf.py" $N "$UB" "$work" > "$work/unbound.conf"
unbound-checkconf "$work/unbound.conf" >/dev/null
unbound -d -c "$work/unbound.conf" > "$work/unbound.out" 2>&1 & pids+=($!); upid=$!
for _ in $(seq 100); do dig +short +tries=1 +time=1 @127.0.0.1 -p "$UB" web3.service.consul A 2>/dev/null | grep -q 127.1 && break; sleep 0.1; done
[ "$(dig +short @127.0.0.1 -p "$UB" web3.service.consul A | wc -l)" = 3 ] || { echo "unbound not answering:"; cat "$work/unbound.out" "$work/unbound.log" 2>/dev/null; exit 1; }

for q in "web.service.consul A" "web.service.consul SRV" "web3.service.consul A" "web3.service.consul SRV"; do
  echo "$q" > "$work/q-${q%%.*}-${q##* }"
done

echo
echo "-- what each server answers (one UDP query without EDNS, as dnsperf sends them; TCP: all records)"
printf "%-34s %8s %11s %4s %7s\n" "server / question" "answers" "additional" "TC" "bytes"
row() { printf "%-34s %8s %11s %4s %7s\n" "$1" $2; }
row "concord web A (1,000 inst.)"   "$(answers "$CD" web.service.consul A)"
row "concord web SRV"               "$(answers "$CD" web.service.consul SRV)"
row "unbound web A (1,000 records)" "$(answers "$UB" web.service.consul A)"
row "unbound web SRV"               "$(answers "$UB" web.service.consul SRV)"
row "unbound web3 A (3 records)"    "$(answers "$UB" web3.service.consul A)"
row "unbound web3 SRV"              "$(answers "$UB" web3.service.consul SRV)"
row "concord web A over TCP"        "$(answers "$CD" web.service.consul A +tcp)"
row "unbound web A over TCP"        "$(answers "$UB" web.service.consul A +tcp)"

echo
echo "-- dnsperf: $CLIENTS clients, ${DNS_SECONDS}s each, no rate limit (-q 100 outstanding); cpu = server's share of one core"
printf "%-34s %9s %9s %9s %7s %6s %5s\n" "server / question" "qps" "avg ms" "sd ms" "bytes" "lost" "cpu%"
res() { local name=$1; shift; printf "%-34s %9s %9s %9s %7s %6s %5s\n" "$name" "$@"; }
declare -A QPS CPU
run() { # key label port qfile pid [args]
  local key=$1 label=$2; shift 2
  local r; r=$(perf "$@"); res "$label" $r
  QPS[$key]=$(echo "$r" | awk '{print $1}'); CPU[$key]=$(echo "$r" | awk '{print $6}')
}
run cA   "concord web A (3 of 1,000)"  "$CD" "$work/q-web-A"   "$cpid"
run uA   "unbound web A (TC, empty)"   "$UB" "$work/q-web-A"   "$upid"
run u3A  "unbound web3 A (3 records)"  "$UB" "$work/q-web3-A"  "$upid"
run cS   "concord web SRV (3 + 3 A)"   "$CD" "$work/q-web-SRV" "$cpid"
run uS   "unbound web SRV (TC, empty)" "$UB" "$work/q-web-SRV" "$upid"
run u3S  "unbound web3 SRV (3, no add.)" "$UB" "$work/q-web3-SRV" "$upid"
run cT   "concord web A TCP (1,000)"   "$CD" "$work/q-web-A"   "$cpid" -m tcp
run uT   "unbound web A TCP (1,000)"   "$UB" "$work/q-web-A"   "$upid" -m tcp
eff() { awk -v q="$1" -v c="$2" 'BEGIN { if (c > 0) printf "%d", q * 100 / c; else print 0 }'; }
echo
echo "ratios concord/unbound   qps        qps per server CPU-second"
for p in "A web3:cA:u3A" "A web:cA:uA" "SRV web3:cS:u3S" "SRV web:cS:uS" "A TCP 1,000:cT:uT"; do
  IFS=: read -r label c u <<< "$p"
  printf "  %-20s %-10s %s\n" "$label" "$(ratio "${QPS[$c]}" "${QPS[$u]}")" \
    "$(ratio "$(eff "${QPS[$c]}" "${CPU[$c]}")" "$(eff "${QPS[$u]}" "${CPU[$u]}")")"
done
kill "$upid" 2>/dev/null || true

load deregister 0 $N "$REG_CONNS" > /dev/null
got=$(curl -sf "127.0.0.1:$CH/v1/catalog/service/web"); [ "$got" = "[]" ] || { echo "web still has instances after deregistration"; exit 1; }

echo
echo "-- latency as 'web' grows (dnsperf -Q $SCALE_QPS for ${SCALE_SECONDS}s, UDP, $CLIENTS clients; register/s at $REG_CONNS connections)"

# Percentiles from dnsperf -v ("> NOERROR name type seconds", one line per answered query).
scale() { # qfile -> "avg_ms p50_ms p99_ms answered"
  dnsperf -s 127.0.0.1 -p "$CD" -d "$1" -l "$SCALE_SECONDS" -c "$CLIENTS" -Q "$SCALE_QPS" -v 2>/dev/null |
    awk '$1 == ">" { print $NF * 1000 }' | sort -n | awk '
      { v[NR] = $1; s += $1 }
      END { if (NR == 0) { print "0 0 0 0"; exit }
            p50 = v[int(NR * 0.50) > 0 ? int(NR * 0.50) : 1]; p99 = v[int(NR * 0.99) > 0 ? int(NR * 0.99) : 1]
            printf "%.3f %.3f %.3f %d\n", s / NR, p50, p99, NR }'
}
printf "%-12s %14s %10s %9s %9s %9s %9s %9s %9s\n" "instances" "register/s" "A avg ms" "p50" "p99" "SRV avg" "p50" "p99" "answered"
have=0
declare -a avgs
for size in 100 1000 10000; do
  read -r rs _ _ _ < <(load register $have $((size - have)) "$REG_CONNS" | load_fields)
  have=$size
  got=$(instances); [ "$got" = "$size" ] || { echo "expected $size instances, catalog has $got"; exit 1; }
  read -r aa a50 a99 an < <(scale "$work/q-web-A")
  read -r sa s50 s99 sn < <(scale "$work/q-web-SRV")
  printf "%-12s %14s %10s %9s %9s %9s %9s %9s %9s\n" "$size" "$rs" "$aa" "$a50" "$a99" "$sa" "$s50" "$s99" "$((an + sn))"
  avgs+=("$aa")
done
echo "A average latency 10,000 vs 100 instances: $(ratio "${avgs[2]}" "${avgs[0]}") (flat = about 1x)"
echo "concord RSS with 10,000 nodes/instances/checks: $(awk '/VmRSS/ {print $2, $3}' "/proc/$cpid/status")"
