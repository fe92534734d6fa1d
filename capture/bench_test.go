package capture

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDemuxHandle measures packets per second through parse, demux and the
// in-memory pcap/pcapng writer, with every flow registered. Parts are emitted when
// the buffered bytes exceed 64 MiB, so the cost of finishing and hashing parts is
// included.
func BenchmarkDemuxHandle(b *testing.B) {
	for _, bc := range []struct {
		format   string
		sessions int
	}{{FormatPCAP, 1000}, {FormatPCAPNG, 1000}, {FormatPCAP, 50000}} {
		b.Run(fmt.Sprintf("%s/%d-sessions", bc.format, bc.sessions), func(b *testing.B) {
			d := NewDemux(Config{Format: bc.format, MaxBufferedBytes: 64 << 20}, nil, func(*Finished) {})
			// Eight data segments per session (Modbus-sized payloads), round robin.
			const perSession = 8
			pkts := make([]Packet, 0, bc.sessions*perSession)
			for i := range bc.sessions {
				cv := newConv(b, ProtoTCP, fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255), "192.0.2.1:502", t0)
				if err := d.Register(cv.tuple(), fmt.Sprint(i)); err != nil {
					b.Fatal(err)
				}
				pkts = append(pkts, cv.exchange(perSession/2)...)
			}
			now := t0
			b.SetBytes(int64(len(pkts[0].Data)))
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				p := pkts[i%len(pkts)]
				now = now.Add(time.Microsecond)
				p.Time = now
				d.Handle(p)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "pkts/s")
		})
	}
}

// BenchmarkParse measures the parser alone.
func BenchmarkParse(b *testing.B) {
	cv := newConv(b, ProtoTCP, "192.0.2.10:40000", "10.0.0.2:502", t0)
	p := cv.pkt(0, true, tcpACK|tcpPSH, "\x00\x01\x00\x00\x00\x06\x01\x03\x00\x00\x00\x0a")
	var pi pinfo
	b.ReportAllocs()
	for b.Loop() {
		parse(p.Data, &pi)
	}
}

// BenchmarkDemuxTick measures one timer pass over 50,000 open sessions (the sensor
// ticks every 100 ms).
func BenchmarkDemuxTick(b *testing.B) {
	d := NewDemux(Config{}, nil, func(*Finished) {})
	for i := range 50000 {
		cv := newConv(b, ProtoUDP, fmt.Sprintf("10.%d.%d.%d:40000", i>>16&255, i>>8&255, i&255), "192.0.2.1:161", t0)
		if err := d.Register(cv.tuple(), fmt.Sprint(i)); err != nil {
			b.Fatal(err)
		}
		d.Handle(cv.pkt(0, true, 0, "get"))
	}
	b.ReportAllocs()
	for b.Loop() {
		d.Tick(t0.Add(time.Second))
	}
}
