#!/usr/bin/env bash
# What each shipped layer costs per proxied request, counted rather than
# timed: instructions (valgrind's callgrind) of foobar's lb-bench over a
# fixed number of keep-alive requests, with no layer, each layer alone, and
# all of them in the lb example's order; HAProxy with the matching rules as
# a reference. Counts repeat from run to run whatever else the machine does.
#
# Run from anywhere:  foobar-lb/bench/layers.sh
# Knobs (environment): REQUESTS=20000  CONNS=16
# Everything listens on 127.0.0.1, on free high ports; all processes and
# files are removed on exit.
set -euo pipefail

REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-16}
WARMUP=2000
export RUST_LOG=error
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

. "$(dirname "$0")/common.sh"
install_missing valgrind:valgrind nginx:nginx haproxy:haproxy h2load:nghttp2-client

echo "building lb-bench (release)..." >&2
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p foobar-examples --bin lb-bench >&2
LB_BIN="$ROOT/target/release/lb-bench"

start_workdir lb-layers

BACKEND=$(free_port)
cat > "$WORK/backend.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend.pid;
error_log $WORK/backend.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -p "$WORK" -c "$WORK/backend.conf" &
PIDS+=($!)
wait_port "$BACKEND" 600

# Runs "$@" under callgrind (instrumentation off), warms it up, counts the
# instructions of $REQUESTS requests on $CONNS keep-alive connections, and
# prints instructions per request.
count() {
    local port=$1; shift
    local out="$WORK/callgrind.out"
    rm -f "$out"*
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@" \
        >"$WORK/target.log" 2>&1 &
    local pid=$!
    wait_port "$port" 600
    h2load --h1 -n "$WARMUP" -c "$CONNS" "http://127.0.0.1:$port/" >/dev/null
    callgrind_control -i on "$pid" >/dev/null
    h2load --h1 -n "$REQUESTS" -c "$CONNS" "http://127.0.0.1:$port/" >"$WORK/h2load.log"
    callgrind_control -d "$pid" >/dev/null
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    local done
    done=$(awk '/succeeded/ {print $8}' "$WORK/h2load.log")
    if [ "${done:-0}" != "$REQUESTS" ]; then
        echo "only ${done:-0} of $REQUESTS requests succeeded" >&2
        tail -n 5 "$WORK/h2load.log" "$WORK/target.log" >&2
        return 1
    fi
    # The totals of every dump (one per thread).
    cat "$out"* | awk -v n="$REQUESTS" '/^summary:/ {s += $2} END {printf "%.0f\n", s / n}'
}

printf '| configuration | instructions per request | added by the layer |\n|---|---|---|\n'
base=""
for layers in none firewall conn-limit rate-limit metrics access-log all; do
    port=$(free_port)
    ir=$(count "$port" "$LB_BIN" --workers 1 --layers "$layers" \
        --access-log "$WORK/access.log" --listen "127.0.0.1:$port" \
        --backend "http://127.0.0.1:$BACKEND")
    [ "$layers" = none ] && base=$ir
    printf '| lb-bench, %s | %s | %s |\n' "$layers" "$ir" "$((ir - base))"
done

# HAProxy doing the same work: forwarding headers as foobar's proxy adds
# them, a stick table tracking each client's request rate, an allow list.
port=$(free_port)
cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
    option http-keep-alive
    option forwardfor
    unique-id-format %{+X}o%pid%Ts%rt
frontend plain
    bind 127.0.0.1:$port
    tcp-request connection reject unless { src 127.0.0.0/8 ::1/128 }
    stick-table type ip size 100k expire 30s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found }
    http-request add-header Forwarded "for=%[src];proto=http;host=\\"%[req.hdr(host)]\\""
    http-request add-header Via "1.1 foobar"
    http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
    default_backend web
backend web
    server b1 127.0.0.1:$BACKEND
CONF
ir=$(count "$port" haproxy -f "$WORK/haproxy.cfg" -db)
printf '| HAProxy 2.6, allow list, rate tracking, the same headers | %s | |\n' "$ir"
