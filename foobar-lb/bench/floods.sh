#!/usr/bin/env bash
# Connection floods against one load balancer, foobar's `lb` example beside
# HAProxy, each terminating TLS in front of the same two nginx backends
# (TLS with a client certificate behind, as in run.sh's e2e mode):
#
#   idle       IDLE (20,000) silent TCP connections from 100 loopback
#              addresses, re-opened when the server closes them
#   stalled    STALLED (2,000) TLS handshakes stopped after the ClientHello
#              (the server has signed its flight and waits for the client)
#   handshake  TASKS (32) loops of full TLS handshakes from one address,
#              with the per-client handshake rate limit off and on
#              (foobar: --handshake-rate 20 --handshake-burst 40; HAProxy:
#              a stick table rejecting a source over 20 connections/s)
#   fds        (foobar) the lb started with 1,024 descriptors, flooded with
#              2,000 idle connections: no crash, no busy loop, served again
#              once the flood ends
#
# For each: legitimate clients' throughput (wrk, 16 keep-alive connections
# opened during the flood, LOAD=5 s) beside the same run without a flood,
# the server's resident memory per held connection (the rise of VmRSS over
# the idle server, divided by the connections it held), and its CPU time.
# The machine's open-file limit bounds what one process can hold (it is
# printed); the flood client runs as two processes for that reason.
#
# Run from anywhere:  foobar-lb/bench/floods.sh
# Knobs (environment): IDLE=20000 STALLED=2000 TASKS=32 HOLD=20 (s per flood)
#                      LOAD=5 (s of wrk per measure)  WORKERS=1 (lb workers)
# Only 127.0.0.0/8 is a target; every flood ends after HOLD seconds.
set -euo pipefail

IDLE=${IDLE:-20000}
STALLED=${STALLED:-2000}
TASKS=${TASKS:-32}
HOLD=${HOLD:-20}
LOAD=${LOAD:-5}
WORKERS=${WORKERS:-1}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

. "$(dirname "$0")/common.sh"
install_missing haproxy:haproxy nginx:nginx wrk:wrk openssl:openssl ss:iproute2 curl:curl

echo "building lb and the flood client (release)..." >&2
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p foobar-examples --bin lb >&2
FLOOD_BIN=$(cargo bench --no-run --manifest-path "$ROOT/Cargo.toml" -p foobar-lb --bench flood \
    --message-format=json 2>/dev/null | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "flood" and m.get("executable"):
        print(m["executable"])')
LB_BIN="$ROOT/target/release/lb"

start_workdir floods
bench_certificates
start_backends
# The front ends' certificate, from the bench CA, so that the handshake
# flood can verify it.
leaf front "DNS:localhost,IP:127.0.0.1" serverAuth
cat "$WORK/front.pem" "$WORK/front.key" > "$WORK/front-haproxy.pem"
printf 'allow 127.0.0.0/8\ndefault deny\n' > "$WORK/firewall.rules"
ulimit -n "$(ulimit -Hn)"
echo "open-file limit per process: $(ulimit -n)" >&2

BACKENDS=()
for port in "${BACKEND_TLS_PORTS[@]}"; do BACKENDS+=(--backend "https://127.0.0.1:$port"); done
start_lb() { # name port [extra lb flags...]
    local name=$1 port=$2
    shift 2
    RUST_LOG=error "$LB_BIN" --workers "$WORKERS" --listen "127.0.0.1:$port" --admin "127.0.0.1:$(free_port)" \
        --cert "$WORK/front.pem" --key "$WORK/front.key" --rules "$WORK/firewall.rules" \
        --rate 1000000000 --burst 1000000000 --max-connections 100000 \
        --upstream-ca "$WORK/ca.pem" --client-cert "$WORK/client.pem" --client-key "$WORK/client.key" \
        "${BACKENDS[@]}" "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
}
start_haproxy() { # name port [extra frontend lines]
    local name=$1 port=$2 extra=${3:-}
    cat > "$WORK/$name.cfg" <<CONF
global
    nbthread 1
    # Two descriptors per proxied connection, within this machine's limit.
    maxconn $(( ($(ulimit -n) - 100) / 2 ))
defaults
    mode http
    timeout connect 5s
    timeout client 10s
    timeout http-request 10s
    timeout server 30s
    http-reuse always
frontend front
    bind 127.0.0.1:$port ssl crt $WORK/front-haproxy.pem alpn http/1.1
$extra
    default_backend web
backend web
    server b1 127.0.0.1:${BACKEND_TLS_PORTS[0]} ssl verify required ca-file $WORK/ca.pem crt $WORK/client-haproxy.pem
    server b2 127.0.0.1:${BACKEND_TLS_PORTS[1]} ssl verify required ca-file $WORK/ca.pem crt $WORK/client-haproxy.pem
CONF
    haproxy -f "$WORK/$name.cfg" -db >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
    PID[$name]=$!
}

declare -A PID PORT
for name in foobar foobar_limited haproxy haproxy_limited foobar_fds; do PORT[$name]=$(free_port); done
start_lb foobar "${PORT[foobar]}"
start_lb foobar_limited "${PORT[foobar_limited]}" --handshake-rate 20 --handshake-burst 40
start_haproxy haproxy "${PORT[haproxy]}"
start_haproxy haproxy_limited "${PORT[haproxy_limited]}" "    stick-table type ip size 100k expire 30s store conn_rate(1s)
    tcp-request connection track-sc0 src
    tcp-request connection reject if { sc0_conn_rate gt 20 }"
for name in foobar foobar_limited haproxy haproxy_limited; do wait_port "${PORT[$name]}"; done

rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
fds() { find "/proc/$1/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
legit() { # port: requests per second of wrk's 16 connections
    wrk -t1 -c16 -d"${LOAD}s" "https://127.0.0.1:$1/" 2>/dev/null | awk '/Requests\/sec/ {print $2}'
}
flood() { # mode port count seconds last: two client processes, half each
    local half=$(($3 / 2))
    "$FLOOD_BIN" "$1" "127.0.0.1:$2" "$half" "$4" "$5" >"$WORK/flood-$1-$2-a.out" 2>&1 &
    FLOODS=($!)
    "$FLOOD_BIN" "$1" "127.0.0.1:$2" "$(($3 - half))" "$4" "$5" >"$WORK/flood-$1-$2-b.out" 2>&1 &
    FLOODS+=($!)
}
wait_floods() { local p; for p in "${FLOODS[@]}"; do wait "$p" || true; done; }
# Samples the server (pid) every 0.2 s for half of HOLD: the most
# descriptors it held beyond `base` (HELD) and its largest VmRSS in KiB
# (PEAK). The server ends silent connections after its handshake timeout
# and the flood opens them again, so the count moves.
sample_peak() { # pid base
    local until=$((SECONDS + HOLD / 2)) n r
    HELD=0 PEAK=0
    while [ $SECONDS -lt $until ]; do
        n=$(($(fds "$1") - $2)) r=$(rss_kb "$1")
        [ "$n" -gt "$HELD" ] && HELD=$n
        [ "$r" -gt "$PEAK" ] && PEAK=$r
        sleep 0.2
    done
}
pct() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }'; }

# Each server's descriptors at rest (its listeners, logs, backend
# connections once warmed by a first measure).
declare -A IDLE_FDS
for name in foobar haproxy; do
    wrk -t1 -c16 -d1s "https://127.0.0.1:${PORT[$name]}/" >/dev/null 2>&1 || true
    IDLE_FDS[$name]=$(($(fds "${PID[$name]}") + 20))
done

printf '\n| flood | target | connections held (most) | memory per held connection | legit req/s alone | under the flood | kept | server CPU during the flood |\n|---|---|---|---|---|---|---|---|\n'
for mode in idle stalled; do
    count=$IDLE
    [ "$mode" = stalled ] && count=$STALLED
    for target in foobar haproxy; do
        port=${PORT[$target]} pid=${PID[$target]}
        # Settle: earlier floods' connections gone (at most 30 s).
        for _ in $(seq 1 300); do [ "$(fds "$pid")" -le "${IDLE_FDS[$target]}" ] && break; sleep 0.1; done
        alone=$(legit "$port")
        base=$(rss_kb "$pid") base_fds=$(fds "$pid")
        cpu0=$(cpu_ticks "$pid")
        started=$(date +%s.%N)
        flood "$mode" "$port" "$count" "$HOLD" 100
        sample_peak "$pid" "$base_fds"
        attacked=$(legit "$port")
        wait_floods
        cpu=$(awk -v t0="$cpu0" -v t1="$(cpu_ticks "$pid")" -v s="$started" -v e="$(date +%s.%N)" \
            'BEGIN { printf "%.0f %%", (t1 - t0) / (e - s) }')
        per=$(awk -v p="$PEAK" -v b="$base" -v n="$HELD" 'BEGIN { if (n > 0) printf "%.1f KiB", (p - b) / n; else print "-" }')
        held_now=$HELD
        printf '| %s | %s | %s of %s | %s | %.0f | %.0f | %s | %s |\n' "$mode" "$target" "$held_now" "$count" \
            "$per" "$alone" "$attacked" "$(pct "$attacked" "$alone")" "$cpu"
    done
done

printf '\n| handshake flood from one address | legit req/s alone | under the flood | kept | flood handshakes completed | server CPU during the flood |\n|---|---|---|---|---|---|\n'
for target in foobar foobar_limited haproxy haproxy_limited; do
    port=${PORT[$target]} pid=${PID[$target]}
    alone=$(legit "$port")
    cpu0=$(cpu_ticks "$pid")
    started=$(date +%s.%N)
    "$FLOOD_BIN" handshake "127.0.0.1:$port" "$TASKS" "$((LOAD + 2))" "$WORK/ca.pem" >"$WORK/hs-$target.out" 2>&1 &
    hs=$!
    sleep 1
    attacked=$(legit "$port")
    wait "$hs" || true
    cpu=$(awk -v t0="$cpu0" -v t1="$(cpu_ticks "$pid")" -v s="$started" -v e="$(date +%s.%N)" \
        'BEGIN { printf "%.0f %%", (t1 - t0) / (e - s) }')
    done_hs=$(sed -n 's/.*handshakes=\([0-9]*\).*/\1/p' "$WORK/hs-$target.out")
    printf '| %s | %.0f | %.0f | %s | %s | %s |\n' "$target" "$alone" "$attacked" "$(pct "$attacked" "$alone")" \
        "${done_hs:-?}" "$cpu"
done

# Descriptors run out: a lb with 1,024 of them, flooded with 2,000 idle
# connections for HOLD seconds.
(ulimit -n 1024 && start_lb foobar_fds "${PORT[foobar_fds]}" && wait "${PID[foobar_fds]}") &
PIDS+=($!)
wait_port "${PORT[foobar_fds]}"
fds_pid=$(pgrep -f -- "--listen 127.0.0.1:${PORT[foobar_fds]}" | head -n 1)
PIDS+=("$fds_pid")
cpu0=$(cpu_ticks "$fds_pid") base_fds=$(fds "$fds_pid")
started=$(date +%s.%N)
flood idle "${PORT[foobar_fds]}" 2000 "$HOLD" 100
sample_peak "$fds_pid" "$base_fds"
held_now=$HELD
wait_floods
cpu=$(awk -v t0="$cpu0" -v t1="$(cpu_ticks "$fds_pid")" -v s="$started" -v e="$(date +%s.%N)" \
    'BEGIN { printf "%.0f %%", (t1 - t0) / (e - s) }')
after="no"
for _ in $(seq 1 200); do
    if curl -sk --max-time 2 "https://127.0.0.1:${PORT[foobar_fds]}/" >/dev/null; then after="yes"; break; fi
    sleep 0.1
done
alive="no"
kill -0 "$fds_pid" 2>/dev/null && alive="yes"
printf '\n| descriptors out (1,024) | connections held (most) | server CPU during the flood | alive after | served after the flood |\n|---|---|---|---|---|\n'
printf '| foobar | %s | %s | %s | %s |\n' "$held_now" "$cpu" "$alive" "$after"
