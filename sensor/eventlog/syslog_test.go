package eventlog

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rfc5424 matches a message: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD MSG.
var rfc5424 = regexp.MustCompile(`^<(\d{1,3})>1 (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) ([!-~]{1,255}) ([!-~]{1,48}) ([!-~]{1,128}) ([!-~]{1,32}) - (.*)$`)

type syslogMsg struct {
	pri                      int
	host, app, procID, msgID string
	record                   map[string]any
}

func parseSyslog(t *testing.T, b []byte) syslogMsg {
	t.Helper()
	m := rfc5424.FindSubmatch(b)
	if m == nil {
		t.Fatalf("not an RFC 5424 message: %q", b)
	}
	pri, _ := strconv.Atoi(string(m[1]))
	if _, err := time.Parse(time.RFC3339Nano, string(m[2])); err != nil {
		t.Errorf("timestamp %q: %v", m[2], err)
	}
	out := syslogMsg{pri: pri, host: string(m[3]), app: string(m[4]), procID: string(m[5]), msgID: string(m[6])}
	if err := json.Unmarshal(m[7], &out.record); err != nil {
		t.Fatalf("MSG is not the JSON record: %v: %q", err, m[7])
	}
	return out
}

func logThree(t *testing.T, cfg SyslogConfig) *Log {
	t.Helper()
	l, err := New(Config{Syslog: &cfg, Observer: testObserver}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SessionStart(testSess)
	l.Event(&EventRecord{Session: testSess, Event: testEvents[1]})
	l.SessionEnd(endedSession())
	return l
}

// checkThree checks the three messages logThree sends.
func checkThree(t *testing.T, msgs []syslogMsg) {
	t.Helper()
	tests := []struct {
		msgID  string
		pri    int // facility local3 (19)
		action string
	}{
		{"session-start", 19*8 + 6, ActionSessionStart},
		{"protocol-event", 19*8 + 4, "write_multiple_registers"},
		{"session-end", 19*8 + 6, ActionSessionEnd},
	}
	for i, tc := range tests {
		t.Run(tc.msgID, func(t *testing.T) {
			m := msgs[i]
			if m.msgID != tc.msgID || m.pri != tc.pri || m.app != "pcapot" || m.host != "hp_1" {
				t.Errorf("header = %+v, want msgid %s pri %d app pcapot host hp_1", m, tc.msgID, tc.pri)
			}
			want(t, m.record, "event.action", tc.action)
			want(t, m.record, "pcapot.session_id", testSess.ID)
		})
	}
	want(t, msgs[1].record, "pcapot.ics.area_hex", fmt.Sprintf("%x", hostile))
}

func TestSyslogUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	l := logThree(t, SyslogConfig{Network: "udp", Address: pc.LocalAddr().String(), Facility: 19, Hostname: "hp 1"})
	var msgs []syslogMsg
	buf := make([]byte, 70000)
	for len(msgs) < 3 {
		_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("read datagram %d: %v", len(msgs)+1, err)
		}
		msgs = append(msgs, parseSyslog(t, buf[:n]))
	}
	checkThree(t, msgs)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.SyslogSent != 3 || st.SyslogErrors != 0 || st.SyslogDropped != 0 {
		t.Errorf("stats = %+v", st)
	}
}

// readFrames reads n octet-counted frames ("LEN SP MSG") from r, or n lines when lf.
func readFrames(t *testing.T, r *bufio.Reader, n int, lf bool) []syslogMsg {
	t.Helper()
	var out []syslogMsg
	for len(out) < n {
		if lf {
			line, err := r.ReadBytes('\n')
			if err != nil {
				t.Fatalf("line %d: %v", len(out)+1, err)
			}
			out = append(out, parseSyslog(t, line[:len(line)-1]))
			continue
		}
		lenStr, err := r.ReadString(' ')
		if err != nil {
			t.Fatalf("frame %d length: %v", len(out)+1, err)
		}
		size, err := strconv.Atoi(strings.TrimSuffix(lenStr, " "))
		if err != nil || size <= 0 {
			t.Fatalf("frame %d: bad length %q", len(out)+1, lenStr)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(r, b); err != nil {
			t.Fatalf("frame %d body: %v", len(out)+1, err)
		}
		out = append(out, parseSyslog(t, b))
	}
	return out
}

func serveFrames(t *testing.T, ln net.Listener, n int, lf bool) <-chan []syslogMsg {
	t.Helper()
	ch := make(chan []syslogMsg, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			t.Error(err)
			close(ch)
			return
		}
		defer c.Close()
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		ch <- readFrames(t, bufio.NewReader(c), n, lf)
	}()
	return ch
}

// selfSigned returns a server certificate for 127.0.0.1 and a pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "syslog test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// TestSyslogStream sends over TCP and TLS, with octet-counting framing.
func TestSyslogStream(t *testing.T) {
	cert, pool := selfSigned(t)
	tests := []struct {
		network string
		listen  func() (net.Listener, error)
		tls     *tls.Config
		lf      bool
	}{
		{"tcp", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }, nil, false},
		{"tcp", func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }, nil, true},
		{"tls", func() (net.Listener, error) {
			return tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		}, &tls.Config{RootCAs: pool}, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s lf=%v", tc.network, tc.lf), func(t *testing.T) {
			ln, err := tc.listen()
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			got := serveFrames(t, ln, 3, tc.lf)
			l := logThree(t, SyslogConfig{Network: tc.network, Address: ln.Addr().String(), TLS: tc.tls, NewlineFraming: tc.lf, Facility: 19, Hostname: "hp 1"})
			select {
			case msgs := <-got:
				if len(msgs) == 3 {
					checkThree(t, msgs)
				}
			case <-time.After(15 * time.Second):
				t.Fatal("no frames")
			}
			if err := l.Close(context.Background()); err != nil {
				t.Fatal(err)
			}
			if st := l.Stats(); st.SyslogSent != 3 || st.SyslogErrors != 0 {
				t.Errorf("stats = %+v", st)
			}
		})
	}
}

func TestSyslogTLSUntrusted(t *testing.T) {
	cert, _ := selfSigned(t)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c) // handshake fails on the client side
			c.Close()
		}
	}()
	l, err := New(Config{Syslog: &SyslogConfig{Network: "tls", Address: ln.Addr().String()}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	l.SessionStart(testSess)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := l.Stats(); st.SyslogSent != 0 || st.SyslogErrors != 1 {
		t.Errorf("stats = %+v, want the record refused by certificate verification", st)
	}
}

func TestSyslogDownDoesNotBlock(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	l, err := New(Config{Syslog: &SyslogConfig{Network: "tcp", Address: addr, QueueSize: 8}}, nil)
	if err != nil {
		t.Fatalf("New with a syslog server down: %v", err)
	}
	start := time.Now()
	for i := 0; i < 1000; i++ {
		l.SessionStart(testSess)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("logging took %v with syslog down", d)
	}
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	if st.SyslogSent != 0 || st.SyslogErrors+st.SyslogDropped != 1000 {
		t.Errorf("stats = %+v, want all 1000 records counted as errors or drops", st)
	}
}

func TestHeaderField(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", "-"},
		{"host name", "host_name"},
		{"h\u00e9", "h__"},
		{strings.Repeat("a", 300), strings.Repeat("a", 255)},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			if got := headerField(tc.in, 255); got != tc.want {
				t.Errorf("headerField(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
