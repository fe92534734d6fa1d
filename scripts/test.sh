#!/usr/bin/env bash
# pcapot's whole test suite on a fresh Debian machine, as root:
#   1. installs the Debian packages the tests drive (tshark, tcpdump, mbpoll, nmap,
#      python3-pymodbus, net-snmp, ipmitool, iproute2...) if any is missing;
#   2. builds the pinned MinIO server with `go install` (cached per version);
#   3. starts MinIO on 127.0.0.1 on a free port with a temporary folder;
#   4. runs go vet, the CGO_ENABLED=0 build, and `go test ./...` with the integration
#      tests enabled (PCAPOT_INTEGRATION=1: a missing real part fails instead of skipping);
#   5. stops MinIO and removes its folder.
set -euo pipefail
cd "$(dirname "$0")/.."

MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
PACKAGES=(tshark tcpdump mbpoll nmap python3-pymodbus snmp iproute2 ipmitool curl ftp tftp-hpa busybox)

log() { printf '== %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "scripts/test.sh: run as root (packet capture, network namespaces and apt need it): sudo scripts/test.sh" >&2
	exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# The machine image ships Node.js and npm; fall back to Debian's only where they lack.
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if [ ${#missing[@]} -gt 0 ]; then
	log "installing Debian packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Real protocol clients from the npm registry (node-bacnet, ethernet-ip, st-ethernet-ip),
# pinned by each client's package-lock.json.
for d in protocols/*/testdata/nodeclient; do
	[ -f "$d/package-lock.json" ] || continue
	if [ ! -d "$d/node_modules" ] || [ "$d/package-lock.json" -nt "$d/node_modules" ]; then
		log "npm ci in $d"
		(cd "$d" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
	fi
done

cache="${XDG_CACHE_HOME:-$HOME/.cache}/pcapot/minio-$MINIO_VERSION"
minio="$cache/minio"
if [ ! -x "$minio" ]; then
	log "building MinIO $MINIO_VERSION with go install (once per machine)"
	mkdir -p "$cache"
	GOBIN="$cache" GOFLAGS=-buildvcs=false go install "github.com/minio/minio@$MINIO_VERSION"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
miniodir=$(mktemp -d /tmp/pcapot-minio.XXXXXX)
export MINIO_ROOT_USER=pcapot-test MINIO_ROOT_PASSWORD="pcapot-test-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
"$minio" server --quiet --address "127.0.0.1:$port" --console-address 127.0.0.1:0 "$miniodir" >"$miniodir.log" 2>&1 &
minio_pid=$!
cleanup() {
	kill "$minio_pid" 2>/dev/null || true
	wait "$minio_pid" 2>/dev/null || true
	rm -rf "$miniodir" "$miniodir.log"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
	curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null 2>&1 && break
	sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/minio/health/live" >/dev/null || { cat "$miniodir.log" >&2; echo "MinIO did not start" >&2; exit 1; }
log "MinIO $MINIO_VERSION on 127.0.0.1:$port"

export PCAPOT_INTEGRATION=1
export PCAPOT_TEST_S3_ENDPOINT="127.0.0.1:$port"
export PCAPOT_TEST_S3_ACCESS_KEY="$MINIO_ROOT_USER"
export PCAPOT_TEST_S3_SECRET_KEY="$MINIO_ROOT_PASSWORD"
# Fault tests start (and stop) MinIO servers of their own with this binary.
export PCAPOT_TEST_MINIO_BIN="$minio"

log "go vet"
go vet ./...
log "CGO_ENABLED=0 go build"
CGO_ENABLED=0 go build ./...
log "go test"
go test -count=1 -timeout 40m "$@" ./...
