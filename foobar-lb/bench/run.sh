#!/usr/bin/env bash
# Side-by-side benchmark of foobar, HAProxy and nginx, each balancing round
# robin over the same two nginx backends, in four modes:
#
#   http  plain HTTP in and out: foobar's lb-bench (the proxy alone)
#   tls   TLS termination in front, plain HTTP to the backends: lb-bench
#   e2e   the `lb` example as shipped: TLS in front, TLS with a client
#         certificate to the backends (verified against their CA), the
#         connection firewall, connection limits, a per-client rate limit,
#         request metrics, active health checks; HAProxy and nginx set up to
#         do the same (allow list, connection and request-rate tracking,
#         `ssl verify required` with a client certificate, health checks
#         where they have them)
#   h2    HTTP/2 clients (h2load, TLS with ALPN h2) to plain HTTP/1.1
#         backends: lb-bench
#
# All three send the backends the same forwarding headers (those foobar's
# proxy adds by default). wrk drives http, tls and e2e; h2load drives h2.
# Prints req/s, p50, p99 (h2: mean and max request time), CPU per request
# and the kernel's share of it (medians over interleaved rounds), and
# foobar's ratio to each peer (the median of the per-round ratios).
#
# Run from anywhere:  foobar-lb/bench/run.sh
# Knobs (environment): DURATION=10 (s per run)  ROUNDS=3  CONNS="64 256"
#                      MODES="http tls e2e h2"
#                      H2_REQUESTS=200000 H2_CONNS=16 H2_STREAMS=10
#                      WORKERS=1 (foobar workers; HAProxy and nginx get 1 thread)
#                      ATTACKS="headers body read range" (slow clients,
#                      below; default: none)
#                      E2E_FOOBAR=lb (the lb example as shipped) or bench
#                      (lb-bench with the same layers, to tell the example's
#                      set-up from the proxy's own cost)
# With ATTACKS, each e2e listener (the lb example, HAProxy, nginx, as set up
# above, per-client limits far above the attack) is then measured with wrk
# (64 connections) alone and again while slowhttptest holds 1,000
# connections from the same address in one of its modes: slow headers
# (slowloris), slow body (R-U-Dead-Yet), slow read, and range requests; the
# table gives the share of throughput the legitimate clients kept.
# Runs much shorter than 10 s let the opening burst of TLS handshakes (one
# per connection, all at once) dominate p99 at 256 connections.
# Everything listens on 127.0.0.1, on free high ports; all processes and
# files are removed on exit.
set -euo pipefail

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-"64 256"}
MODES=${MODES:-"http tls e2e h2"}
H2_REQUESTS=${H2_REQUESTS:-200000}
H2_CONNS=${H2_CONNS:-16}
H2_STREAMS=${H2_STREAMS:-10}
WORKERS=${WORKERS:-1}
E2E_FOOBAR=${E2E_FOOBAR:-lb}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

. "$(dirname "$0")/common.sh"
pkgs=(haproxy:haproxy nginx:nginx wrk:wrk h2load:nghttp2-client openssl:openssl)
[ -n "${ATTACKS:-}" ] && pkgs+=(slowhttptest:slowhttptest)
install_missing "${pkgs[@]}"

echo "building lb and lb-bench (release)..." >&2
cargo build --release -q --manifest-path "$ROOT/Cargo.toml" -p foobar-examples --bin lb-bench --bin lb >&2
BENCH_BIN="$ROOT/target/release/lb-bench"
LB_BIN="$ROOT/target/release/lb"

start_workdir lb-bench

bench_certificates
start_backends

declare -A PORT
for key in foobar_http foobar_tls foobar_e2e foobar_admin haproxy_http haproxy_tls haproxy_e2e \
    haproxy_h2 nginx_http nginx_tls nginx_e2e nginx_h2; do
    PORT[$key]=$(free_port)
done
PORT[foobar_h2]=${PORT[foobar_tls]}

# foobar: lb-bench for http, tls and h2; the lb example for e2e.
RUST_LOG=error "$BENCH_BIN" --workers "$WORKERS" \
    --listen "127.0.0.1:${PORT[foobar_http]}" --tls-listen "127.0.0.1:${PORT[foobar_tls]}" \
    --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
    --backend "http://127.0.0.1:${BACKEND_PORTS[0]}" --backend "http://127.0.0.1:${BACKEND_PORTS[1]}" \
    >"$WORK/lb-bench.log" 2>&1 &
PIDS+=($!)
FOOBAR_BENCH_PID=$!
printf 'allow 127.0.0.0/8\nallow ::1/128\ndefault deny\n' > "$WORK/firewall.rules"
if [ "$E2E_FOOBAR" = bench ]; then
    RUST_LOG=error "$BENCH_BIN" --workers "$WORKERS" --layers all --health-path /healthz \
        --tls-listen "127.0.0.1:${PORT[foobar_e2e]}" --listen "127.0.0.1:${PORT[foobar_admin]}" \
        --cert "$WORK/cert.pem" --key "$WORK/key.pem" \
        --upstream-ca "$WORK/ca.pem" --client-cert "$WORK/client.pem" --client-key "$WORK/client.key" \
        --backend "https://127.0.0.1:${BACKEND_TLS_PORTS[0]}" --backend "https://127.0.0.1:${BACKEND_TLS_PORTS[1]}" \
        >"$WORK/lb.log" 2>&1 &
else
    RUST_LOG=error "$LB_BIN" --workers "$WORKERS" \
        --listen "127.0.0.1:${PORT[foobar_e2e]}" --admin "127.0.0.1:${PORT[foobar_admin]}" \
        --cert "$WORK/cert.pem" --key "$WORK/key.pem" --rules "$WORK/firewall.rules" \
        --rate 1000000000 --burst 1000000000 --max-connections 100000 --max-per-client 100000 \
        --upstream-ca "$WORK/ca.pem" --client-cert "$WORK/client.pem" --client-key "$WORK/client.key" \
        --backend "https://127.0.0.1:${BACKEND_TLS_PORTS[0]}" --backend "https://127.0.0.1:${BACKEND_TLS_PORTS[1]}" \
        >"$WORK/lb.log" 2>&1 &
fi
PIDS+=($!)
FOOBAR_LB_PID=$!

# HAProxy rules for the forwarding headers foobar's proxy adds by default,
# beyond X-Forwarded-For (`option forwardfor`) and X-Forwarded-Proto (set
# per frontend): X-Forwarded-Host, Forwarded, Via, and X-Request-Id when the
# client sent none.
haproxy_forwarding() {
    cat <<RULES
    http-request set-header X-Forwarded-Proto $1
    http-request set-header X-Forwarded-Host %[req.hdr(host)] if { req.hdr(host) -m found }
    http-request add-header Forwarded "for=%[src];proto=$1;host=\\"%[req.hdr(host)]\\""
    http-request add-header Via "1.1 foobar"
    http-request set-header X-Request-Id %[unique-id] unless { req.hdr(x-request-id) -m found }
RULES
}

cat > "$WORK/haproxy.cfg" <<CONF
global
    nbthread 1
    maxconn 9000
    tune.ssl.default-dh-param 2048
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
    bind 127.0.0.1:${PORT[haproxy_http]}
$(haproxy_forwarding http)
    default_backend web
frontend tls
    bind 127.0.0.1:${PORT[haproxy_tls]} ssl crt $WORK/haproxy.pem alpn http/1.1
$(haproxy_forwarding https)
    default_backend web
frontend h2
    bind 127.0.0.1:${PORT[haproxy_h2]} ssl crt $WORK/haproxy.pem alpn h2,http/1.1
$(haproxy_forwarding https)
    default_backend web
frontend e2e
    bind 127.0.0.1:${PORT[haproxy_e2e]} ssl crt $WORK/haproxy.pem alpn http/1.1
    # The lb example's firewall, connection limits and rate limit.
    tcp-request connection reject unless { src 127.0.0.0/8 ::1/128 }
    tcp-request connection track-sc1 src table per_client
    tcp-request connection reject if { sc1_conn_cur gt 100000 }
    http-request track-sc0 src table per_client
    http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
$(haproxy_forwarding https)
    default_backend web_tls
backend per_client
    stick-table type ip size 100k expire 30s store conn_cur,http_req_rate(1s)
backend web
    balance roundrobin
    server b1 127.0.0.1:${BACKEND_PORTS[0]}
    server b2 127.0.0.1:${BACKEND_PORTS[1]}
backend web_tls
    balance roundrobin
    option httpchk GET /healthz
    default-server ssl verify required ca-file $WORK/ca.pem crt $WORK/client-haproxy.pem sni str(backend.test) verifyhost backend.test check inter 500
    server b1 127.0.0.1:${BACKEND_TLS_PORTS[0]}
    server b2 127.0.0.1:${BACKEND_TLS_PORTS[1]}
CONF
haproxy -f "$WORK/haproxy.cfg" -db >"$WORK/haproxy.log" 2>&1 &
PIDS+=($!)
HAPROXY_PID=$!

nginx_forwarding() {
    cat <<RULES
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
RULES
}

mkdir -p "$WORK/nginx-lb"
cat > "$WORK/nginx-lb/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-lb/nginx.pid;
error_log $WORK/nginx-lb/error.log warn;
events { worker_connections 16384; }
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
    upstream web_tls {
        server 127.0.0.1:${BACKEND_TLS_PORTS[0]};
        server 127.0.0.1:${BACKEND_TLS_PORTS[1]};
        keepalive 512;
    }
    limit_req_zone \$binary_remote_addr zone=per_client:10m rate=1000000r/s;
    limit_conn_zone \$binary_remote_addr zone=client_conns:10m;
    server {
        listen 127.0.0.1:${PORT[nginx_http]} backlog=4096;
        listen 127.0.0.1:${PORT[nginx_tls]} ssl backlog=4096;
        listen 127.0.0.1:${PORT[nginx_h2]} ssl http2 backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        location / {
            proxy_pass http://web;
$(nginx_forwarding)
        }
    }
    server {
        listen 127.0.0.1:${PORT[nginx_e2e]} ssl backlog=4096;
        ssl_certificate $WORK/cert.pem;
        ssl_certificate_key $WORK/key.pem;
        allow 127.0.0.0/8;
        deny all;
        limit_conn client_conns 60000;
        limit_req zone=per_client burst=1000000 nodelay;
        location / {
            proxy_pass https://web_tls;
            proxy_ssl_verify on;
            proxy_ssl_trusted_certificate $WORK/ca.pem;
            proxy_ssl_name backend.test;
            proxy_ssl_server_name on;
            proxy_ssl_certificate $WORK/client.pem;
            proxy_ssl_certificate_key $WORK/client.key;
            proxy_ssl_session_reuse on;
$(nginx_forwarding)
        }
    }
}
CONF
nginx -p "$WORK/nginx-lb" -c "$WORK/nginx-lb/nginx.conf" &
PIDS+=($!)
NGINX_MASTER_PID=$!

for key in "${!PORT[@]}"; do
    [ "$key" = foobar_admin ] || wait_port "${PORT[$key]}"
done
for port in "${BACKEND_PORTS[@]}" "${BACKEND_TLS_PORTS[@]}"; do wait_port "$port"; done
NGINX_PID=$(pgrep -P "$NGINX_MASTER_PID" | head -n1)

TARGETS=(foobar haproxy nginx)
declare -A PID_OF=([haproxy]=$HAPROXY_PID [nginx]=$NGINX_PID)
url() { # target mode
    local port=${PORT[$1_$2]}
    case $2 in http) echo "http://127.0.0.1:$port/" ;; *) echo "https://127.0.0.1:$port/" ;; esac
}
pid_of() { # target mode
    if [ "$1" = foobar ]; then
        if [ "$2" = e2e ]; then echo "$FOOBAR_LB_PID"; else echo "$FOOBAR_BENCH_PID"; fi
    else
        echo "${PID_OF[$1]}"
    fi
}
for target in "${TARGETS[@]}"; do
    for mode in $MODES; do
        # Health checks need a moment to see the TLS backends up.
        for _ in $(seq 1 100); do
            curl -skf -o /dev/null "$(url "$target" "$mode")" && break
            sleep 0.1
        done
        curl -skf -o /dev/null "$(url "$target" "$mode")" || {
            echo "no answer from $target in mode $mode" >&2
            tail -n 5 "$WORK"/*.log >&2
            exit 1
        }
    done
done

# wrk output to "req/s p50_ms p99_ms".
to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}
# CPU time a process (and its threads) has used, in clock ticks: "user system".
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }
TICK_US=$((1000000 / $(getconf CLK_TCK)))

# CPU per request and the kernel's share: "cpu_us kernel_percent".
cpu_per_request() { # ticks_user ticks_system requests
    awk -v u="$1" -v s="$2" -v us="$TICK_US" -v n="$3" 'BEGIN {
        if (n > 0) printf "%.1f", (u + s) * us / n; else printf "0";
        if (u + s > 0) printf " %.0f", 100 * s / (u + s); else printf " 0" }'
}

# Runs wrk (http, tls, e2e) or h2load (h2); prints
# "req/s p50_ms p99_ms cpu_us_per_request kernel_percent" (for h2: the mean
# and the longest request time in place of p50 and p99). CPU is the
# balancer process's only: the less, the more room on a shared machine.
run_load() {
    local mode=$1 url=$2 conns=$3 pid=$4 out user0 sys0 user1 sys1 rps p50 p99 total errors
    read -r user0 sys0 < <(cpu_ticks "$pid")
    if [ "$mode" = h2 ]; then
        out=$(h2load -n "$H2_REQUESTS" -c "$H2_CONNS" -m "$H2_STREAMS" "$url" 2>&1)
        read -r user1 sys1 < <(cpu_ticks "$pid")
        rps=$(awk '/^finished in/ {print $4}' <<<"$out")
        p50=$(to_ms "$(awk '/^time for request:/ {print $6}' <<<"$out")")
        p99=$(to_ms "$(awk '/^time for request:/ {print $5}' <<<"$out")")
        total=$(awk '/^requests:/ {print $8}' <<<"$out")
        errors=$(awk '/^requests:/ && ($10 != 0 || $12 != 0) {print}' <<<"$out")
    else
        out=$(wrk -t1 -c"$conns" -d"${DURATION}s" --latency "$url" 2>&1)
        read -r user1 sys1 < <(cpu_ticks "$pid")
        rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
        p50=$(to_ms "$(awk '$1 == "50%" {print $2}' <<<"$out")")
        p99=$(to_ms "$(awk '$1 == "99%" {print $2}' <<<"$out")")
        total=$(awk '/requests in/ {print $1}' <<<"$out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out" | tr '\n' ' ')
    fi
    [ -n "$errors" ] && echo "  warning ($url c$conns): $errors" >&2
    echo "${rps:-0} $p50 $p99 $(cpu_per_request $((user1 - user0)) $((sys1 - sys0)) "${total:-0}")"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A RESULTS
echo "running: ${ROUNDS} rounds; wrk ${DURATION}s at ${CONNS} connections; h2load ${H2_REQUESTS} requests, ${H2_CONNS}x${H2_STREAMS} streams; foobar workers: ${WORKERS}" >&2
for round in $(seq 1 "$ROUNDS"); do
    for mode in $MODES; do
        conns_list=$CONNS
        [ "$mode" = h2 ] && conns_list=$H2_CONNS
        for conns in $conns_list; do
            # Each round starts with another target, so none always runs
            # first (right after a switch of mode or connection count).
            for i in "${!TARGETS[@]}"; do
                target=${TARGETS[$(((i + round) % ${#TARGETS[@]}))]}
                result=$(run_load "$mode" "$(url "$target" "$mode")" "$conns" "$(pid_of "$target" "$mode")")
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
for mode in $MODES; do
    conns_list=$CONNS
    [ "$mode" = h2 ] && conns_list=$H2_CONNS
    for conns in $conns_list; do
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
echo " req/s above 1, p99 and CPU per request below 1 favour foobar; h2: p50 is the mean"
echo " request time and p99 the longest, from h2load)"

[ -z "${ATTACKS:-}" ] && exit 0

# slowhttptest's arguments per attack: 1,000 connections opened at 200/s,
# each sending (or reading) a little every 10 s.
attack_args() { # attack url
    local common=(-c 1000 -r 200 -i 10 -l $((DURATION + 20)) -p 3 -u "$2")
    case $1 in
        headers) echo -H "${common[@]}" ;;
        body) echo -B -s 8192 "${common[@]}" ;;
        read) echo -X -k 8 -n 10 -w 1 -y 4 -z 1 "${common[@]}" ;;
        range) echo -R -a 5 -b 2000 "${common[@]}" ;;
    esac
}
printf '\n| attack | target | req/s alone | req/s under attack | kept |\n|---|---|---|---|---|\n'
for attack in $ATTACKS; do
    for target in "${TARGETS[@]}"; do
        target_url=$(url "$target" e2e)
        alone=$(run_load e2e "$target_url" 64 "$(pid_of "$target" e2e)" | awk '{print $1}')
        # shellcheck disable=SC2046
        slowhttptest $(attack_args "$attack" "$target_url") >"$WORK/slow-$attack-$target.log" 2>&1 &
        slow_pid=$!
        # The attack's connections open at 200 per second: wait (at most
        # 15 s) until 900 of them are established.
        port=${PORT[${target}_e2e]}
        for _ in $(seq 1 150); do
            [ "$(ss -Htn state established "( dport = :$port )" | wc -l)" -ge 900 ] && break
            sleep 0.1
        done
        attacked=$(run_load e2e "$target_url" 64 "$(pid_of "$target" e2e)" | awk '{print $1}')
        kill "$slow_pid" 2>/dev/null || true
        wait "$slow_pid" 2>/dev/null || true
        printf '| %s | %s | %.0f | %.0f | %s |\n' "$attack" "$target" "$alone" "$attacked" \
            "$(awk -v a="$attacked" -v b="$alone" 'BEGIN { if (b > 0) printf "%.0f %%", 100 * a / b; else print "-" }')"
    done
done
