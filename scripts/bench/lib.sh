# Shared helpers of pcapot's benchmark scripts (sourced by modbus.sh and capture.sh).
# The caller has `set -euo pipefail`, is in the repository root, and sets OUT (the
# results folder) before calling build_tools.

log() { printf '== %s %s\n' "$(date +%T)" "$*" >&2; }
die() {
	printf '%s: %s\n' "${0##*/}" "$*" >&2
	exit 1
}

require_root() {
	[ "$(id -u)" = 0 ] || die "run as root (packet capture and network namespaces need it)"
}

# need_debs PKG... installs the Debian packages that are missing (as the test script does).
need_debs() {
	local missing=() p
	for p in "$@"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
	done
	if [ ${#missing[@]} -gt 0 ]; then
		[ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (install them, or run as root)"
		log "installing Debian packages: ${missing[*]}"
		DEBIAN_FRONTEND=noninteractive apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
}

# build_tools NAME... builds the sensor and the named scripts/bench programs into $OUT/bin.
# The sensor comes from the working tree, or from commit $SENSOR_REV if set (a clean
# `git archive` of it: other work in progress in the tree does not get measured).
build_tools() {
	mkdir -p "$OUT/bin"
	if [ -n "${SENSOR_REV:-}" ]; then
		local src="$OUT/src"
		log "building pcapot from $SENSOR_REV ($(git rev-parse --short "$SENSOR_REV")) and ${*} (CGO_ENABLED=0)"
		rm -rf "$src" && mkdir -p "$src"
		git archive "$SENSOR_REV" | tar -x -C "$src"
		(cd "$src" && CGO_ENABLED=0 go build -o "$OUT/bin/pcapot" ./sensor/cmd/pcapot)
		rm -rf "$src"
	else
		log "building pcapot from the working tree and ${*} (CGO_ENABLED=0)"
		CGO_ENABLED=0 go build -o "$OUT/bin/pcapot" ./sensor/cmd/pcapot
	fi
	local t
	for t in "$@"; do
		CGO_ENABLED=0 go build -o "$OUT/bin/$t" "./scripts/bench/$t"
	done
}

# machine_info prints the facts every result needs, as "key: value" lines.
machine_info() {
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	if [ -n "${SENSOR_REV:-}" ]; then
		echo "sensor: built from commit $(git rev-parse --short "$SENSOR_REV") ($SENSOR_REV)"
	else
		echo "sensor: built from the working tree at $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- 2>/dev/null || echo ' with uncommitted changes')"
	fi
	echo "nproc: $(nproc)"
	echo "kernel: $(uname -r)"
	echo "cpu: $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)"
	echo "mem: $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
	echo "go: $(go env GOVERSION)"
	echo "loadavg at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "ulimit -n: $(ulimit -n)"
}

# free_port prints a TCP port that is free on 127.0.0.1 right now.
free_port() {
	local p
	for _ in $(seq 1 100); do
		p=$((20000 + RANDOM % 12000)) # below the ephemeral range
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}

# start_sensor OUTFILE ERRFILE [NETNS] -- ARGS... starts `pcapot run ARGS` (inside
# network namespace NETNS if given), waits until it prints "storing:" and sets
# SENSOR_PID, SENSOR_NS and SENSOR_METRICS (the /metrics URL of its management API,
# which is put on a free loopback port unless ARGS name --api). `ip netns exec` execs
# the sensor, so the pid is the sensor's.
start_sensor() {
	local outf=$1 errf=$2 ns=$3 a api=(--api 127.0.0.1:0)
	shift 4
	for a in "$@"; do [ "$a" = --api ] && api=(); done
	if [ -n "$ns" ]; then
		ip netns exec "$ns" "$OUT/bin/pcapot" run "$@" "${api[@]}" >"$outf" 2>"$errf" &
	else
		"$OUT/bin/pcapot" run "$@" "${api[@]}" >"$outf" 2>"$errf" &
	fi
	SENSOR_PID=$! SENSOR_NS=$ns
	for _ in $(seq 1 200); do
		if grep -q "storing:" "$outf" 2>/dev/null; then
			SENSOR_METRICS=$(awk '$1 == "api:" {print $3}' "$outf")
			return 0
		fi
		kill -0 "$SENSOR_PID" 2>/dev/null || break
		sleep 0.1
	done
	cat "$outf" "$errf" >&2
	die "the sensor did not start"
}

# metric NAME prints the value of an unlabelled metric of the last started sensor
# (from its /metrics, inside its namespace), or -1 if it cannot be read.
metric() {
	local body
	if [ -n "$SENSOR_NS" ]; then
		body=$(ip netns exec "$SENSOR_NS" curl -fsS --max-time 5 "$SENSOR_METRICS" 2>/dev/null) || body=
	else
		body=$(curl -fsS --max-time 5 "$SENSOR_METRICS" 2>/dev/null) || body=
	fi
	awk -v n="$1" 'BEGIN { v = -1 } $1 == n { v = $2 + 0 } END { printf "%.0f\n", v }' <<<"$body"
}

# stop_pid PID [SECONDS]: SIGTERM, then wait (SIGKILL after SECONDS, default 120).
stop_pid() {
	local pid=$1 limit=${2:-120} i
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < limit * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid did not stop within ${limit}s: SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null || true
}

# cpu_ms PID prints the process's user+system CPU time in milliseconds (all threads).
cpu_ms() {
	local tck
	tck=$(getconf CLK_TCK)
	awk -v t="$tck" '{ sub(/.*\) /, ""); print int(($12 + $13) * 1000 / t) }' "/proc/$1/stat"
}

# rss_kib PID prints VmRSS in KiB.
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# count_sessions DATA prints how many session bundles (<uuid>.json) the folder store
# holds, without parsing them (cheap enough to poll with 10k sessions).
count_sessions() {
	find "$1" -path "$1/spool" -prune -o -name '????????-????-????-????-????????????.json' -print 2>/dev/null | wc -l
}

# wait_sessions DATA WANT SECONDS waits until the store holds WANT sessions and prints
# how many it holds.
wait_sessions() {
	local data=$1 want=$2 limit=$3 n=0 i
	for ((i = 0; i < limit * 4; i++)); do
		n=$(count_sessions "$data")
		[ "$n" -ge "$want" ] && break
		sleep 0.25
	done
	echo "$n"
}

# ratio A B prints A/B with 3 decimals (or n/a).
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else printf "n/a" }'; }
