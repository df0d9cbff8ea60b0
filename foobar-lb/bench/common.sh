# Shared by the benchmark scripts of this folder: source it, never run it.

# Installs the Debian packages of the commands that are missing; arguments
# are `command:package` pairs.
install_missing() {
    local need=() pair
    for pair in "$@"; do
        command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
    done
    ((${#need[@]})) || return 0
    echo "installing ${need[*]}" >&2
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >&2
}

# A temporary directory in WORK, and PIDS, the processes started: all are
# killed and the directory removed when the script exits.
start_workdir() { # name
    WORK=$(mktemp -d "/tmp/foobar-$1.XXXXXX")
    PIDS=()
    trap cleanup EXIT INT TERM
}
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$WORK"
}

# A free TCP port on 127.0.0.1 (bound then released by the kernel's choice).
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until something listens on 127.0.0.1:port, trying every 50 ms
# (200 times unless told); shows the logs in WORK when nothing does.
wait_port() { # port [tries]
    for _ in $(seq 1 "${2:-200}"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.05
    done
    echo "nothing listening on port $1; logs:" >&2
    tail -n 5 "$WORK"/*.log "$WORK"/*/error.log >&2 2>/dev/null || true
    return 1
}

# Certificates in WORK: a self-signed one for the terminating front ends
# (cert.pem, key.pem, haproxy.pem); a CA (ca.pem), the backends'
# certificate (backend.pem) and the balancers' client certificate
# (client.pem, client-haproxy.pem) for TLS to the backends.
bench_certificates() {
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=localhost" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
    cat "$WORK/cert.pem" "$WORK/key.pem" > "$WORK/haproxy.pem"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
        -subj "/CN=bench CA" -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign" \
        -keyout "$WORK/ca.key" -out "$WORK/ca.pem" 2>/dev/null
    leaf() { # name subject-alt-names extended-key-usage
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=$1" -keyout "$WORK/$1.key" -out "$WORK/$1.csr" 2>/dev/null
        printf 'subjectAltName=%s\nextendedKeyUsage=%s\n' "$2" "$3" > "$WORK/$1.ext"
        openssl x509 -req -in "$WORK/$1.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
            -CAcreateserial -days 2 -extfile "$WORK/$1.ext" -out "$WORK/$1.pem" 2>/dev/null
    }
    leaf backend "DNS:backend.test,IP:127.0.0.1" serverAuth
    leaf client "DNS:lb.test" clientAuth
    cat "$WORK/client.pem" "$WORK/client.key" > "$WORK/client-haproxy.pem"
}

# Two backends: nginx, one worker each, `return 200`, plain and with TLS
# that requires the balancers' client certificate; their ports in
# BACKEND_PORTS and BACKEND_TLS_PORTS.
start_backends() {
    BACKEND_PORTS=(); BACKEND_TLS_PORTS=()
    for i in 1 2; do
        port=$(free_port); tls_port=$(free_port)
        BACKEND_PORTS+=("$port"); BACKEND_TLS_PORTS+=("$tls_port")
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
    server {
        listen 127.0.0.1:$tls_port ssl backlog=4096;
        ssl_certificate $WORK/backend.pem;
        ssl_certificate_key $WORK/backend.key;
        ssl_client_certificate $WORK/ca.pem;
        ssl_verify_client on;
        location / { return 200 "ok\n"; }
    }
}
CONF
        nginx -p "$WORK/backend$i" -c "$WORK/backend$i/nginx.conf" &
        PIDS+=($!)
    done
}
