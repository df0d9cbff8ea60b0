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
