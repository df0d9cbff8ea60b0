#!/usr/bin/env bash
# The cost of sharing the rate limit through Redis: req/s of the `lb`
# example (TLS in front, TLS to one nginx backend, every layer as shipped)
# with its local per-client limit, and the same with `--redis-url` pointing
# at a private redis-server, driven by wrk from one client address in
# interleaved rounds. Also counts Redis round trips per 1,000 requests
# (foobar_rate_limit_redis_duration_seconds_count over the requests).
#
# The limit is set above what one client reaches (RATE, default 1,000,000
# r/s), so that no request is refused and only the limiter's own cost is
# measured; the lease is then 10% of RATE.
#
# Run from anywhere:  foobar-lb/bench/shared_limit.sh
# Knobs (environment): DURATION=10 (s per run)  ROUNDS=3  CONNS=64  WORKERS=1
#                      RATE=1000000  PROFILE=release
#                      LB_BIN=path (a built lb binary; skips the build)
# Everything listens on 127.0.0.1, on free ports; all processes and files
# are removed on exit.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WORKERS=${WORKERS:-1}
RATE=${RATE:-1000000}
PROFILE=${PROFILE:-release}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

. "$(dirname "$0")/common.sh"
install_missing nginx:nginx wrk:wrk redis-server:redis-server openssl:openssl

if [ -z "${LB_BIN:-}" ]; then
    echo "building lb ($PROFILE)..." >&2
    cargo build --profile "$PROFILE" -q --manifest-path "$ROOT/Cargo.toml" -p foobar-examples --bin lb >&2
    TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
    case "$PROFILE" in dev) LB_BIN="$TARGET_DIR/debug/lb" ;; *) LB_BIN="$TARGET_DIR/$PROFILE/lb" ;; esac
fi

start_workdir shared-limit

# A CA; the front's and the backend's certificates from it.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign" \
    -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
leaf() { # name subject-alt-names
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -subj "/CN=$1" -keyout "$WORK/$1.key" -out "$WORK/$1.csr" 2>/dev/null
    printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2" > "$WORK/$1.ext"
    openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
        -CAcreateserial -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2>/dev/null
}
leaf front "DNS:localhost,IP:127.0.0.1"
leaf backend "DNS:backend.test,IP:127.0.0.1"

BACKEND=$(free_port)
mkdir -p "$WORK/backend"
cat > "$WORK/backend/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend/nginx.pid;
error_log $WORK/backend/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$BACKEND ssl backlog=4096;
        ssl_certificate $WORK/backend.pem;
        ssl_certificate_key $WORK/backend.key;
        location / { return 200 "ok\n"; }
    }
}
CONF
nginx -p "$WORK/backend" -c "$WORK/backend/nginx.conf" &
PIDS+=($!)

REDIS=$(free_port)
mkdir -p "$WORK/redis"
redis-server --port "$REDIS" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
    --dir "$WORK/redis" --logfile "$WORK/redis.log" &
PIDS+=($!)

declare -A PORT ADMIN
start_lb() { # name extra-args...
    local name=$1; shift
    PORT[$name]=$(free_port); ADMIN[$name]=$(free_port)
    RUST_LOG=error "$LB_BIN" --workers "$WORKERS" \
        --listen "127.0.0.1:${PORT[$name]}" --admin "127.0.0.1:${ADMIN[$name]}" \
        --cert "$WORK/front.pem" --key "$WORK/front.key" \
        --rate "$RATE" --burst "$RATE" --max-connections 100000 --max-per-client 100000 \
        --upstream-ca "$WORK/ca.pem" --backend "https://127.0.0.1:$BACKEND" \
        "$@" >"$WORK/$name.log" 2>&1 &
    PIDS+=($!)
}
start_lb local
start_lb redis --redis-url "redis://127.0.0.1:$REDIS/"
for port in "$BACKEND" "$REDIS" "${PORT[local]}" "${ADMIN[local]}" "${PORT[redis]}" "${ADMIN[redis]}"; do
    wait_port "$port"
done

metric() { # admin-port name [label=value...]: the sum of the samples with those labels
    local port=$1; shift
    curl -s "http://127.0.0.1:$port/metrics" | awk -v want="$*" '
        BEGIN { n = split(want, w, " ") }
        $1 == w[1] || index($1, w[1] "{") == 1 {
            ok = 1
            for (i = 2; i <= n; i++) if (index($1, w[i]) == 0) ok = 0
            if (ok) s += $NF
        }
        END { printf "%d\n", s }'
}
run() { # name: req/s
    local out
    out=$(wrk -t1 -c"$CONNS" -d"${DURATION}s" "https://127.0.0.1:${PORT[$1]}/" 2>&1)
    if ! grep -q '^Requests/sec' <<<"$out" || grep -q 'Non-2xx' <<<"$out"; then
        echo "wrk against $1 failed or was refused:" >&2; echo "$out" >&2; return 1
    fi
    awk '/^Requests\/sec/ { printf "%d\n", $2 }' <<<"$out"
}

echo "running: ${ROUNDS} rounds, wrk ${DURATION}s at ${CONNS} connections, ${WORKERS} worker(s), limit ${RATE} r/s" >&2
# Warm both (TLS sessions, upstream connections, the first lease).
DURATION=2 run local >/dev/null; DURATION=2 run redis >/dev/null
LOCAL=(); SHARED=(); RATIOS=()
for round in $(seq 1 "$ROUNDS"); do
    l=$(run local); r=$(run redis)
    LOCAL+=("$l"); SHARED+=("$r")
    RATIOS+=("$(awk -v a="$r" -v b="$l" 'BEGIN { printf "%.3f", a / b }')")
    echo "round $round: local $l req/s, redis $r req/s" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
requests=$(metric "${ADMIN[redis]}" foobar_rate_limit_decisions_total)
calls=$(metric "${ADMIN[redis]}" foobar_rate_limit_redis_duration_seconds_count)
fallbacks=$(metric "${ADMIN[redis]}" foobar_rate_limit_decisions_total 'source="fallback"')
printf '| limiter | req/s (median) |\n|---|---|\n| local | %s |\n| Redis (leases) | %s |\n' "$(median "${LOCAL[@]}")" "$(median "${SHARED[@]}")"
echo "Redis / local: $(median "${RATIOS[@]}") (median of per-round ratios)"
awk -v c="$calls" -v n="$requests" 'BEGIN { printf "Redis round trips: %d for %d requests (%.3f per 1,000)\n", c, n, n ? 1000 * c / n : 0 }'
echo "decisions by the fallback: ${fallbacks:-0}"
