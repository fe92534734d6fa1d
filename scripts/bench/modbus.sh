#!/usr/bin/env bash
# Modbus/TCP benchmark: the same load client (scripts/bench/modbusload: N connections ×
# M transactions of FC 3 "read 10 holding registers", unit 1) against
#   (a) the pcapot sensor binary, full sensor: capture on lo, one pcap per session,
#       STIX bundle, folder store, ECS event log (Modbus only: --disable
#       s7comm/http/snmp), and
#   (b) python3-pymodbus's own TCP server (pymodbus.server.StartTcpServer with a
#       ModbusSlaveContext of holding registers),
# in the same run, alternating per configuration, all on 127.0.0.1. A second pcapot,
# the same but with its ECS event log off (--events off; the log is on by default and
# writes one NDJSON record per Modbus request), shows what that log costs. It reports
# transactions/s, latency p50/p99 and server CPU per transaction, the ratios
# pcapot/pymodbus, and checks that each pcapot stored one session (pcap + bundle) per
# connection. All three servers run for the whole script: each pcapot's capture
# socket also sees (and rejects in its kernel BPF filter) the other servers' packets.
#
# Usage (as root: the sensor captures):
#   scripts/bench/modbus.sh                 # CONFIGS="1x20000 16x4000 48x1000"
#   CONFIGS="1x5000 16x1000 48x500" OUT=/tmp/mb scripts/bench/modbus.sh
# The sensor runs with its defaults, so connections per configuration must stay below
# its per-address session limit (limits.max_sessions_per_ip: 64); a session counts
# until its pcap is finalized (1 s linger after FIN), so the script pauses 2 s after
# each run (and counts the server's CPU time until then).
# Needs: go, python3-pymodbus (Debian), jq (installed if missing). Traffic: 127.0.0.1 only.
# SENSOR_REV=HEAD (or any commit) builds the sensor from that commit instead of the
# working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

CONFIGS=${CONFIGS:-"1x20000 16x4000 48x1000"}
OUT=${OUT:-$(mktemp -d /tmp/pcapot-bench-modbus.XXXXXX)}
PY=/usr/bin/python3 # Debian's python3 with python3-pymodbus, not a pyenv one in PATH

require_root
need_debs python3-pymodbus jq
"$PY" -c 'import pymodbus, sys; sys.exit(0 if pymodbus.__version__.startswith("3.0.0") else 1)' ||
	die "$PY does not import pymodbus 3.0.0 (Debian python3-pymodbus)"
mkdir -p "$OUT"
build_tools modbusload
machine_info | tee "$OUT/machine.txt" >&2
PYMODBUS_VERSION=$("$PY" -c 'import pymodbus; print(pymodbus.__version__)')

declare -A PORT PID DATA STORED LISTED PCAPS INCOMPLETE
SENSORS="pcapot pcapot-events-off"
SERVERS="pcapot pcapot-events-off pymodbus"
cleanup() {
	local p
	for p in "${PID[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# (a) pcapot, Modbus only, folder store under $OUT: as shipped, and with --events off.
for v in $SENSORS; do
	PORT[$v]=$(free_port)
	DATA[$v]="$OUT/$v-data"
	extra=()
	[ "$v" = pcapot-events-off ] && extra=(--events off)
	start_sensor "$OUT/$v.out" "$OUT/$v.err" "" -- --data "${DATA[$v]}" --listen "127.0.0.1:${PORT[$v]}" \
		--disable s7comm --disable http --disable snmp "${extra[@]}"
	PID[$v]=$SENSOR_PID
done

# (b) pymodbus's own server (the Python program is passed with -c).
read -r -d '' PYMODBUS_SERVER <<'PYEOF' || true
import logging, sys
from pymodbus.server import StartTcpServer
from pymodbus.datastore import ModbusSequentialDataBlock, ModbusSlaveContext, ModbusServerContext
logging.basicConfig(level=logging.WARNING)
port = int(sys.argv[1])
store = ModbusSlaveContext(hr=ModbusSequentialDataBlock(0, [17] * 200))
context = ModbusServerContext(slaves=store, single=True)
StartTcpServer(context=context, address=("127.0.0.1", port), backlog=1024)
PYEOF
PORT[pymodbus]=$(free_port)
"$PY" -c "$PYMODBUS_SERVER" "${PORT[pymodbus]}" >"$OUT/pymodbus.out" 2>"$OUT/pymodbus.err" &
PID[pymodbus]=$!
for _ in $(seq 1 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/${PORT[pymodbus]}") 2>/dev/null && break
	sleep 0.1
done

# load LABEL CONNS TX: one client run against server LABEL; appends a JSON line with
# the server's CPU time to $OUT/results.jsonl: during the run, and until 2 s after it
# (pcapot finalizes a session 1 s after its FIN exchange: pcap, bundle, folder store).
load() {
	local label=$1 conns=$2 tx=$3 c0 c1 c2 line
	local pid=${PID[$label]}
	c0=$(cpu_ms "$pid")
	line=$("$OUT/bin/modbusload" -mode closed -addr "127.0.0.1:${PORT[$label]}" -conns "$conns" -tx "$tx" -label "$label")
	c1=$(cpu_ms "$pid")
	sleep 2
	c2=$(cpu_ms "$pid")
	jq -c --argjson cpu "$((c1 - c0))" --argjson cpu2 "$((c2 - c0))" '. + {server_cpu_ms: $cpu, server_cpu_ms_settled: $cpu2}' <<<"$line" | tee -a "$OUT/results.jsonl" >&2
}

: >"$OUT/results.jsonl"
log "warm-up: 1 connection x 50 transactions on each server"
for v in $SERVERS; do "$OUT/bin/modbusload" -addr "127.0.0.1:${PORT[$v]}" -conns 1 -tx 50 >/dev/null; done
pcapot_conns=1
for cfg in $CONFIGS; do
	n=${cfg%x*} m=${cfg#*x}
	log "$n connections x $m transactions: $SERVERS"
	for v in $SERVERS; do load "$v" "$n" "$m"; done
	pcapot_conns=$((pcapot_conns + n))
done

# One stored session (pcap + bundle) per pcapot connection.
for v in $SENSORS; do
	STORED[$v]=$(wait_sessions "${DATA[$v]}" "$pcapot_conns" 30)
	PCAPS[$v]=$(find "${DATA[$v]}" -path "${DATA[$v]}/spool" -prune -o -name '*.pcap' -print | wc -l)
	stop_pid "${PID[$v]}" 60
	"$OUT/bin/pcapot" sessions list --json --data "${DATA[$v]}" >"$OUT/$v.sessions.jsonl"
	LISTED[$v]=$(wc -l <"$OUT/$v.sessions.jsonl")
	INCOMPLETE[$v]=$(jq -s 'map(select(.possibly_incomplete)) | length' "$OUT/$v.sessions.jsonl")
done
kill "${PID[pymodbus]}" 2>/dev/null || true
events_bytes=$(find "${DATA[pcapot]}" -maxdepth 1 -name 'events.ndjson*' -exec cat {} + | wc -c)

{
	echo "# Modbus/TCP: pcapot (full sensor) vs pymodbus $PYMODBUS_VERSION server, same client, same run"
	echo
	sed 's/^/    /' "$OUT/machine.txt"
	echo
	echo "| conns × tx | server | tx/s | p50 µs | p99 µs | max µs | server CPU µs/tx (during run / incl. 2 s after) | errors |"
	echo "|---|---|---|---|---|---|---|---|"
	jq -r 'def us(c): if .transactions > 0 then (c*1000/.transactions*10|floor/10|tostring) else "n/a" end;
		"| \(.conns) × \(.tx_per_conn) | \(.label) | \(.tps|floor) | \(.lat_p50_us|floor) | \(.lat_p99_us|floor) | \(.lat_max_us|floor) | \(us(.server_cpu_ms)) / \(us(.server_cpu_ms_settled)) | \(.errors) |"' "$OUT/results.jsonl"
	echo
	echo "| conns × tx | tx/s pcapot/pymodbus | p99 pcapot/pymodbus | CPU/tx pcapot/pymodbus | pcapot --events off / pymodbus: tx/s, p99, CPU/tx |"
	echo "|---|---|---|---|---|"
	jq -s -r 'group_by([.conns, .tx_per_conn])[] | (map(select(.label=="pcapot"))[0]) as $a | (map(select(.label=="pymodbus"))[0]) as $b |
		(map(select(.label=="pcapot-events-off"))[0]) as $c |
		def r(x; y): if y > 0 then ((x / y * 1000 | round) / 1000 | tostring) else "n/a" end;
		def cpu(x): x.server_cpu_ms_settled / x.transactions;
		"| \($a.conns) × \($a.tx_per_conn) | \(r($a.tps; $b.tps)) | \(r($a.lat_p99_us; $b.lat_p99_us)) | \(r(cpu($a); cpu($b))) | \(r($c.tps; $b.tps)), \(r($c.lat_p99_us; $b.lat_p99_us)), \(r(cpu($c); cpu($b))) |"' "$OUT/results.jsonl"
	echo
	for v in $SENSORS; do
		echo "$v sessions stored: ${STORED[$v]} bundles, ${LISTED[$v]} in \`sessions list\` (connections made: $pcapot_conns, incl. 1 warm-up); pcap files: ${PCAPS[$v]}; flagged possibly incomplete: ${INCOMPLETE[$v]}"
	done
	echo "pcapot ECS event log written: $events_bytes bytes"
	echo "CPU/tx ratios use the server CPU time until 2 s after each run."
	echo "raw results: $OUT/results.jsonl"
} | tee "$OUT/summary.md"
for v in $SENSORS; do
	[ "${LISTED[$v]}" -eq "$pcapot_conns" ] || die "$v lists ${LISTED[$v]} sessions for $pcapot_conns connections"
done
