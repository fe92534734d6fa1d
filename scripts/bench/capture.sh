#!/usr/bin/env bash
# Capture benchmark (issue 3): the real sensor binary in a "sensor" network namespace,
# the load client (scripts/bench/modbusload) in an "attacker" namespace, joined by a
# veth pair, so that every packet is seen once, as on a real NIC. tcpdump captures the
# same traffic on the same veth as the reference. Phases (PHASES, default all):
#
#   complete  K short Modbus sessions (connect, TX × FC 3, close), CONC at a time, for
#             each K in COMPLETE_SIZES (1000 10000): sessions stored == K, and
#             completeness = reference frames found in the session pcaps ÷ reference
#             frames tcpdump saw for those sessions (scripts/bench/capcheck, which also
#             re-checks 20 sessions with `tcpdump -r ref -w - '<session filter>'`);
#             kernel drops of the sensor and of tcpdump.
#   ladder    open-loop session rates (RATES, "max" = as fast as 64 in flight allow),
#             STEP_SECONDS each, sensor and tcpdump -w on the same traffic: drops of
#             each per step; for each, the highest achieved rate with zero drops at it
#             and at every lower step, and the ratio sensor/tcpdump.
#             Run once per ring size in LADDER_RING_MIB ("64 8 2"): both get the
#             same ring bytes (sensor capture.ring_blocks × 1 MiB blocks, tcpdump -B;
#             libpcap cuts its ring into 256 KiB blocks): 64 MiB is the sensor's
#             default, 2 MiB is libpcap's default buffer.
#   replay    the loss-free packet rate beyond what real sessions reach on this
#             machine: REPLAY_SESSIONS (2000) real sessions are recorded with tcpdump,
#             their destination MACs rewritten (tcprewrite) so that the sensor
#             namespace's IP stack ignores the copies while both capture sockets still
#             see them, and the file is replayed into the veth (tcpreplay) at each
#             rate of REPLAY_PPS ("max" = --topspeed) for about STEP_SECONDS, once per
#             ring size in REPLAY_RING_MIB ("2 1"), sensor and tcpdump -w capturing the
#             same packets with the same ring bytes. The replayed flows are never
#             registered by a handler: the sensor buffers them as pending flows (up
#             to its caps), so this measures the capture path (ring, reader, demux),
#             not the emulation.
#   memory    IDLE (10000) concurrent idle sessions (one request each, then open;
#             IDLE_PROTO=s7: S7comm sessions after COTP connect + Setup Communication):
#             the sensor's RSS before and with them, per session, and its Go heap,
#             stacks and goroutines (from /metrics).
#   latency   on 127.0.0.1 (root namespace): LAT_N sessions LAT_INTERVAL apart; time
#             from the client's close to the session's bundle (written after its pcap)
#             being in the folder store (on disk), and in MinIO when
#             PCAPOT_TEST_S3_ENDPOINT, PCAPOT_TEST_S3_ACCESS_KEY and
#             PCAPOT_TEST_S3_SECRET_KEY are set (scripts/bench/storelat).
#
# Everything is bounded (session counts, step durations) and stops by itself: about
# 3 minutes on a 2-CPU machine with the defaults.
# Usage, as root:  scripts/bench/capture.sh
#                  PHASES="complete" COMPLETE_SIZES=1000 scripts/bench/capture.sh
# The sensor runs with a config that raises the session limits for the load
# (limits.max_sessions and max_sessions_per_ip 20000, capture.max_pending 20000) and
# otherwise its defaults (64 × 1 MiB ring, 1 s linger). Its folder store and the
# reference captures are under $OUT/work (tmpfs by default: the complete, ladder and
# memory phases measure capture, not the disk), removed at the end unless KEEP=1.
# Kernel drops of the sensor are read from its /metrics (pcapot_capture_kernel_drops_total,
# the TPACKET_V3 socket's counter; the management API is put on a free loopback port)
# and cross-checked with its log ("kernel dropped packets ... drops=N", once a second).
# Needs: go, tcpdump, iproute2, jq, curl (installed if missing); `ulimit -n` ≥ IDLE + 2048
# (raised if the hard limit allows). Traffic stays in the two namespaces this script
# creates and deletes, and on 127.0.0.1.
# SENSOR_REV=HEAD (or any commit) builds the sensor from that commit instead of the
# working tree.
set -euo pipefail
cd "$(dirname "$0")/../.."
. scripts/bench/lib.sh

PHASES=${PHASES:-"complete ladder replay memory latency"}
COMPLETE_SIZES=${COMPLETE_SIZES:-"1000 10000"}
CONC=${CONC:-50}
TX=${TX:-3}
RATES=${RATES:-"1000 2000 4000 max"}
STEP_SECONDS=${STEP_SECONDS:-2}
LADDER_RING_MIB=${LADDER_RING_MIB:-"64 8 2"}
REPLAY_SESSIONS=${REPLAY_SESSIONS:-2000}
REPLAY_PPS=${REPLAY_PPS:-"100000 200000 400000 max"} # in all, over REPLAY_PARALLEL replayers
REPLAY_RING_MIB=${REPLAY_RING_MIB:-"2 1"}
REPLAY_MAX_LOOPS=${REPLAY_MAX_LOOPS:-40}
REPLAY_PARALLEL=${REPLAY_PARALLEL:-1}
IDLE=${IDLE:-10000}
IDLE_PROTO=${IDLE_PROTO:-modbus} # or s7: the idle sessions are S7comm (COTP + Setup Communication, port 102)
LAT_N=${LAT_N:-200}
LAT_INTERVAL=${LAT_INTERVAL:-25ms}
TCPDUMP_BUFFER_KIB=${TCPDUMP_BUFFER_KIB:-65536} # tcpdump -B outside the ladder: like the sensor's 64 MiB ring
OUT=${OUT:-$(mktemp -d /dev/shm/pcapot-bench-capture.XXXXXX)}
WORK="$OUT/work"

require_root
need_debs tcpdump iproute2 jq curl tcpreplay
want_fds=$((IDLE + 2048))
if [ "$(ulimit -n)" -lt "$want_fds" ]; then
	ulimit -n "$want_fds" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
[ "$(ulimit -n)" -ge "$want_fds" ] || die "ulimit -n is $(ulimit -n): $IDLE idle sessions need $want_fds descriptors per process (raise the hard limit, or set IDLE lower)"
TCPDUMP=$(command -v tcpdump)
mkdir -p "$WORK"
build_tools modbusload capcheck storelat
machine_info | tee "$OUT/machine.txt" >&2
echo "tcpdump: $("$TCPDUMP" --version 2>&1 | head -1), -B $TCPDUMP_BUFFER_KIB KiB" | tee -a "$OUT/machine.txt" >&2
RESULTS="$OUT/results.jsonl"
: >"$RESULTS"

# The namespaces: attacker (10.231.0.2-9) <-> sensor (10.231.0.1) over one veth pair.
tag=$$
NS_A="pcapot-bench-a-$tag" NS_S="pcapot-bench-s-$tag" VA="pba$tag" VS="pbs$tag"
SENSOR_IP=10.231.0.1
SRCS=$(seq -s, -f "10.231.0.%g" 2 9)
BG_PIDS=()
cleanup() {
	local p
	for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	ip netns del "$NS_A" 2>/dev/null || true
	ip netns del "$NS_S" 2>/dev/null || true
	[ "${KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
ip netns add "$NS_A"
ip netns add "$NS_S"
ip link add "$VA" netns "$NS_A" type veth peer name "$VS" netns "$NS_S"
ip -n "$NS_A" link set lo up
ip -n "$NS_S" link set lo up
ip -n "$NS_S" addr add "$SENSOR_IP/24" dev "$VS"
for a in ${SRCS//,/ }; do ip -n "$NS_A" addr add "$a/24" dev "$VA"; done
ip -n "$NS_A" link set "$VA" up
ip -n "$NS_S" link set "$VS" up
echo "netns: $NS_A ($VA, ${SRCS}) <-> $NS_S ($VS, $SENSOR_IP), veth; client and sensor share the same $(nproc) CPUs" | tee -a "$OUT/machine.txt" >&2

cat >"$OUT/bench.yaml" <<EOF
# pcapot benchmark configuration: the defaults, with session limits raised for the load.
sensor:
  id: bench
limits:
  max_sessions: 20000
  max_sessions_per_ip: 20000
capture: # last: the ladder appends ring_mib (and ring_block_kib) to it
  max_pending: 20000
EOF
SENSOR_ARGS=(--config "$OUT/bench.yaml" --disable s7comm --disable http --disable snmp)

# logged_drops ERRFILE [FROMLINE]: kernel drops the sensor logged (it reads the ring's
# counters every second and logs each increase).
logged_drops() {
	tail -n +"${2:-1}" "$1" | awk '/kernel dropped packets/ { for (i = 1; i <= NF; i++) if ($i ~ /^drops=/) { sub(/^drops=/, "", $i); s += $i } } END { print s + 0 }'
}

# start_tcpdump FILE [BUFFER_KIB]: tcpdump -w in the sensor namespace on the veth;
# sets TD_PID.
start_tcpdump() {
	ip netns exec "$NS_S" "$TCPDUMP" -i "$VS" -n -s 0 -B "${2:-$TCPDUMP_BUFFER_KIB}" -w "$1" "tcp port 502" 2>"$1.err" &
	TD_PID=$!
	BG_PIDS+=("$TD_PID")
	for _ in $(seq 1 100); do
		grep -q "listening on" "$1.err" 2>/dev/null && return 0
		sleep 0.05
	done
	cat "$1.err" >&2
	die "tcpdump did not start"
}
# stop_tcpdump FILE: stops it and sets TD_JSON to its counters (not in a subshell:
# only this shell can wait for it).
stop_tcpdump() {
	kill -INT "$TD_PID" 2>/dev/null || true
	wait "$TD_PID" 2>/dev/null || true
	grep -q "dropped by kernel" "$1.err" || { cat "$1.err" >&2; die "tcpdump printed no statistics"; }
	TD_JSON=$(awk '/packets captured/ {c=$1} /received by filter/ {r=$1} /dropped by kernel/ {d=$1}
		END { printf "{\"captured\":%d,\"received\":%d,\"dropped\":%d}\n", c, r, d }' "$1.err")
}

client() { ip netns exec "$NS_A" "$OUT/bin/modbusload" -addr "$SENSOR_IP:502" -src "$SRCS" "$@"; }

phase_complete() {
	local k=$1 data="$WORK/complete-$k" ref="$WORK/complete-$k.pcap" load stored td drops seen logged check
	log "complete: $k sessions, $CONC at a time, $TX transactions each"
	start_tcpdump "$ref"
	start_sensor "$WORK/complete-$k.out" "$WORK/complete-$k.err" "$NS_S" -- "${SENSOR_ARGS[@]}" --data "$data" --listen "$SENSOR_IP"
	local spid=$SENSOR_PID
	load=$(client -mode pool -sessions "$k" -inflight "$CONC" -tx "$TX" -label "complete-$k")
	log "complete: client done; waiting for $k bundles"
	stored=$(wait_sessions "$data" "$k" 180)
	drops=$(metric pcapot_capture_kernel_drops_total)
	seen=$(metric pcapot_capture_packets_seen_total)
	stop_pid "$spid" 120
	log "complete: $stored stored, sensor stopped; comparing with tcpdump"
	stop_tcpdump "$ref"
	td=$TD_JSON
	logged=$(logged_drops "$WORK/complete-$k.err")
	"$OUT/bin/pcapot" sessions list --json --data "$data" >"$WORK/complete-$k.list"
	check=$("$OUT/bin/capcheck" -list "$WORK/complete-$k.list" -data "$data" -ref "$ref" -port 502 -tcpdump "$TCPDUMP" -verify 20)
	jq -c -n --argjson k "$k" --argjson load "$load" --argjson td "$td" --argjson drops "$drops" --argjson check "$check" \
		--argjson listed "$(wc -l <"$WORK/complete-$k.list")" --argjson seen "$seen" --argjson logged "$logged" \
		'{phase: "complete", sessions: $k, client: $load, sessions_listed: $listed, sensor_kernel_drops: $drops, sensor_logged_drops: $logged,
		  sensor_packets_seen: $seen, tcpdump: $td, capcheck: $check}' |
		tee -a "$RESULTS" >&2
}

# ring_config FILE MIB: the benchmark configuration with a ring of MIB MiB (and the
# block size and timeout of BLOCK_KIB and BLOCK_TIMEOUT when set).
ring_config() {
	{
		cat "$OUT/bench.yaml"
		echo "  ring_mib: $2"
		[ -z "${BLOCK_KIB:-}" ] || echo "  ring_block_kib: $BLOCK_KIB"
		[ -z "${BLOCK_TIMEOUT:-}" ] || echo "  ring_block_timeout: $BLOCK_TIMEOUT"
	} >"$1"
}

phase_ladder() {
	local mib=$1 name="ladder-$1mib" refs="" rate ref load td from drops logged d0 s0 seen args total=0
	local data="$WORK/$name" cfg="$WORK/$name.yaml"
	log "ladder, ring $mib MiB for the sensor and for tcpdump: rates $RATES, ${STEP_SECONDS}s each"
	ring_config "$cfg" "$mib"
	start_sensor "$WORK/$name.out" "$WORK/$name.err" "$NS_S" -- "${SENSOR_ARGS[@]}" --config "$cfg" --data "$data" --listen "$SENSOR_IP"
	local spid=$SENSOR_PID
	sleep 1.5 # past the sensor's start, so that a step's drops are the step's
	for rate in $RATES; do
		ref="$WORK/$name-$rate.pcap"
		refs="$refs${refs:+,}$ref"
		if [ "$rate" = max ]; then
			args=(-rate 1000000 -inflight 64)
		else
			args=(-rate "$rate" -inflight 1024)
		fi
		start_tcpdump "$ref" $((mib * 1024))
		from=$(($(wc -l <"$WORK/$name.err") + 1))
		d0=$(metric pcapot_capture_kernel_drops_total)
		s0=$(metric pcapot_capture_packets_seen_total)
		load=$(client -mode rate "${args[@]}" -duration "${STEP_SECONDS}s" -tx "$TX" -label "$name-$rate")
		sleep 2.5 # linger (1 s), the last FIN/ACKs, and the sensor's next drop log (every 1 s)
		stop_tcpdump "$ref"
		td=$TD_JSON
		drops=$(($(metric pcapot_capture_kernel_drops_total) - d0))
		seen=$(($(metric pcapot_capture_packets_seen_total) - s0))
		logged=$(logged_drops "$WORK/$name.err" "$from")
		total=$((total + $(jq '.sessions + .sessions_failed' <<<"$load")))
		jq -c -n --arg rate "$rate" --argjson mib "$mib" --argjson load "$load" --argjson td "$td" --argjson drops "$drops" --argjson secs "$STEP_SECONDS" \
			--argjson seen "$seen" --argjson logged "$logged" \
			'{phase: "ladder", ring_mib: $mib, rate: $rate, client: $load, tcpdump: $td, sensor_kernel_drops: $drops, sensor_logged_drops: $logged,
			  sensor_packets_seen: $seen, pps: ($td.received / $secs)}' |
			tee -a "$RESULTS" >&2
	done
	local stored check
	# A session whose FIN packets were dropped ends only on the 120 s idle timeout:
	# wait 15 s at most, then SIGTERM, which finalizes and stores every open session.
	log "ladder: waiting up to 15 s for $total bundles"
	stored=$(wait_sessions "$data" "$total" 15)
	stop_pid "$spid" 120
	log "ladder: $stored stored before SIGTERM, sensor stopped; comparing with tcpdump"
	"$OUT/bin/pcapot" sessions list --json --data "$data" >"$WORK/$name.list"
	check=$("$OUT/bin/capcheck" -list "$WORK/$name.list" -data "$data" -ref "$refs" -port 502)
	jq -c -n --argjson mib "$mib" --argjson check "$check" --argjson total "$total" --argjson listed "$(wc -l <"$WORK/$name.list")" \
		--argjson stored "$stored" --argjson idle "$(jq -s 'map(select(.close_reason == "idle" or .close_reason == "shutdown")) | length' "$WORK/$name.list")" \
		'{phase: "ladder-completeness", ring_mib: $mib, client_sessions: $total, stored_before_sigterm: $stored, sessions_listed: $listed, ended_idle_or_shutdown: $idle, capcheck: $check}' | tee -a "$RESULTS" >&2
}

phase_replay() {
	local src="$WORK/replay-recorded.pcap" pcap="$WORK/replay.pcap" data="$WORK/replay-rec" npk mib pps
	log "replay: recording $REPLAY_SESSIONS real sessions to replay"
	start_tcpdump "$src"
	start_sensor "$WORK/replay-rec.out" "$WORK/replay-rec.err" "$NS_S" -- "${SENSOR_ARGS[@]}" --data "$data" --listen "$SENSOR_IP"
	local spid=$SENSOR_PID
	client -mode pool -sessions "$REPLAY_SESSIONS" -inflight "$CONC" -tx "$TX" -label replay-record >/dev/null
	wait_sessions "$data" "$REPLAY_SESSIONS" 60 >/dev/null
	stop_pid "$spid" 60
	stop_tcpdump "$src"
	# A destination MAC that is nobody's: the sensor namespace's stack drops the copies
	# as PACKET_OTHERHOST (no RST, no SYN-ACK), after both capture sockets saw them.
	tcprewrite --enet-dmac=02:00:5e:00:53:01 --infile="$src" --outfile="$pcap"
	npk=$("$TCPDUMP" -nr "$pcap" 2>/dev/null | wc -l)
	log "replay: $npk packets per pass"
	for mib in $REPLAY_RING_MIB; do
		local cfg="$WORK/replay-$mib.yaml" name="replay-${mib}mib"
		ring_config "$cfg" "$mib"
		start_sensor "$WORK/$name.out" "$WORK/$name.err" "$NS_S" -- "${SENSOR_ARGS[@]}" --config "$cfg" --data "$WORK/$name" --listen "$SENSOR_IP"
		spid=$SENSOR_PID
		sleep 1.5
		for pps in $REPLAY_PPS; do
			local ref="$WORK/$name-$pps.pcap" args out sent secs rated d0 s0 drops seen td
			if [ "$pps" = max ]; then
				args=(--topspeed --loop="$REPLAY_MAX_LOOPS")
			else
				args=(--pps=$((pps / REPLAY_PARALLEL)) --loop=$(((pps / REPLAY_PARALLEL * STEP_SECONDS + npk - 1) / npk)))
			fi
			start_tcpdump "$ref" $((mib * 1024))
			d0=$(metric pcapot_capture_kernel_drops_total)
			s0=$(metric pcapot_capture_packets_seen_total)
			# REPLAY_PARALLEL tcpreplay processes at once (one replayer is bound by its
			# own CPU): packets sent are summed, the rate is that sum over the longest.
			local j outs=()
			for ((j = 0; j < REPLAY_PARALLEL; j++)); do
				ip netns exec "$NS_A" tcpreplay -q -i "$VA" "${args[@]}" "$pcap" >"$WORK/tcpreplay.$j" 2>&1 &
			done
			wait $(jobs -p | tail -n "$REPLAY_PARALLEL") 2>/dev/null || true
			out=$(cat "$WORK"/tcpreplay.*)
			rm -f "$WORK"/tcpreplay.*
			sent=$(awk '/Actual:/ {s += $2} END {print s + 0}' <<<"$out")
			secs=$(awk '/Actual:/ {for (i = 1; i <= NF; i++) if ($i == "in" && $(i+1) > m) m = $(i+1)} END {print m + 0}' <<<"$out")
			[ "$sent" -gt 0 ] && [ "$secs" != 0 ] || { echo "$out" >&2; die "tcpreplay printed no rate"; }
			rated=$(awk -v n="$sent" -v s="$secs" 'BEGIN {printf "%.0f", n / s}')
			sleep 1.5 # the last blocks (50 ms timeout) and the sensor's drop log
			stop_tcpdump "$ref"
			td=$TD_JSON
			drops=$(($(metric pcapot_capture_kernel_drops_total) - d0))
			seen=$(($(metric pcapot_capture_packets_seen_total) - s0))
			rm -f "$ref"
			jq -c -n --arg pps "$pps" --argjson mib "$mib" --argjson sent "$sent" --argjson secs "$secs" --argjson rated "$rated" \
				--argjson td "$td" --argjson drops "$drops" --argjson seen "$seen" \
				'{phase: "replay", ring_mib: $mib, target_pps: $pps, sent: $sent, seconds: $secs, pps: $rated,
				  tcpdump: $td, sensor_kernel_drops: $drops, sensor_packets_seen: $seen}' | tee -a "$RESULTS" >&2
		done
		stop_pid "$spid" 120
	done
}

# gomem: the sensor's Go runtime figures (from /metrics) as a JSON object.
gomem() {
	local m out="{"
	for m in go_goroutines go_memstats_heap_inuse_bytes go_memstats_stack_inuse_bytes go_memstats_sys_bytes pcapot_capture_buffered_bytes; do
		out="$out\"${m#go_memstats_}\":$(metric "$m"),"
	done
	echo "${out%,}}"
}

phase_memory() {
	local data="$WORK/memory" base base_hwm rss hwm threads est load stored go0 go1 port=502 sargs=("${SENSOR_ARGS[@]}") cargs=()
	if [ "$IDLE_PROTO" = s7 ]; then
		port=102 sargs=(--config "$OUT/bench.yaml" --disable http --disable snmp) cargs=(-s7 -addr "$SENSOR_IP:102")
	fi
	log "memory: $IDLE concurrent idle $IDLE_PROTO sessions"
	start_sensor "$WORK/memory.out" "$WORK/memory.err" "$NS_S" -- "${sargs[@]}" --data "$data" --listen "$SENSOR_IP"
	local spid=$SENSOR_PID
	sleep 2
	base=$(rss_kib "$spid")
	base_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$spid/status")
	go0=$(gomem)
	mkfifo "$WORK/hold.ctl"
	client -mode hold -conns "$IDLE" -inflight 200 -label "idle-$IDLE" "${cargs[@]}" <"$WORK/hold.ctl" >"$WORK/hold.json" 2>"$WORK/hold.err" &
	local cpid=$!
	BG_PIDS+=("$cpid")
	exec 7>"$WORK/hold.ctl" # the client holds the connections until this closes
	for _ in $(seq 1 1200); do
		grep -q '^HELD' "$WORK/hold.err" && break
		kill -0 "$cpid" 2>/dev/null || break
		sleep 0.1
	done
	grep -q '^HELD' "$WORK/hold.err" || { cat "$WORK/hold.err" >&2; die "the idle sessions were not opened"; }
	# SETTLE: seconds the sessions stay idle before RSS is read (default 3). Keep it
	# below the Modbus idle timeout (60 s): the emulated device then closes them (a run
	# with SETTLE=150 measured 0 established sessions).
	sleep "${SETTLE:-3}"
	rss=$(rss_kib "$spid")
	hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$spid/status")
	threads=$(awk '/^Threads:/ {print $2}' "/proc/$spid/status")
	go1=$(gomem)
	est=$(ip netns exec "$NS_S" ss -Htn state established "( sport = :$port )" | wc -l)
	exec 7>&-
	wait "$cpid" || true
	load=$(cat "$WORK/hold.json")
	log "memory: closed; waiting for $IDLE bundles"
	stored=$(wait_sessions "$data" "$IDLE" 180)
	stop_pid "$spid" 120
	jq -c -n --argjson n "$IDLE" --argjson load "$load" --argjson base "$base" --argjson rss "$rss" --argjson hwm "$hwm" \
		--argjson bhwm "$base_hwm" --argjson threads "$threads" --argjson est "$est" --argjson stored "$stored" \
		--argjson go0 "$go0" --argjson go1 "$go1" \
		--arg proto "$IDLE_PROTO" \
		'{phase: "memory", protocol: $proto, idle_sessions: $n, client: $load, established_at_sensor: $est, rss_base_kib: $base, rss_base_hwm_kib: $bhwm,
		  rss_idle_kib: $rss, hwm_kib: $hwm, threads: $threads, per_session_kib: (($rss - $base) / $n), rss_over_sessions_kib: ($rss / $n),
		  go_before: $go0, go_idle: $go1,
		  per_session_heap_inuse_kib: (($go1.heap_inuse_bytes - $go0.heap_inuse_bytes) / 1024 / $n),
		  per_session_stack_inuse_kib: (($go1.stack_inuse_bytes - $go0.stack_inuse_bytes) / 1024 / $n),
		  per_session_capture_buffered_bytes: (($go1.pcapot_capture_buffered_bytes - $go0.pcapot_capture_buffered_bytes) / $n),
		  goroutines_per_session: (($go1.go_goroutines - $go0.go_goroutines) / $n),
		  bundles_stored_after_close: $stored}' | tee -a "$RESULTS" >&2
}

phase_latency() {
	local port data lat
	port=$(free_port)
	data=$(mktemp -d /var/tmp/pcapot-bench-latency.XXXXXX) # on disk, as a sensor would store
	log "latency: folder store on $(df --output=fstype "$data" | tail -1) ($data), $LAT_N sessions, $LAT_INTERVAL apart"
	start_sensor "$WORK/lat-folder.out" "$WORK/lat-folder.err" "" -- "${SENSOR_ARGS[@]}" --data "$data" --listen "127.0.0.1:$port"
	local spid=$SENSOR_PID
	lat=$("$OUT/bin/storelat" -addr "127.0.0.1:$port" -n "$LAT_N" -interval "$LAT_INTERVAL" -data "$data")
	stop_pid "$spid" 60
	rm -rf "$data"
	jq -c -n --argjson lat "$lat" --arg fs "disk" '{phase: "latency", store: "folder", result: $lat}' | tee -a "$RESULTS" >&2

	if [ -z "${PCAPOT_TEST_S3_ENDPOINT:-}" ] || [ -z "${PCAPOT_TEST_S3_ACCESS_KEY:-}" ] || [ -z "${PCAPOT_TEST_S3_SECRET_KEY:-}" ]; then
		log "latency: PCAPOT_TEST_S3_ENDPOINT/ACCESS_KEY/SECRET_KEY not set: MinIO not measured"
		jq -c -n '{phase: "latency", store: "s3", skipped: "PCAPOT_TEST_S3_* not set"}' >>"$RESULTS"
		return
	fi
	local bucket="pcapot-bench-$(date +%s)"
	local s3=(--s3-endpoint "$PCAPOT_TEST_S3_ENDPOINT" --s3-bucket "$bucket" --s3-insecure
		--s3-access-key "$PCAPOT_TEST_S3_ACCESS_KEY" --s3-secret-key "$PCAPOT_TEST_S3_SECRET_KEY")
	port=$(free_port)
	log "latency: S3 $PCAPOT_TEST_S3_ENDPOINT bucket $bucket"
	start_sensor "$WORK/lat-s3.out" "$WORK/lat-s3.err" "" -- "${SENSOR_ARGS[@]}" --data "$WORK/lat-s3" --listen "127.0.0.1:$port" "${s3[@]}"
	spid=$SENSOR_PID
	lat=$("$OUT/bin/storelat" -addr "127.0.0.1:$port" -n "$LAT_N" -interval "$LAT_INTERVAL" \
		-s3-endpoint "$PCAPOT_TEST_S3_ENDPOINT" -s3-bucket "$bucket" -s3-access-key "$PCAPOT_TEST_S3_ACCESS_KEY" -s3-secret-key "$PCAPOT_TEST_S3_SECRET_KEY")
	stop_pid "$spid" 60
	jq -c -n --argjson lat "$lat" --arg bucket "$bucket" '{phase: "latency", store: "s3", bucket: $bucket, result: $lat}' | tee -a "$RESULTS" >&2
}

for phase in $PHASES; do
	case $phase in
	complete) for k in $COMPLETE_SIZES; do phase_complete "$k"; done ;;
	ladder) for mib in $LADDER_RING_MIB; do phase_ladder "$mib"; done ;;
	replay) phase_replay ;;
	memory) phase_memory ;;
	latency) phase_latency ;;
	*) die "unknown phase $phase" ;;
	esac
done

# Summary.
has_phase() { jq -s -e --arg p "$1" 'any(.[]; .phase == $p)' "$RESULTS" >/dev/null; }
{
	echo "# pcapot capture benchmark"
	echo
	sed 's/^/    /' "$OUT/machine.txt"
	if has_phase complete; then
		echo
		echo "## Completeness"
		echo
		echo "| sessions | client sessions ok/failed | sessions/s | stored (listed) | ref frames for sessions | matched | missing | extra | completeness | sessions identical | ref flows w/o session | tcpdump filter re-check | sensor kernel drops (metrics / log) | tcpdump: captured / dropped by kernel | possibly incomplete |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		jq -r 'select(.phase == "complete") | "| \(.sessions) | \(.client.sessions)/\(.client.sessions_failed) | \(.client.sessions_per_s|floor) | \(.sessions_listed) | \(.capcheck.ref_packets_for_sessions) | \(.capcheck.matched_packets) | \(.capcheck.missing_packets) | \(.capcheck.extra_packets) | \(.capcheck.completeness*1000|round/1000) | \(.capcheck.sessions_exact) | \(.capcheck.ref_flows_without_session) | \(.capcheck.tcpdump_filter_checked - .capcheck.tcpdump_filter_mismatches)/\(.capcheck.tcpdump_filter_checked) agree | \(.sensor_kernel_drops) / \(.sensor_logged_drops) | \(.tcpdump.captured) / \(.tcpdump.dropped) | \(.capcheck.sessions_flagged_possibly_incomplete) |"' "$RESULTS"
	fi
	if has_phase ladder; then
		for mib in $(jq -s -r '[.[] | select(.phase == "ladder") | .ring_mib] | unique | .[]' "$RESULTS"); do
			echo
			echo "## Loss-free session rate, ring $mib MiB for both: sensor and tcpdump -w on the same traffic (${STEP_SECONDS} s steps)"
			echo
			echo "| target sessions/s | achieved sessions/s | sessions ok/failed/skipped | packets (tcpdump received) | packets/s | sensor packets seen | sensor kernel drops (metrics / log) | tcpdump dropped by kernel |"
			echo "|---|---|---|---|---|---|---|---|"
			jq -r --argjson m "$mib" 'select(.phase == "ladder" and .ring_mib == $m) | "| \(.rate) | \(.client.sessions_per_s|floor) | \(.client.sessions)/\(.client.sessions_failed)/\(.client.skipped // 0) | \(.tcpdump.received) | \(.pps|floor) | \(.sensor_packets_seen) | \(.sensor_kernel_drops) / \(.sensor_logged_drops) | \(.tcpdump.dropped) |"' "$RESULTS"
			# Loss-free rate: the highest achieved rate with zero drops at it and at every
			# step of a lower achieved rate (a drop-free step above a dropping one does
			# not count).
			jq -s -r --argjson m "$mib" '[.[] | select(.phase == "ladder" and .ring_mib == $m)] | sort_by(.client.sessions_per_s) as $l |
				def lossfree(d): reduce $l[] as $x ({ok: true, r: 0}; if .ok and ($x | d) == 0 then .r = $x.client.sessions_per_s else .ok = false end) | .r;
				lossfree(.sensor_kernel_drops) as $s | lossfree(.tcpdump.dropped) as $t |
				($l | map(select(.sensor_kernel_drops > 0)) | length) as $sd | ($l | map(select(.tcpdump.dropped > 0)) | length) as $td |
				"\nhighest loss-free rate (zero drops at it and at every lower step): sensor \($s|floor) sessions/s, tcpdump \($t|floor) sessions/s" +
				(if $sd == 0 and $td == 0 then " — neither dropped at any step, so the ratio is not determined by this run: both are loss-free up to the highest rate this machine generated"
				 else "; ratio sensor/tcpdump = \(if $t > 0 then ($s / $t * 1000 | round / 1000) else "n/a" end) (steps with drops: sensor \($sd), tcpdump \($td))" end)' "$RESULTS"
			jq -r --argjson m "$mib" 'select(.phase == "ladder-completeness" and .ring_mib == $m) | "\nladder sessions: client \(.client_sessions), stored within 15 s \(.stored_before_sigterm), listed after SIGTERM \(.sessions_listed) (\(.ended_idle_or_shutdown) ended by idle timeout or shutdown, not by their FIN exchange); completeness over all steps \(.capcheck.completeness*1000|round/1000) (\(.capcheck.matched_packets)/\(.capcheck.ref_packets_for_sessions) frames, \(.capcheck.extra_packets) extra, \(.capcheck.ref_flows_without_session) reference flows without a session; \(.capcheck.sessions_missing_frames) sessions miss frames, \(.capcheck.sessions_missing_frames_not_flagged) of them not flagged; \(.capcheck.sessions_flagged_possibly_incomplete) flagged possibly incomplete)"' "$RESULTS"
		done
	fi
	if has_phase replay; then
		for mib in $(jq -s -r '[.[] | select(.phase == "replay") | .ring_mib] | unique | .[]' "$RESULTS"); do
			echo
			echo "## Loss-free packet rate, replayed traffic, ring $mib MiB for both: sensor and tcpdump -w on the same packets"
			echo
			echo "| target packets/s | packets sent | seconds | achieved packets/s | tcpdump received | sensor packets seen | sensor kernel drops | tcpdump dropped by kernel |"
			echo "|---|---|---|---|---|---|---|---|"
			jq -r --argjson m "$mib" 'select(.phase == "replay" and .ring_mib == $m) | "| \(.target_pps) | \(.sent) | \(.seconds) | \(.pps|floor) | \(.tcpdump.received) | \(.sensor_packets_seen) | \(.sensor_kernel_drops) | \(.tcpdump.dropped) |"' "$RESULTS"
			jq -s -r --argjson m "$mib" '[.[] | select(.phase == "replay" and .ring_mib == $m)] | sort_by(.pps) as $l |
				def lossfree(d): reduce $l[] as $x ({ok: true, r: 0}; if .ok and ($x | d) == 0 then .r = $x.pps else .ok = false end) | .r;
				lossfree(.sensor_kernel_drops) as $s | lossfree(.tcpdump.dropped) as $t |
				($l | map(select(.sensor_kernel_drops > 0)) | length) as $sd | ($l | map(select(.tcpdump.dropped > 0)) | length) as $td |
				"\nhighest loss-free packet rate (zero drops at it and at every lower step): sensor \($s|floor) packets/s, tcpdump \($t|floor) packets/s" +
				(if $sd == 0 and $td == 0 then " — neither dropped at any step: the ratio is not determined by this run"
				 else "; ratio sensor/tcpdump = \(if $t > 0 then ($s / $t * 1000 | round / 1000) else "n/a" end) (steps with drops: sensor \($sd), tcpdump \($td))" end)' "$RESULTS"
		done
	fi
	if has_phase memory; then
		echo
		echo "## Memory with idle $IDLE_PROTO sessions"
		echo
		echo "| idle sessions held (client) | established at sensor | RSS before | RSS with them | (RSS − before) per session | RSS ÷ sessions | VmHWM | threads | bundles after close |"
		echo "|---|---|---|---|---|---|---|---|---|"
		jq -r 'select(.phase == "memory") | "| \(.client.held) | \(.established_at_sensor) | \(.rss_base_kib) KiB | \(.rss_idle_kib) KiB | \(.per_session_kib*10|round/10) KiB | \(.rss_over_sessions_kib*10|round/10) KiB | \(.hwm_kib) KiB | \(.threads) | \(.bundles_stored_after_close) |"' "$RESULTS"
		echo
		echo "Go runtime, from the sensor's /metrics, per idle session (with them − before, ÷ sessions):"
		echo
		echo "| heap in use | goroutine stacks in use | capture buffered bytes | goroutines | Go sys bytes before → with them |"
		echo "|---|---|---|---|---|"
		jq -r 'select(.phase == "memory") | "| \(.per_session_heap_inuse_kib*10|round/10) KiB | \(.per_session_stack_inuse_kib*10|round/10) KiB | \(.per_session_capture_buffered_bytes|round) B | \(.goroutines_per_session*100|round/100) | \(.go_before.sys_bytes/1048576|round) MiB → \(.go_idle.sys_bytes/1048576|round) MiB |"' "$RESULTS"
	fi
	if has_phase latency; then
		echo
		echo "## Latency from session end (client close) to pcap + bundle stored"
		echo
		echo "| store | sessions | stored | p50 ms | p90 ms | p99 ms | min ms | max ms | note |"
		echo "|---|---|---|---|---|---|---|---|---|"
		jq -r 'select(.phase == "latency") | if .skipped then "| \(.store) | — | — | — | — | — | — | — | not run: \(.skipped) |" else
			"| \(.store) | \(.result.sessions) | \(.result.stored) | \(.result.p50_ms*10|round/10) | \(.result.p90_ms*10|round/10) | \(.result.p99_ms*10|round/10) | \(.result.min_ms*10|round/10) | \(.result.max_ms*10|round/10) | \(if .store == "s3" then "listing every \(.result.poll_ms) ms" else "inotify" end) |" end' "$RESULTS"
	fi
	echo
	echo "raw results: $RESULTS"
} | tee "$OUT/summary.md"
