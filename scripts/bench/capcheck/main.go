// Command capcheck measures capture completeness for pcapot's benchmarks
// (scripts/bench/capture.sh): it compares the per-session pcaps a sensor stored in its
// folder store with a reference capture that tcpdump wrote of the same traffic.
//
//	capcheck -list sessions.jsonl -data DIR -ref ref.pcap[,ref2.pcap] -port 502 \
//	         [-tcpdump /usr/bin/tcpdump -verify 20]
//
// sessions.jsonl is the output of `pcapot sessions list --json --data DIR`. The
// reference packets are grouped by TCP/UDP 5-tuple (the flows whose server port is
// -port); for every listed session, the packets tcpdump saw for its 5-tuple are
// compared with the frames of its stored pcap (all parts), byte for byte.
//
//	completeness = reference frames found in the session pcaps ÷ reference frames of
//	               those sessions
//
// -verify N re-derives the reference packet count of N sessions (evenly spread) the
// way an analyst would, with `tcpdump -r REF -w - '<the session's filter>'`, and reports
// any session where that count differs from the 5-tuple grouping used here.
// The result is one JSON object on stdout.
package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/gopacket/gopacket/pcapgo"

	"github.com/pcapot/pcapot/sensor"
)

type result struct {
	SessionsListed        int     `json:"sessions_listed"`
	SessionsDuplicate     int     `json:"sessions_duplicate_tuple"` // sessions whose tuple an earlier one had (source port reused); compared together
	RefFiles              int     `json:"ref_files"`
	RefPackets            int     `json:"ref_packets_total"`
	RefUnparsed           int     `json:"ref_packets_unparsed"`
	RefFlows              int     `json:"ref_flows_to_port"`
	RefFlowsNoSession     int     `json:"ref_flows_without_session"`
	RefPacketsNoSession   int     `json:"ref_packets_without_session"`
	SessionsNoRef         int     `json:"sessions_without_ref_packets"`
	RefPacketsForSessions int     `json:"ref_packets_for_sessions"`
	SessionPackets        int     `json:"session_packets"`
	Matched               int     `json:"matched_packets"`
	Missing               int     `json:"missing_packets"`
	Extra                 int     `json:"extra_packets"`
	SessionsExact         int     `json:"sessions_exact"`
	SessionsIncomplete    int     `json:"sessions_flagged_possibly_incomplete"`
	SessionsMissing       int     `json:"sessions_missing_frames"`
	SessionsMissingNoFlag int     `json:"sessions_missing_frames_not_flagged"`
	Completeness          float64 `json:"completeness"`
	Verified              int     `json:"tcpdump_filter_checked"`
	VerifyMismatches      int     `json:"tcpdump_filter_mismatches"`
	VerifyFirstMismatch   string  `json:"tcpdump_filter_first_mismatch,omitempty"`
	ExampleMissing        string  `json:"example_missing,omitempty"`
	ExampleReordered      string  `json:"example_reordered,omitempty"`
}

func main() {
	list := flag.String("list", "", "sessions list --json output")
	data := flag.String("data", "", "the sensor's folder store (--data)")
	refs := flag.String("ref", "", "comma-separated reference pcaps (tcpdump -w)")
	port := flag.Uint("port", 502, "the sensor's service port: flows to it are sessions")
	tcpdump := flag.String("tcpdump", "", "tcpdump binary for -verify")
	verify := flag.Int("verify", 0, "check this many sessions' reference counts with tcpdump -r and the session filter")
	flag.Parse()
	if *list == "" || *data == "" || *refs == "" {
		fatalf("-list, -data and -ref are required")
	}

	sessions, err := readList(*list)
	if err != nil {
		fatalf("%v", err)
	}
	var r result
	r.SessionsListed = len(sessions)

	// Reference frames per flow key, in capture order, over all reference files.
	refFlows := map[string][][]byte{}
	refFiles := strings.Split(*refs, ",")
	r.RefFiles = len(refFiles)
	for _, f := range refFiles {
		err := readPcap(f, func(frame []byte) {
			r.RefPackets++
			key, ok := flowKey(frame, uint16(*port))
			if !ok {
				r.RefUnparsed++
				return
			}
			refFlows[key] = append(refFlows[key], frame)
		})
		if err != nil {
			fatalf("%v", err)
		}
	}
	r.RefFlows = len(refFlows)

	// Sessions by tuple: a client that reuses a source port makes two sessions of one
	// 5-tuple, which tcpdump's capture holds as one flow. Their frames together must be
	// the flow's.
	byKey := map[string][]sensor.SessionInfo{}
	var keys []string
	for _, s := range sessions {
		key, err := sessionKey(s)
		if err != nil {
			fatalf("session %s: %v", s.SessionID, err)
		}
		if len(byKey[key]) > 0 {
			r.SessionsDuplicate++
		} else {
			keys = append(keys, key)
		}
		byKey[key] = append(byKey[key], s)
	}
	seen := map[string]bool{}
	for _, key := range keys {
		group := byKey[key]
		s := group[0]
		seen[key] = true
		flagged := false
		var got [][]byte
		for _, gs := range group {
			if gs.PossiblyIncomplete {
				r.SessionsIncomplete++
				flagged = true
			}
			for _, p := range gs.PCAPs {
				path := filepath.Join(*data, filepath.FromSlash(p.Key))
				if err := readPcap(path, func(frame []byte) { got = append(got, frame) }); err != nil {
					fatalf("session %s: %v", gs.SessionID, err)
				}
			}
		}
		want := refFlows[key]
		if len(want) == 0 {
			r.SessionsNoRef++
		}
		r.RefPacketsForSessions += len(want)
		r.SessionPackets += len(got)
		// Multiset intersection: every reference frame must be in the session pcap.
		counts := map[string]int{}
		for _, g := range got {
			counts[string(g)]++
		}
		matched := 0
		for _, w := range want {
			if counts[string(w)] > 0 {
				counts[string(w)]--
				matched++
			} else if r.ExampleMissing == "" {
				r.ExampleMissing = fmt.Sprintf("session %s (%s): a %d-byte frame tcpdump saw is not in its pcap", s.SessionID, key, len(w))
			}
		}
		r.Matched += matched
		r.Missing += len(want) - matched
		if matched < len(want) {
			r.SessionsMissing++
			if !flagged {
				r.SessionsMissingNoFlag++
			}
		}
		r.Extra += len(got) - matched
		if len(got) == len(want) && matched == len(want) {
			if i := firstDiff(got, want); i < 0 {
				r.SessionsExact++
			} else if r.ExampleReordered == "" {
				r.ExampleReordered = fmt.Sprintf("session %s (%s): same frames, order differs from frame %d of %d", s.SessionID, key, i+1, len(got))
			}
		}
	}
	for key, frames := range refFlows {
		if !seen[key] {
			r.RefFlowsNoSession++
			r.RefPacketsNoSession += len(frames)
		}
	}
	if r.RefPacketsForSessions > 0 {
		r.Completeness = float64(r.Matched) / float64(r.RefPacketsForSessions)
	}

	if *verify > 0 && len(sessions) > 0 {
		if *tcpdump == "" {
			fatalf("-verify needs -tcpdump")
		}
		step := max(1, len(sessions) / *verify)
		for i := 0; i < len(sessions) && r.Verified < *verify; i += step {
			s := sessions[i]
			key, _ := sessionKey(s)
			n := 0
			for _, f := range refFiles {
				c, err := countWithFilter(*tcpdump, f, s.Filter)
				if err != nil {
					fatalf("session %s: %v", s.SessionID, err)
				}
				n += c
			}
			r.Verified++
			if n != len(refFlows[key]) {
				r.VerifyMismatches++
				if r.VerifyFirstMismatch == "" {
					r.VerifyFirstMismatch = fmt.Sprintf("session %s: tcpdump filter %q selects %d packets, the 5-tuple grouping %d", s.SessionID, s.Filter, n, len(refFlows[key]))
				}
			}
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "capcheck: "+format+"\n", a...)
	os.Exit(1)
}

func readList(path string) ([]sensor.SessionInfo, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []sensor.SessionInfo
	dec := json.NewDecoder(bufio.NewReader(f))
	for dec.More() {
		var s sensor.SessionInfo
		if err := dec.Decode(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func readPcap(path string, fn func([]byte)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for {
		frame, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) && frame == nil {
			// tcpdump killed mid-write may leave a torn last record: ignore it.
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		fn(bytes.Clone(frame))
	}
}

// firstDiff is the index of the first frame that differs, or -1.
func firstDiff(a, b [][]byte) int {
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return i
		}
	}
	return -1
}

// key formats a flow as "proto client server".
func key(proto byte, client, server netip.AddrPort) string {
	return fmt.Sprintf("%d %s %s", proto, client, server)
}

func sessionKey(s sensor.SessionInfo) (string, error) {
	c, err := netip.ParseAddrPort(s.Client)
	if err != nil {
		return "", err
	}
	sv, err := netip.ParseAddrPort(s.Server)
	if err != nil {
		return "", err
	}
	proto := byte(6)
	if s.Transport == "udp" {
		proto = 17
	}
	return key(proto, c, sv), nil
}

// flowKey parses an Ethernet frame (optionally 802.1Q) with IPv4 or IPv6 and TCP or
// UDP, and returns its flow key if one side uses port.
func flowKey(f []byte, port uint16) (string, bool) {
	if len(f) < 14 {
		return "", false
	}
	et, off := binary.BigEndian.Uint16(f[12:]), 14
	if et == 0x8100 && len(f) >= 18 {
		et, off = binary.BigEndian.Uint16(f[16:]), 18
	}
	var src, dst netip.Addr
	var proto byte
	var l4 []byte
	switch et {
	case 0x0800:
		ip := f[off:]
		if len(ip) < 20 {
			return "", false
		}
		ihl := int(ip[0]&0x0f) * 4
		if binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 || len(ip) < ihl+4 {
			return "", false // non-first fragment: no ports
		}
		proto = ip[9]
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
		l4 = ip[ihl:]
	case 0x86dd:
		ip := f[off:]
		if len(ip) < 44 {
			return "", false
		}
		proto = ip[6]
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
		l4 = ip[40:]
	default:
		return "", false
	}
	if proto != 6 && proto != 17 {
		return "", false
	}
	sp, dp := binary.BigEndian.Uint16(l4[0:]), binary.BigEndian.Uint16(l4[2:])
	switch {
	case dp == port:
		return key(proto, netip.AddrPortFrom(src, sp), netip.AddrPortFrom(dst, dp)), true
	case sp == port:
		return key(proto, netip.AddrPortFrom(dst, dp), netip.AddrPortFrom(src, sp)), true
	}
	return "", false
}

// countWithFilter counts the packets `tcpdump -r ref -w - expr` keeps.
func countWithFilter(tcpdump, ref, expr string) (int, error) {
	cmd := exec.Command(tcpdump, "-r", ref, "-w", "-", expr)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("tcpdump -r %s %q: %v: %s", ref, expr, err, stderr.String())
	}
	n := 0
	r, err := pcapgo.NewReader(bytes.NewReader(out))
	if err != nil {
		return 0, err
	}
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return 0, err
		}
		n++
	}
}
