#!/usr/bin/env bash
# Side-by-side benchmark of foobar's lb example, HAProxy and nginx, each
# balancing round robin over the same two nginx backends, driven by wrk over
# plain HTTP and with TLS termination. All three send the backends the same
# forwarding headers (those foobar's proxy adds by default). Prints req/s,
# p50, p99, CPU per request and the kernel's share of it (medians over
# interleaved rounds), and foobar's ratio to each (the median of the
# per-round ratios).
#
# Run from anywhere:  foobar-lb/bench/run.sh
# Knobs (environment): DURATION=10 (s per run)  ROUNDS=3  CONNS="64 256"
#                      MODES="http tls"
#                      WORKERS=1 (foobar workers; HAProxy and nginx get 1 thread)
#                      FOOBAR_ARGS= (more lb-bench flags)
# Runs much shorter than 10 s let the opening burst of TLS handshakes (one
# per connection, all at once) dominate p99 at 256 connections.
# Everything listens on 127.0.0.1, on free high ports; all processes and
# files are removed on exit.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"64 256"}
MODES=${MODES:-"http tls"}
WORKERS=${WORKERS:-1}
FOOBAR_ARGS=${FOOBAR_ARGS:-}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

need=()
command -v haproxy >/dev/null || need+=(haproxy)
command -v nginx >/dev/null || need+=(nginx)
command -v wrk >/dev/null || need+=(wrk)
command -v openssl >/dev/null || need+=(openssl)
if ((${#need[@]})); then
    echo "installing ${need[*]}" >&2
    SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
    $SUDO apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi

echo "building the lb example (release)..." >&2
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p foobar-examples --bin lb-bench >&2
LB_BIN="$ROOT/target/release/lb-bench"

WORK=$(mktemp -d /tmp/foobar-lb-bench.XXXXXX)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# A free TCP port on 127.0.0.1 (bound then released by the kernel's choice).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_port() {
    for _ in $(seq 1 200); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on port $1; logs:" >&2
    tail -n 5 "$WORK"/*.log "$WORK"/*/error.log >&2 2>/dev/null || true
    return 1
}

# TLS certificate for the terminating front ends.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"

# Two backends: nginx, one worker each, `return 200`.
BACKEND_PORTS=()
for i in 1 2; do
    port=$(free_port)
    BACKEND_PORTS+=("$port")
    mkdir -p "$WORK/backend$i"
    cat > "$WORK/backend$i/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/backend$i/nginx.pid;
error_log $WORK/backend$i/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$port reuseport backlog=4096;
        location / { return 200 "ok\n"; }
    }
}
CONF
    nginx -p "$WORK/backend$i" -c "$WORK/backend$i/nginx.conf" &
    PIDS+=($!)
done

FOOBAR_HTTP=$(free_port); FOOBAR_TLS=$(free_port)
HAPROXY_HTTP=$(free_port); HAPROXY_TLS=$(free_port)
NGINX_HTTP=$(free_port); NGINX_TLS=$(free_port)

# shellcheck disable=SC2086 # FOOBAR_ARGS is a list of flags
RUST_LOG=error "$LB_BIN" --workers "$WORKERS" $FOOBAR_ARGS \
    --listen "127.0.0.1:$FOOBAR_HTTP" --tls-listen "127.0.0.1:$FOOBAR_TLS" \
    --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --backend "http://127.0.0.1:${BACKEND_PORTS[0]}" --backend "http://127.0.0.1:${BACKEND_PORTS[1]}" &
PIDS+=($!)
FOOBAR_PID=$!

# HAProxy rules for the forwarding headers foobar's proxy adds by default,
# beyond X-Forwarded-For (`option forwardfor`) and X-Forwarded-Proto (set
# per frontend): X-Forwarded-Host, Forwarded, Via, and X-Request-Id when the
# client sent none.
haproxy_forwarding() {
    cat <<RULES
    http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found }
    http-request add-header Forwarded "for=%[src];proto=$1;host=\\"%[req.hdr(host)]\\""
    http-request add-header Via "1.1 foobar"
    http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
RULES
}

cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 4000
    tune.ssl.default-dh-param 2048
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    http-reuse always
    option http-keep-alive
    # The same request reaches the backends from all three balancers: the
    # headers foobar's proxy adds by default are added here too.
    option forwardfor
    unique-id-format %{+X}o%pid%Ts%rt
frontend plain
    bind 127.0.0.1:$HAPROXY_HTTP
    http-request set-header X-Forwarded-Proto http
$(haproxy_forwarding http)
    default_backend web
frontend tls
    bind 127.0.0.1:$HAPROXY_TLS ssl crt $WORK/haproxy.pem alpn http/1.1
    http-request set-header X-Forwarded-Proto https
$(haproxy_forwarding https)
    default_backend web
backend web
    balance roundrobin
    server b1 127.0.0.1:${BACKEND_PORTS[0]}
    server b2 127.0.0.1:${BACKEND_PORTS[1]}
CONF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

mkdir -p "$WORK/nginx-lb"
cat > "$WORK/nginx-lb/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-lb/nginx.pid;
error_log $WORK/nginx-lb/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    keepalive_requests 1000000;
    map \$http_x_request_id \$forwarded_request_id {
        default \$http_x_request_id;
        "" \$request_id;
    }
    upstream web {
        server 127.0.0.1:${BACKEND_PORTS[0]};
        server 127.0.0.1:${BACKEND_PORTS[1]};
        keepalive 512;
    }
    server {
        listen 127.0.0.1:$NGINX_HTTP backlog=4096;
        listen 127.0.0.1:$NGINX_TLS ssl backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://web;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            # The headers foobar's proxy adds by default, as for HAProxy.
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$http_host;
            proxy_set_header Forwarded "for=\$remote_addr;proto=\$scheme;host=\\"\$http_host\\"";
            proxy_set_header Via "1.1 foobar";
            proxy_set_header X-Request-Id \$forwarded_request_id;
        }
    }
}
CONF
nginx -p "$WORK/nginx-lb" -c "$WORK/nginx-lb/nginx.conf" &
PIDS+=($!)
NGINX_MASTER_PID=$!

for port in "${BACKEND_PORTS[@]}" $FOOBAR_HTTP $FOOBAR_TLS $HAPROXY_HTTP $HAPROXY_TLS $NGINX_HTTP $NGINX_TLS; do
    wait_port "$port"
done
NGINX_PID=$(pgrep -P "$NGINX_MASTER_PID" | head -n1)
for url in "http://127.0.0.1:$FOOBAR_HTTP/" "http://127.0.0.1:$HAPROXY_HTTP/" "http://127.0.0.1:$NGINX_HTTP/"; do
    curl -sf -o /dev/null "$url" 2>/dev/null || { echo "no answer from $url" >&2; exit 1; }
done

# wrk output to "req/s p50_ms p99_ms".
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}
# CPU time a process has used, in clock ticks: "user system".
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# Runs wrk; prints "req/s p50_ms p99_ms cpu_us_per_request kernel_percent"
# (CPU of the balancer process only: the less, the more room on a shared
# machine; the kernel's share of it is mostly the socket calls).
run_wrk() {
    local url=$1 conns=$2 pid=$3 out user0 sys0 user1 sys1
    read -r user0 sys0 < <(cpu_ticks "$pid")
    out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url" 2>&1)
    read -r user1 sys1 < <(cpu_ticks "$pid")
    local rps p50 p99 errors total cpu
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
    total=$(awk '/requests in/ {print $1}' <<<"$out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    [ -n "$errors" ] && echo "  warning ($url c$conns): $errors" >&2
    cpu=$(awk -v u=$((user1 - user0)) -v s=$((sys1 - sys0)) -v us="$TICK_US" -v n="${total:-0}" 'BEGIN {
        if (n > 0) printf "%.1f", (u + s) * us / n; else printf "0";
        if (u + s > 0) printf " %.0f", 100 * s / (u + s); else printf " 0" }')
    echo "${rps:-0} $(to_ms "${p50:-0ms}") $(to_ms "${p99:-0ms}") $cpu"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RESULTS
TARGETS=(foobar haproxy nginx)
declare -A URL_HTTP=([foobar]="http://127.0.0.1:$FOOBAR_HTTP/" [haproxy]="http://127.0.0.1:$HAPROXY_HTTP/" [nginx]="http://127.0.0.1:$NGINX_HTTP/")
declare -A PID_OF=([foobar]=$FOOBAR_PID [haproxy]=$HAPROXY_PID [nginx]=$NGINX_PID)
declare -A URL_TLS=([foobar]="https://127.0.0.1:$FOOBAR_TLS/" [haproxy]="https://127.0.0.1:$HAPROXY_TLS/" [nginx]="https://127.0.0.1:$NGINX_TLS/")

echo "running: ${ROUNDS} rounds x ${DURATION}s, connections: ${CONNS}, foobar workers: ${WORKERS}" >&2
for round in $(seq 1 "$ROUNDS"); do
    for conns in $CONNS; do
        for mode in $MODES; do
            # Each round starts with another target, so none always runs
            # first (right after a switch of mode or connection count).
            for i in "${!TARGETS[@]}"; do
                target=${TARGETS[$(((i + round) % ${#TARGETS[@]}))]}
                if [ "$mode" = http ]; then url=${URL_HTTP[$target]}; else url=${URL_TLS[$target]}; fi
                result=$(run_wrk "$url" "$conns" "${PID_OF[$target]}")
                RESULTS["$target,$mode,$conns,$round"]=$result
                echo "  round $round $mode c$conns $target: $result" >&2
            done
        done
    done
done

field() { # target mode conns round field(1=rps 2=p50 3=p99 4=cpu 5=kernel%) -> value
    awk -v f="$5" '{print $f}' <<<"${RESULTS["$1,$2,$3,$4"]}"
}
stat() { # target mode conns field -> median over rounds
    for round in $(seq 1 "$ROUNDS"); do
        field "$1" "$2" "$3" "$round" "$4"
    done | median
}
# The machine's speed drifts over minutes: a ratio is taken within each
# round, where the targets ran back to back, and the median of those is shown.
ratio() { # target mode conns field -> median over rounds of foobar / target
    for round in $(seq 1 "$ROUNDS"); do
        local mine theirs
        mine=$(field foobar "$2" "$3" "$round" "$4")
        theirs=$(field "$1" "$2" "$3" "$round" "$4")
        awk -v a="$mine" -v b="$theirs" 'BEGIN { if (b > 0) printf "%.4f\n", a / b; else print 0 }'
    done | median | awk '{printf "%.2f", $1}'
}

printf '\n| mode | conns | target | req/s | p50 ms | p99 ms | CPU µs/req | kernel %% | foobar req/s ratio | foobar p99 ratio | foobar CPU/req ratio |\n'
printf '|---|---|---|---|---|---|---|---|---|---|---|\n'
for conns in $CONNS; do
    for mode in $MODES; do
        for target in "${TARGETS[@]}"; do
            rps=$(stat "$target" "$mode" "$conns" 1)
            p50=$(stat "$target" "$mode" "$conns" 2)
            p99=$(stat "$target" "$mode" "$conns" 3)
            cpu=$(stat "$target" "$mode" "$conns" 4)
            kernel=$(stat "$target" "$mode" "$conns" 5)
            if [ "$target" = foobar ]; then r1="1.00"; r2="1.00"; r3="1.00"; else
                r1=$(ratio "$target" "$mode" "$conns" 1); r2=$(ratio "$target" "$mode" "$conns" 3)
                r3=$(ratio "$target" "$mode" "$conns" 4); fi
            printf '| %s | %s | %s | %.0f | %s | %s | %s | %s | %s | %s | %s |\n' "$mode" "$conns" "$target" "$rps" "$p50" "$p99" "$cpu" "$kernel" "$r1" "$r2" "$r3"
        done
    done
done
echo "(values: medians over rounds; ratios: foobar / other, the median of the per-round ratios;"
echo " req/s above 1, p99 and CPU per request below 1 favour foobar)"
