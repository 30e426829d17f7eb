# Helpers shared by the benchmark scripts (sourced, not run). The caller defines `die`.

# free_port: a loopback port nobody listens on, below the ephemeral range (32768+) that the
# benchmark's own client connections use.
free_port() {
    local port i
    for ((i = 0; i < 200; i++)); do
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    die "no free loopback port found"
}

# wait_listening PID PORT: until PORT accepts connections (10 s), or PID exits.
wait_listening() {
    local pid="$1" port="$2" i
    for ((i = 0; i < 200; i++)); do
        kill -0 "$pid" 2>/dev/null || return 1
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}
