#!/usr/bin/env bash
# Starts a throwaway redis-server for tests: loopback only, on a free port found by
# trying (never 6379), persistence off, in a temporary directory removed afterwards.
#
#   tests/redis.sh run [--] CMD [ARG...]  start a server, run CMD with its address in
#                                         the environment, stop it; exits with CMD's status
#   tests/redis.sh start DIR              start a server and return (a CTest fixture
#                                         setup, or by hand); DIR/env holds the variables
#                                         below as `export` lines, for `source`
#   tests/redis.sh stop DIR               stop the server that `start DIR` started
#
# The variables: NKC_REDIS_URL (redis://127.0.0.1:PORT), NKC_REDIS_HOST, NKC_REDIS_PORT,
# NKC_REDIS_SOCKET (its unix socket, for unix:// URLs), NKC_REDIS_PID (to stop, pause
# or kill it mid-test) and NKC_REDIS_DIR (its directory; redis.log is there). The server
# allows DEBUG from loopback (DEBUG SLEEP makes a slow server). REDIS_SERVER overrides
# the server binary.
set -euo pipefail

redis_server=${REDIS_SERVER:-redis-server}
first_port=20000 # below Linux's ephemeral range (32768+), where clients' ports come from
port_span=12000
tries=20

die() { echo "redis.sh: $*" >&2; exit 2; }

# Succeeds when a server answers PING on 127.0.0.1:$1.
answers_ping() {
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
  printf 'PING\r\n' >&3
  IFS= read -r -t 2 reply <&3 || reply=
  exec 3>&-
  [[ $reply == "+PONG"* ]]
}

port_in_use() { { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null && exec 3>&-; }

# start_server DIR: starts redis-server in DIR on a free port, waits until it answers,
# and writes DIR/env and DIR/pid. The server's stdin and stdout are not ours, so a
# caller waiting for our output (CTest) does not wait for the server too.
start_server() {
  local dir=$1 port pid attempt waited
  command -v "$redis_server" >/dev/null || die "$redis_server not found (run .ci/setup)"
  for ((attempt = 0; attempt < tries; attempt++)); do
    port=$((first_port + (RANDOM * 32768 + RANDOM) % port_span))
    if [[ $port == 6379 ]] || port_in_use "$port"; then
      continue
    fi
    "$redis_server" --port "$port" --bind 127.0.0.1 --dir "$dir" \
      --unixsocket "$dir/redis.sock" --unixsocketperm 700 \
      --save "" --appendonly no --daemonize no --enable-debug-command local \
      </dev/null >>"$dir/redis.log" 2>&1 &
    pid=$!
    for ((waited = 0; waited < 100; waited++)); do # 10 s
      kill -0 "$pid" 2>/dev/null || break          # exited: the port was taken
      if answers_ping "$port"; then
        echo "$pid" >"$dir/pid"
        cat >"$dir/env" <<EOF
export NKC_REDIS_HOST=127.0.0.1
export NKC_REDIS_PORT=$port
export NKC_REDIS_URL=redis://127.0.0.1:$port
export NKC_REDIS_SOCKET=$dir/redis.sock
export NKC_REDIS_PID=$pid
export NKC_REDIS_DIR=$dir
EOF
        return 0
      fi
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  tail -n 20 "$dir/redis.log" >&2 2>/dev/null || true
  die "could not start $redis_server on a free loopback port after $tries tries"
}

# stop_server DIR: stops the server of DIR (TERM, then KILL after 5 s) and removes the
# files start_server wrote there.
stop_server() {
  local dir=$1 pid waited
  if [[ -f $dir/pid ]]; then
    pid=$(<"$dir/pid")
    kill -TERM "$pid" 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true # a test may have left it stopped (SIGSTOP)
    for ((waited = 0; waited < 50; waited++)); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/pid" "$dir/env" "$dir/redis.log" "$dir/redis.sock" "$dir/owner"
}

case ${1:-} in
run)
  shift
  [[ ${1:-} == -- ]] && shift
  (($#)) || die "usage: $0 run [--] CMD [ARG...]"
  # Directories of runs whose runner was killed (a CTest timeout sends SIGKILL). The
  # owner file names the runner, not the server: a test may kill and restart its
  # server, and its directory must survive the moment between the two.
  for stale in "${TMPDIR:-/tmp}"/nkc-redis.*/owner; do
    if [[ -f $stale ]] && ! kill -0 "$(<"$stale")" 2>/dev/null; then
      dead=${stale%/owner}
      if [[ -f $dead/pid ]] && [[ $(cat "/proc/$(<"$dead/pid")/comm" 2>/dev/null) == redis-server* ]]; then
        kill -KILL "$(<"$dead/pid")" 2>/dev/null || true # the orphaned server
      fi
      rm -rf "$dead"
    fi
  done
  dir=$(mktemp -d "${TMPDIR:-/tmp}/nkc-redis.XXXXXX")
  echo "$$" >"$dir/owner"
  trap 'stop_server "$dir"; rmdir "$dir" 2>/dev/null || true' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  start_server "$dir"
  # shellcheck source=/dev/null
  source "$dir/env"
  status=0
  "$@" || status=$?
  exit "$status"
  ;;
start)
  [[ -n ${2:-} ]] || die "usage: $0 start DIR"
  mkdir -p "$2"
  start_server "$(cd "$2" && pwd)"
  cat "$2/env"
  ;;
stop)
  [[ -n ${2:-} ]] || die "usage: $0 stop DIR"
  stop_server "$2"
  ;;
*)
  die "usage: $0 run [--] CMD [ARG...] | start DIR | stop DIR"
  ;;
esac
