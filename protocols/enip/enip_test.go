package enip

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pcapot/pcapot/internal/testenv"
	"github.com/pcapot/pcapot/protocols"
	"github.com/pcapot/pcapot/protocols/protocoltest"
)

// testIdentity is the persona of the tests: serial 0x4a3b2c1d, revision 32.11.
var testIdentity = protocols.Identity{
	Vendor:   "Rockwell Automation/Allen-Bradley",
	Product:  "ControlLogix 5570",
	Model:    "1756-L73/B LOGIX5573",
	Firmware: "32.011",
	Serial:   "4A3B2C1D",
	Hostname: "plc-line2",
	MAC:      net.HardwareAddr{0x00, 0x1d, 0x9c, 0xc7, 0x21, 0x5e},
}

var testNow = time.Date(2025, 3, 14, 9, 30, 15, 0, time.UTC)

func newHandler(t testing.TB, mod func(*Config)) *Handler {
	t.Helper()
	cfg := NewConfig()
	if mod != nil {
		mod(cfg)
	}
	id := testIdentity
	env := protocoltest.Env(t, &id)
	env.Now = func() time.Time { return testNow }
	env.Boot = testNow.Add(-time.Hour)
	h, err := New(env, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return h
}

// static stops the default tags from following the process, for byte-exact replies.
func static(c *Config) {
	for i := range c.Tags {
		c.Tags[i].Variation, c.Tags[i].Period, c.Tags[i].Rate = 0, 0, 0
	}
}

// The identity attributes 1-7 of the test persona: vendor 1, type 14, product code 57,
// revision 32.11, status 0x0060, serial 0x4a3b2c1d, product name.
var identityAttrs = "0100 0e00 3900 200b 6000 1d2c3b4a 14" + hex.EncodeToString([]byte(testIdentity.Model))

// listIdentityReply is the ListIdentity reply to a request with sender context ctx
// from a session whose sensor address is 127.0.0.1.
func listIdentityReply(ctx string) string {
	item := "0100 0002 af12 7f000001 0000000000000000 " + identityAttrs + " 03"
	n := len(strings.ReplaceAll(item, " ", "")) / 2
	return fmt.Sprintf("6300 %02x00 00000000 00000000 %s 00000000 0100 0c00 %02x00 %s", n+6, ctx, n, item)
}

const ctx8 = "0102030405060708"

// exchange runs requests over one TCP connection served by h (through net.Pipe) and
// returns the replies (one read per request, nil when none arrives).
type client struct {
	t    *testing.T
	conn net.Conn
	sess *protocoltest.Session
	done chan error
}

func dial(t *testing.T, h *Handler) *client {
	t.Helper()
	a, b := net.Pipe()
	sess := protocoltest.NewSession(t, netip.MustParseAddrPort("127.0.0.1:44818"), netip.MustParseAddrPort("127.0.0.1:50000"))
	c := &client{t: t, conn: a, sess: sess, done: make(chan error, 1)}
	go func() {
		err := h.ServeStream(context.Background(), sess, b)
		b.Close()
		c.done <- err
	}()
	t.Cleanup(func() { a.Close() })
	return c
}

// roundTrip sends req (nothing when empty) and reads one encapsulation message back
// (nil when the server sends nothing within a short time, io.EOF when it closed).
func (c *client) roundTrip(req []byte) ([]byte, error) {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(2 * time.Second))
	if len(req) > 0 {
		if _, err := c.conn.Write(req); err != nil {
			return nil, err
		}
	}
	c.conn.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	hdr := make([]byte, HeaderLen)
	if _, err := io.ReadFull(c.conn, hdr); err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return nil, nil
		}
		return nil, err
	}
	n := binary.LittleEndian.Uint16(hdr[2:])
	body := make([]byte, n)
	c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.ReadFull(c.conn, body); err != nil {
		return nil, err
	}
	return append(hdr, body...), nil
}

// register registers a session and returns its handle.
func (c *client) register() uint32 {
	c.t.Helper()
	r, err := c.roundTrip(protocoltest.Unhex(c.t, "6500 0400 00000000 00000000 "+ctx8+" 00000000 0100 0000"))
	if err != nil || len(r) != 28 || r[8] != 0 {
		c.t.Fatalf("RegisterSession: %x %v", r, err)
	}
	return binary.LittleEndian.Uint32(r[4:])
}

// rr wraps a CIP request in SendRRData for session handle.
func rr(handle uint32, cip []byte) []byte {
	data := AppendRRData(nil, Item{Type: ItemNullAddress}, Item{Type: ItemUnconnectedData, Data: cip})
	var ctx [8]byte
	copy(ctx[:], []byte{1, 2, 3, 4, 5, 6, 7, 8})
	return AppendEncap(nil, Header{Command: CmdSendRRData, Session: handle, Context: ctx}, data)
}

// cipReply extracts the CIP reply of a SendRRData reply.
func cipReply(t *testing.T, reply []byte) []byte {
	t.Helper()
	h, err := ParseHeader(reply)
	if err != nil || h.Status != 0 {
		t.Fatalf("SendRRData reply %x: status %d %v", reply, h.Status, err)
	}
	d, err := ParseRRData(reply[HeaderLen:])
	if err != nil || len(d.Items) != 2 || d.Items[0].Type != ItemNullAddress || d.Items[1].Type != ItemUnconnectedData {
		t.Fatalf("SendRRData reply %x: %+v %v", reply, d, err)
	}
	return d.Items[1].Data
}

func TestEncapsulation(t *testing.T) {
	tests := []struct {
		name string
		req  string
		want string // "" for no reply
		op   string
		exc  int
	}{
		{"list identity (nmap enip-info)", "6300 0000 00000000 00000000 00000000c1debed1 00000000",
			listIdentityReply("00000000c1debed1"), "list_identity", 0},
		{"list services", "0400 0000 00000000 00000000 " + ctx8 + " 00000000",
			"0400 1a00 00000000 00000000 " + ctx8 + " 00000000 0100 0001 1400 0100 2001 436f6d6d756e69636174696f6e730000", "list_services", 0},
		{"list interfaces", "6400 0000 00000000 00000000 " + ctx8 + " 00000000",
			"6400 0200 00000000 00000000 " + ctx8 + " 00000000 0000", "list_interfaces", 0},
		{"nop gets no reply", "0000 0400 00000000 00000000 " + ctx8 + " 00000000 deadbeef", "", "nop", 0},
		{"unknown command", "0200 0000 00000000 00000000 " + ctx8 + " 00000000",
			"0200 0000 00000000 01000000 " + ctx8 + " 00000000", "unknown_command", 1},
		{"indicate status is not supported", "7200 0000 00000000 00000000 " + ctx8 + " 00000000",
			"7200 0000 00000000 01000000 " + ctx8 + " 00000000", "indicate_status", 1},
		{"send rr data without session", "6f00 1000 00000000 00000000 " + ctx8 + " 00000000 00000000 0000 0200 0000 0000 b200 0000",
			"6f00 0000 00000000 64000000 " + ctx8 + " 00000000", "send_rr_data", 0x64},
		{"send rr data with unknown session", "6f00 1000 11223344 00000000 " + ctx8 + " 00000000 00000000 0000 0200 0000 0000 b200 0000",
			"6f00 0000 11223344 64000000 " + ctx8 + " 00000000", "send_rr_data", 0x64},
		{"send unit data without session", "7000 0000 00000000 00000000 " + ctx8 + " 00000000",
			"7000 0000 00000000 64000000 " + ctx8 + " 00000000", "send_unit_data", 0x64},
		{"unregister without session", "6600 0000 00000000 00000000 " + ctx8 + " 00000000",
			"6600 0000 00000000 64000000 " + ctx8 + " 00000000", "unregister_session", 0x64},
		{"register session version 2", "6500 0400 00000000 00000000 " + ctx8 + " 00000000 0200 0000",
			"6500 0400 00000000 69000000 " + ctx8 + " 00000000 0100 0000", "register_session", 0x69},
		{"register session with short data", "6500 0200 00000000 00000000 " + ctx8 + " 00000000 0100",
			"6500 0000 00000000 65000000 " + ctx8 + " 00000000", "register_session", 0x65},
		{"options set: discarded", "6300 0000 00000000 00000000 " + ctx8 + " 01000000", "", "list_identity", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, newHandler(t, nil))
			got, err := c.roundTrip(protocoltest.Unhex(t, tc.req))
			if err != nil {
				t.Fatal(err)
			}
			if want := protocoltest.Unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("reply\n got %x\nwant %x", got, want)
			}
			c.conn.Close()
			<-c.done
			evs := c.sess.Events()
			if len(evs) != 1 {
				t.Fatalf("%d events: %+v", len(evs), evs)
			}
			if evs[0].Op != tc.op || evs[0].Exception != tc.exc || evs[0].Protocol != "enip" {
				t.Errorf("event %+v, want op %q exception %d", evs[0], tc.op, tc.exc)
			}
		})
	}
}

func TestSessionLifecycle(t *testing.T) {
	h := newHandler(t, nil)
	c := dial(t, h)
	handle := c.register()
	if handle == 0 {
		t.Fatal("session handle 0")
	}
	// A second RegisterSession on the connection: "invalid command" with the handle.
	r, _ := c.roundTrip(protocoltest.Unhex(t, "6500 0400 00000000 00000000 "+ctx8+" 00000000 0100 0000"))
	if want := fmt.Sprintf("6500 0400 %08x 01000000 %s 00000000 0100 0000", swap32(handle), ctx8); !bytes.Equal(r, protocoltest.Unhex(t, want)) {
		t.Errorf("second register %x, want %s", r, want)
	}
	// Another connection gets another handle.
	if other := dial(t, h).register(); other == handle {
		t.Errorf("two connections share handle %08x", handle)
	}
	// Bad CPF in SendRRData: incorrect data.
	bad := AppendEncap(nil, Header{Command: CmdSendRRData, Session: handle}, protocoltest.Unhex(t, "00000000 0000 0100 b200 0000"))
	r, _ = c.roundTrip(bad)
	if st := binary.LittleEndian.Uint32(r[8:]); st != StatusIncorrectData {
		t.Errorf("one-item CPF: status 0x%x, want 0x3", st)
	}
	// UnRegisterSession closes the connection without a reply.
	if _, err := c.conn.Write(AppendEncap(nil, Header{Command: CmdUnRegisterSession, Session: handle}, nil)); err != nil {
		t.Fatal(err)
	}
	if err := <-c.done; err != nil {
		t.Errorf("ServeStream: %v", err)
	}
	ops := []string{}
	for _, e := range c.sess.Events() {
		ops = append(ops, e.Op)
	}
	if got := strings.Join(ops, ","); got != "register_session,register_session,send_rr_data,unregister_session" {
		t.Errorf("events %s", got)
	}
}

func swap32(v uint32) uint32 {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], v)
	return binary.BigEndian.Uint32(b[:])
}

func TestCIP(t *testing.T) {
	readLine1 := "4c 07 91 0b 4c696e65315f5370656564 00 0100"
	tests := []struct {
		name string
		req  string // CIP request
		want string // CIP reply
		op   string
		area string
		exc  int
	}{
		{"identity get attribute all", "01 02 2001 2401", "81 00 00 00 " + identityAttrs, "get_attribute_all", "1/1", 0},
		{"identity product name", "0e 03 2001 2401 3007", "8e 00 00 00 14" + hex.EncodeToString([]byte(testIdentity.Model)), "get_attribute_single", "1/1/7", 0},
		{"identity serial", "0e 03 2001 2401 3006", "8e 00 00 00 1d2c3b4a", "get_attribute_single", "1/1/6", 0},
		{"identity revision", "0e 03 2001 2401 3004", "8e 00 00 00 200b", "get_attribute_single", "1/1/4", 0},
		{"identity vendor 16-bit segments", "0e 05 2100 0100 2501 0100 3001", "8e 00 00 00 0100", "get_attribute_single", "1/1/1", 0},
		{"identity state", "0e 03 2001 2401 3008", "8e 00 00 00 03", "get_attribute_single", "1/1/8", 0},
		{"identity class revision", "0e 03 2001 2400 3001", "8e 00 00 00 0100", "get_attribute_single", "1/0/1", 0},
		{"identity unknown attribute", "0e 03 2001 2401 3063", "8e 00 14 00", "get_attribute_single", "1/1/99", 0x14},
		{"identity instance 2", "0e 03 2001 2402 3001", "8e 00 05 00", "get_attribute_single", "1/2/1", 0x05},
		{"identity set attribute", "10 03 2001 2401 3007 0441424344", "90 00 0e 00", "set_attribute_single", "1/1/7", 0x0e},
		{"identity unsupported service", "4b 02 2001 2401", "cb 00 08 00", "execute_pccc", "1/1", 0x08},
		{"unknown class", "0e 03 2064 2401 3001", "8e 00 05 00", "get_attribute_single", "100/1/1", 0x05},
		{"bad path segment", "0e 01 e001", "8e 00 04 00", "get_attribute_single", "", 0x04},
		{"path longer than request", "0e 05 2001 2401", "8e 00 26 00", "get_attribute_single", "", 0x26},
		{"ethernet link mac", "0e 03 20f6 2401 3003", "8e 00 00 00 001d9cc7215e", "get_attribute_single", "246/1/3", 0},
		{"tcp/ip host name", "0e 03 20f5 2401 3006", "8e 00 00 00 0900 706c632d6c696e6532 00", "get_attribute_single", "245/1/6", 0},
		{"tcp/ip interface configuration", "0e 03 20f5 2401 3005", "8e 00 00 00 0100007f 00ffffff fe00007f 00000000 00000000 0000", "get_attribute_single", "245/1/5", 0},
		{"read tag REAL", readLine1, "cc 00 00 00 ca00 0000 2a42", "read_tag", "Line1_Speed", 0},
		{"read tag case-insensitive", "4c 07 91 0b 4c494e45315f5350454544 00 0100", "cc 00 00 00 ca00 0000 2a42", "read_tag", "LINE1_SPEED", 0},
		{"read tag BOOL", "4c 06 91 09 4c696e65315f52756e 00 0100", "cc 00 00 00 c100 ff", "read_tag", "Line1_Run", 0},
		{"read tag DINT", "4c 07 91 0b 42617463685f436f756e74 00 0100", "cc 00 00 00 c400 9ccf0200", "read_tag", "Batch_Count", 0},
		{"read array elements 2-3", "4c 0a 91 10 5265636970655f536574706f696e7473 2802 0200", "cc 00 00 00 ca00 cdcc4c40 0000f042", "read_tag", "Recipe_Setpoints[2]", 0},
		{"read array beyond end", "4c 0a 91 10 5265636970655f536574706f696e7473 2807 0200", "cc 00 ff 01 0521", "read_tag", "Recipe_Setpoints[7]", 0xff},
		{"read unknown tag", "4c 04 91 05 4e6f546167 00 0100", "cc 00 04 00", "read_tag", "NoTag", 0x04},
		{"read tag without count", "4c 07 91 0b 4c696e65315f5370656564 00", "cc 00 13 00", "read_tag", "Line1_Speed", 0x13},
		{"read tag fragmented", "52 07 91 0b 4c696e65315f5370656564 00 0100 00000000", "d2 00 00 00 ca00 0000 2a42", "read_tag_fragmented", "Line1_Speed", 0},
		{"write tag wrong type", "4d 07 91 0b 4c696e65315f5370656564 00 c400 0100 01000000", "cd 00 ff 01 0721", "write_tag", "Line1_Speed", 0xff},
		{"write tag short data", "4d 07 91 0b 4c696e65315f5370656564 00 ca00 0100 0000", "cd 00 13 00", "write_tag", "Line1_Speed", 0x13},
		{"unsupported service on a tag", "4f 07 91 0b 4c696e65315f5370656564 00", "cf 00 08 00", "read_modify_write_tag", "Line1_Speed", 0x08},
		{"unconnected send to slot 0", "52 02 2006 2401 0a0e 0800 0e03 2001 2401 3001 0100 0100", "8e 00 00 00 0100", "get_attribute_single", "1/1/1", 0},
		{"unconnected send to slot 3", "52 02 2006 2401 0a0e 0800 0e03 2001 2401 3001 0100 0103", "d2 00 01 01 1203", "unconnected_send", "6/1", 0x01},
		{"unconnected send to port 2", "52 02 2006 2401 0a0e 0800 0e03 2001 2401 3001 0100 0200", "d2 00 01 01 1103", "unconnected_send", "6/1", 0x01},
		{"unconnected send truncated", "52 02 2006 2401 0a0e 0800 0e03", "d2 00 13 00", "unconnected_send", "6/1", 0x13},
		{"forward open to another slot", "54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 a3 03 010320022401",
			"d4 00 01 01 1203 3412 4d00 78563412 00 00", "forward_open", "6/1", 0x01},
		{"forward open for class 1 i/o", "54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 01 03 010020022401",
			"d4 00 01 01 1601 3412 4d00 78563412 00 00", "forward_open", "6/1", 0x01},
		{"forward open to an assembly", "54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 a3 03 010020042464",
			"d4 00 01 01 1503 3412 4d00 78563412 00 00", "forward_open", "6/1", 0x01},
		{"forward open too large", "54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 ff45 80841e00 f443 a3 03 010020022401",
			"d4 00 01 02 0901 f801 3412 4d00 78563412 00 00", "forward_open", "6/1", 0x01},
		{"forward close: no connection", "4e 02 2006 2401 0a0e 3412 4d00 78563412 03 00 010020022401",
			"ce 00 01 01 0701 3412 4d00 78563412 00 00", "forward_close", "6/1", 0x01},
		{"symbol browse from instance 0x70", "55 03 206b 2500 7000 0200 0100 0200",
			"d5 00 00 00 79000000 0a00 416c61726d5f576f7264 c400 8c000000 0900 56616c76655f436d64 c220", "get_instance_attribute_list", "107/112", 0},
		{"symbol browse of an unknown attribute", "55 03 206b 2500 0000 0100 0900", "d5 00 14 00", "get_instance_attribute_list", "107/0", 0x14},
		{"multiple service packet", "0a 02 2002 2401 0200 0600 0e00 0e03 2001 2401 3001 4c04 9105 4e6f546167 00 0100",
			"8a 00 1e 00 0200 0600 0c00 8e000000 0100 cc000400", "multiple_service_packet", "2/1", 0x1e},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, newHandler(t, static))
			handle := c.register()
			r, err := c.roundTrip(rr(handle, protocoltest.Unhex(t, tc.req)))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := cipReply(t, r), protocoltest.Unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("reply\n got %x\nwant %x", got, want)
			}
			c.conn.Close()
			<-c.done
			evs := c.sess.Events()
			var ev protocols.Event
			for _, e := range evs[1:] { // after register_session
				if e.Op == tc.op {
					ev = e
				}
			}
			if ev.Op != tc.op || ev.Area != tc.area || ev.Exception != tc.exc {
				t.Errorf("events %+v, want op %q area %q exception %d", evs[1:], tc.op, tc.area, tc.exc)
			}
		})
	}
}

// TestWriteRemembered writes tags over one connection and reads them over another.
func TestWriteRemembered(t *testing.T) {
	h := newHandler(t, static)
	steps := []struct {
		name, req, want string
	}{
		{"write REAL 55.5", "4d 07 91 0b 4c696e65315f5370656564 00 ca00 0100 00005e42", "cd 00 00 00"},
		{"read it back", "4c 07 91 0b 4c696e65315f5370656564 00 0100", "cc 00 00 00 ca00 00005e42"},
		{"write array elements 1-2", "4d 0a 91 10 5265636970655f536574706f696e7473 2801 ca00 0200 0000c842 00004843", "cd 00 00 00"},
		{"read elements 0-3", "4c 09 91 10 5265636970655f536574706f696e7473 0400", "cc 00 00 00 ca00 00009142 0000c842 00004843 0000f042"},
		{"write BOOL false", "4d 06 91 09 4c696e65315f52756e 00 c100 0100 00", "cd 00 00 00"},
		{"read BOOL", "4c 06 91 09 4c696e65315f52756e 00 0100", "cc 00 00 00 c100 00"},
		{"write fragment of the DINT", "53 07 91 0b 42617463685f436f756e74 00 c400 0100 02000000 0100", "d3 00 00 00"},
		{"read DINT", "4c 07 91 0b 42617463685f436f756e74 00 0100", "cc 00 00 00 c400 9ccf0100"},
	}
	for i, st := range steps {
		c := dial(t, h) // a new connection per step
		handle := c.register()
		r, err := c.roundTrip(rr(handle, protocoltest.Unhex(t, st.req)))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := cipReply(t, r), protocoltest.Unhex(t, st.want); !bytes.Equal(got, want) {
			t.Fatalf("step %d %s: reply\n got %x\nwant %x", i, st.name, got, want)
		}
		c.conn.Close()
		<-c.done
		evs := c.sess.Events()
		if ev := evs[len(evs)-1]; strings.HasPrefix(st.name, "write") && (!ev.Write || ev.Detail["value"] == "") {
			t.Errorf("step %s: event %+v", st.name, ev)
		}
	}
}

// TestConnectedMessaging opens a class 3 connection, reads and writes a tag over it
// with SendUnitData, and closes it.
func TestConnectedMessaging(t *testing.T) {
	h := newHandler(t, nil)
	c := dial(t, h)
	handle := c.register()
	fo := protocoltest.Unhex(t, "54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 a3 03 010020022401")
	r, err := c.roundTrip(rr(handle, fo))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ParseResponse(cipReply(t, r))
	if err != nil || resp.Service != 0xd4 || resp.Status != 0 || len(resp.Data) != 26 {
		t.Fatalf("forward open reply %+v %v", resp, err)
	}
	otID := binary.LittleEndian.Uint32(resp.Data)
	if want := protocoltest.Unhex(t, "01000080 3412 4d00 78563412 80841e00 80841e00 0000"); !bytes.Equal(resp.Data[4:], want) {
		t.Errorf("forward open reply data %x, want ot-id + %x", resp.Data, want)
	}
	// The same triad again: duplicate.
	r, _ = c.roundTrip(rr(handle, fo))
	if got := cipReply(t, r); !bytes.Equal(got, protocoltest.Unhex(t, "d4 00 01 01 0001 3412 4d00 78563412 00 00")) {
		t.Errorf("duplicate forward open %x", got)
	}
	unit := func(conn uint32, seq uint16, cip string) []byte {
		body := binary.LittleEndian.AppendUint16(nil, seq)
		data := AppendRRData(nil, Item{Type: ItemConnectedAddress, Data: binary.LittleEndian.AppendUint32(nil, conn)}, Item{Type: ItemConnectedData, Data: append(body, protocoltest.Unhex(t, cip)...)})
		return AppendEncap(nil, Header{Command: CmdSendUnitData, Session: handle}, data)
	}
	r, err = c.roundTrip(unit(otID, 7, "4d 07 91 0b 4c696e65315f5370656564 00 ca00 0100 00005e42"))
	if err != nil {
		t.Fatal(err)
	}
	want := AppendEncap(nil, Header{Command: CmdSendUnitData, Session: handle},
		AppendRRData(nil, Item{Type: ItemConnectedAddress, Data: protocoltest.Unhex(t, "01000080")}, Item{Type: ItemConnectedData, Data: protocoltest.Unhex(t, "0700 cd000000")}))
	if !bytes.Equal(r, want) {
		t.Errorf("connected write\n got %x\nwant %x", r, want)
	}
	r, _ = c.roundTrip(unit(otID, 8, "4c 07 91 0b 4c696e65315f5370656564 00 0100"))
	if !bytes.HasSuffix(r, protocoltest.Unhex(t, "0800 cc000000 ca00 00005e42")) {
		t.Errorf("connected read %x", r)
	}
	// Unknown connection id: dropped.
	if r, _ := c.roundTrip(unit(otID+1, 9, "4c 07 91 0b 4c696e65315f5370656564 00 0100")); r != nil {
		t.Errorf("reply %x for an unknown connection", r)
	}
	fc := protocoltest.Unhex(t, "4e 02 2006 2401 0a0e 3412 4d00 78563412 03 00 010020022401")
	r, _ = c.roundTrip(rr(handle, fc))
	if got := cipReply(t, r); !bytes.Equal(got, protocoltest.Unhex(t, "ce 00 00 00 3412 4d00 78563412 00 00")) {
		t.Errorf("forward close %x", got)
	}
	if r, _ := c.roundTrip(unit(otID, 10, "4c 07 91 0b 4c696e65315f5370656564 00 0100")); r != nil {
		t.Errorf("reply %x after forward close", r)
	}
	c.conn.Close()
	<-c.done
	if h.openConns != 0 {
		t.Errorf("%d connections still open", h.openConns)
	}
}

// TestConnectionLimit fills the device's connections; they are released when the
// TCP connection that opened them ends.
func TestConnectionLimit(t *testing.T) {
	h := newHandler(t, nil)
	c := dial(t, h)
	handle := c.register()
	for i := range maxConnections + 1 {
		fo := protocoltest.Unhex(t, fmt.Sprintf("54 02 2006 2401 0a0e 02000080 01000080 %04x 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 a3 03 010020022401", swap16(uint16(i))))
		r, err := c.roundTrip(rr(handle, fo))
		if err != nil {
			t.Fatal(err)
		}
		resp, _ := ParseResponse(cipReply(t, r))
		if i < maxConnections && resp.Status != 0 {
			t.Fatalf("forward open %d: status 0x%x", i, resp.Status)
		}
		if i == maxConnections && (resp.Status != CIPConnectionFailure || len(resp.Ext) != 1 || resp.Ext[0] != 0x0113) {
			t.Fatalf("forward open beyond the limit: %+v", resp)
		}
	}
	c.conn.Close()
	<-c.done
	if h.openConns != 0 {
		t.Errorf("%d connections still open after the TCP connection ended", h.openConns)
	}
}

func swap16(v uint16) uint16 { return v<<8 | v>>8 }

func TestResetDropsConnection(t *testing.T) {
	c := dial(t, newHandler(t, nil))
	handle := c.register()
	r, err := c.roundTrip(rr(handle, protocoltest.Unhex(t, "05 02 2001 2401")))
	if err != nil {
		t.Fatal(err)
	}
	if got := cipReply(t, r); !bytes.Equal(got, protocoltest.Unhex(t, "85 00 00 00")) {
		t.Errorf("reset reply %x", got)
	}
	if err := <-c.done; err != nil {
		t.Errorf("ServeStream: %v", err)
	}
	evs := c.sess.Events()
	if ev := evs[len(evs)-1]; ev.Op != "reset" || !ev.Write {
		t.Errorf("event %+v", ev)
	}
}

func TestHostileStreams(t *testing.T) {
	t.Run("length beyond limit", func(t *testing.T) {
		c := dial(t, newHandler(t, nil))
		r, err := c.roundTrip(protocoltest.Unhex(t, "6f00 ffff 00000000 00000000 "+ctx8+" 00000000"))
		if err != nil {
			t.Fatal(err)
		}
		if want := protocoltest.Unhex(t, "6f00 0000 00000000 65000000 "+ctx8+" 00000000"); !bytes.Equal(r, want) {
			t.Errorf("reply %x, want %x", r, want)
		}
		if err := <-c.done; err != nil {
			t.Errorf("ServeStream: %v", err)
		}
	})
	t.Run("half header then close", func(t *testing.T) {
		c := dial(t, newHandler(t, nil))
		c.conn.Write(protocoltest.Unhex(t, "6300 0000 0000"))
		c.conn.Close()
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("ServeStream: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler did not return after EOF")
		}
	})
	t.Run("idle timeout on a half frame", func(t *testing.T) {
		h := newHandler(t, func(c *Config) { c.IdleTimeout = 200 * time.Millisecond })
		c := dial(t, h)
		c.conn.Write(protocoltest.Unhex(t, "6500 0400 00000000 00000000 "+ctx8+" 00000000 01"))
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("ServeStream: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handler did not time out")
		}
	})
	t.Run("request limit", func(t *testing.T) {
		h := newHandler(t, func(c *Config) { c.MaxRequests = 2 })
		c := dial(t, h)
		req := protocoltest.Unhex(t, "6300 0000 00000000 00000000 "+ctx8+" 00000000")
		go c.conn.Write(bytes.Repeat(req, 3))
		for range 2 {
			if r, err := c.roundTrip(nil); err != nil || r == nil {
				t.Fatalf("reply %x %v", r, err)
			}
		}
		if err := <-c.done; !errors.Is(err, ErrSessionLimit) {
			t.Errorf("ServeStream: %v, want ErrSessionLimit", err)
		}
	})
	t.Run("busy stream that always ends mid-message outlives the idle timeout", func(t *testing.T) {
		h := newHandler(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
		c := dial(t, h)
		msg := protocoltest.Unhex(t, "6400 0000 00000000 00000000 "+ctx8+" 00000000")
		go func() {
			c.conn.Write(msg[:10])
			for range 12 { // 1.2 s of traffic, each write ending inside the next message
				time.Sleep(100 * time.Millisecond)
				c.conn.Write(append(append([]byte(nil), msg[10:]...), msg[:10]...))
			}
		}()
		for i := range 12 {
			c.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
			r := make([]byte, len(msg)+2)
			if _, err := io.ReadFull(c.conn, r); err != nil {
				t.Fatalf("reply %d: %v", i, err)
			}
		}
	})
	t.Run("several messages in one segment", func(t *testing.T) {
		c := dial(t, newHandler(t, nil))
		req := protocoltest.Unhex(t, "0400 0000 00000000 00000000 "+ctx8+" 00000000 6400 0000 00000000 00000000 "+ctx8+" 00000000")
		r1, err := c.roundTrip(req)
		if err != nil || r1 == nil || r1[0] != 0x04 {
			t.Fatalf("first reply %x %v", r1, err)
		}
		r2, err := c.roundTrip(nil)
		if err != nil || r2 == nil || r2[0] != 0x64 {
			t.Fatalf("second reply %x %v", r2, err)
		}
	})
}

func TestUDP(t *testing.T) {
	h := newHandler(t, nil)
	srv := protocoltest.ServeUDP(t, "", h)
	c, err := net.Dial("udp", srv.Addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tests := []struct{ name, req, want string }{
		{"list identity", "6300 0000 00000000 00000000 00000000c1debed1 00000000", listIdentityReply("00000000c1debed1")},
		{"list interfaces", "6400 0000 00000000 00000000 " + ctx8 + " 00000000", "6400 0200 00000000 00000000 " + ctx8 + " 00000000 0000"},
		{"register session needs tcp", "6500 0400 00000000 00000000 " + ctx8 + " 00000000 0100 0000", "6500 0000 00000000 01000000 " + ctx8 + " 00000000"},
	}
	buf := make([]byte, 1500)
	for _, tc := range tests {
		if _, err := c.Write(protocoltest.Unhex(t, tc.req)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if want := protocoltest.Unhex(t, tc.want); !bytes.Equal(buf[:n], want) {
			t.Errorf("%s: reply\n got %x\nwant %x", tc.name, buf[:n], want)
		}
	}
}

func TestSpecs(t *testing.T) {
	specs := Specs()
	if len(specs) != 2 || specs[0].Name != "enip" || specs[0].Transport != protocols.TCP || specs[1].Name != "enip-udp" || specs[1].Transport != protocols.UDP {
		t.Fatalf("specs %+v", specs)
	}
	cfgTCP, cfgUDP := specs[0].NewConfig(), specs[1].NewConfig()
	if cfgTCP != cfgUDP {
		t.Fatal("the TCP and UDP specs do not share their config")
	}
	cfgTCP.(*Config).ProductCode = 99
	env := protocoltest.Env(t, &testIdentity)
	ht, err := specs[0].New(env, cfgTCP)
	if err != nil {
		t.Fatal(err)
	}
	hu, err := specs[1].New(env, cfgUDP)
	if err != nil {
		t.Fatal(err)
	}
	if ht != hu {
		t.Error("the TCP and UDP specs build two devices")
	}
	if _, ok := ht.(protocols.StreamHandler); !ok {
		t.Error("not a StreamHandler")
	}
	if _, ok := hu.(protocols.DatagramHandler); !ok {
		t.Error("not a DatagramHandler")
	}
	if ht.(*Handler).ident.ProductCode != 99 {
		t.Error("decoded config not used")
	}
	if _, err := specs[1].New(env, NewConfig()); !errors.Is(err, protocols.ErrConfig) {
		t.Errorf("foreign config: %v", err)
	}
	if _, err := Specs()[0].New(env, "x"); !errors.Is(err, protocols.ErrConfig) {
		t.Errorf("wrong config type: %v", err)
	}
}

func TestConfig(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config, *protocols.Identity)
		want string
	}{
		{"defaults", func(*Config, *protocols.Identity) {}, ""},
		{"bad revision", func(c *Config, _ *protocols.Identity) { c.Revision = "twenty" }, "revision"},
		{"firmware without revision", func(_ *Config, id *protocols.Identity) { id.Firmware = "latest" }, "revision"},
		{"no serial", func(_ *Config, id *protocols.Identity) { id.Serial = "" }, "serial"},
		{"bad tag type", func(c *Config, _ *protocols.Identity) { c.Tags[0].Type = "STRING" }, "STRING"},
		{"bad tag name", func(c *Config, _ *protocols.Identity) { c.Tags[0].Name = "1abc" }, "1abc"},
		{"duplicate tag", func(c *Config, _ *protocols.Identity) { c.Tags[1].Name = "line1_speed" }, "twice"},
		{"too many values", func(c *Config, _ *protocols.Identity) { c.Tags[0].Values = []float64{1, 2} }, "values"},
		{"INT out of range", func(c *Config, _ *protocols.Identity) { c.Tags[2].Values = []float64{40000} }, "range"},
		{"bad netmask", func(c *Config, _ *protocols.Identity) { c.Netmask = "255.255.255" }, "netmask"},
		{"moving array", func(c *Config, _ *protocols.Identity) { c.Tags[4].Variation, c.Tags[4].Period = 1, time.Minute }, "scalar"},
		{"counting BOOL", func(c *Config, _ *protocols.Identity) { c.Tags[1].Rate = 1 }, "BOOL has no rate"},
		{"negative period", func(c *Config, _ *protocols.Identity) { c.Tags[0].Period = -time.Second }, "negative period"},
		{"small max_data_length", func(c *Config, _ *protocols.Identity) { c.MaxDataLength = 100 }, "max_data_length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := NewConfig()
			id := testIdentity
			tc.mod(c, &id)
			_, err := New(protocoltest.Env(t, &id), c)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, protocols.ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want ErrConfig mentioning %q", err, tc.want)
			}
		})
	}
	for in, want := range map[string][2]uint8{"V20.19": {20, 19}, "20.019": {20, 19}, "03.10.08(22)": {3, 10}, "v4.5.2": {4, 5}} {
		ma, mi, ok := parseRevision(in)
		if !ok || ma != want[0] || mi != want[1] {
			t.Errorf("parseRevision(%q) = %d.%d %v", in, ma, mi, ok)
		}
	}
	if serialFrom("4A3B2C1D") != 0x4a3b2c1d || serialFrom("0x00c0ffee") != 0xc0ffee || serialFrom("SN-2231") == serialFrom("SN-2232") {
		t.Error("serialFrom")
	}
}

// TestNmapEnipInfo runs nmap's enip-info script over TCP and over UDP.
func TestNmapEnipInfo(t *testing.T) {
	nmap := testenv.LookPath(t, "nmap")
	h := newHandler(t, nil)
	tcp := protocoltest.ServeTCP(t, "127.0.0.1:0", h)
	udp := protocoltest.ServeUDP(t, "127.0.0.1:0", h)
	for _, tc := range []struct {
		scan string
		port uint16
	}{{"-sT", tcp.Addr.Port()}, {"-sU", udp.Addr.Port()}} {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
		out, err := exec.CommandContext(ctx, nmap, "-Pn", "-n", tc.scan, "-p", fmt.Sprint(tc.port), "--script", "+enip-info", "127.0.0.1").CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("nmap %s: %v\n%s", tc.scan, err, out)
		}
		t.Logf("%s", out)
		for _, want := range []string{
			"type: Programmable Logic Controller (14)",
			"vendor: Rockwell Automation/Allen-Bradley (1)",
			"productName: 1756-L73/B LOGIX5573",
			"serialNumber: 0x4a3b2c1d",
			"productCode: 57",
			"revision: 32.11",
			"status: 0x0060",
			"state: 0x03",
			"deviceIp: 127.0.0.1",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("nmap %s output lacks %q", tc.scan, want)
			}
		}
	}
}

// TestTsharkDissects has Wireshark's ENIP and CIP dissectors decode a pcap of the
// byte-level exchanges.
func TestTsharkDissects(t *testing.T) {
	testenv.LookPath(t, "tshark")
	h := newHandler(t, nil)
	c := dial(t, h)
	var msgs [][]byte
	send := func(req []byte) {
		r, err := c.roundTrip(req)
		if err != nil || r == nil {
			t.Fatalf("no reply to %x: %v", req, err)
		}
		msgs = append(msgs, req, r)
	}
	send(protocoltest.Unhex(t, "6300 0000 00000000 00000000 00000000c1debed1 00000000"))
	send(protocoltest.Unhex(t, "0400 0000 00000000 00000000 "+ctx8+" 00000000"))
	reg := protocoltest.Unhex(t, "6500 0400 00000000 00000000 "+ctx8+" 00000000 0100 0000")
	send(reg)
	handle := binary.LittleEndian.Uint32(msgs[len(msgs)-1][4:])
	for _, cip := range []string{
		"01 02 2001 2401",
		"0e 03 2001 2401 3007",
		"0e 03 2064 2401 3001",
		"4c 07 91 0b 4c696e65315f5370656564 00 0100",
		"4d 07 91 0b 4c696e65315f5370656564 00 ca00 0100 00005e42",
		"4c 04 91 05 4e6f546167 00 0100",
		"52 02 2006 2401 0a0e 0800 0e03 2001 2401 3001 0100 0100",
		"0a 02 2002 2401 0200 0600 0e00 0e03 2001 2401 3001 4c04 9105 4e6f546167 00 0100",
		"55 03 206b 2500 0000 0200 0100 0200",
		"54 02 2006 2401 0a0e 02000080 01000080 3412 4d00 78563412 01 000000 80841e00 f443 80841e00 f443 a3 03 010020022401",
	} {
		send(rr(handle, protocoltest.Unhex(t, cip)))
	}
	fo, _ := ParseResponse(cipReply(t, msgs[len(msgs)-1]))
	body := append([]byte{1, 0}, protocoltest.Unhex(t, "4c 07 91 0b 4c696e65315f5370656564 00 0100")...)
	send(AppendEncap(nil, Header{Command: CmdSendUnitData, Session: handle}, AppendRRData(nil,
		Item{Type: ItemConnectedAddress, Data: fo.Data[:4]}, Item{Type: ItemConnectedData, Data: body})))
	// One TCP stream, client port 50000, server 44818, sequence numbers consistent.
	var pcap protocoltest.Pcap
	seq := [2]uint32{1000, 5000}
	for i, m := range msgs {
		dir := i % 2
		from, to := uint16(50000), uint16(44818)
		if dir == 1 {
			from, to = to, from
		}
		pcap.TCP(from, to, seq[dir], seq[1-dir], m)
		seq[dir] += uint32(len(m))
	}
	file := pcap.Write(t, "enip.pcap")
	text := string(protocoltest.Tshark(t, file, "-V", "-o", "tcp.analyze_sequence_numbers:FALSE"))
	for _, bad := range []string{"Malformed", "Expert Info (Error"} {
		if strings.Contains(text, bad) {
			t.Errorf("tshark reports %q", bad)
		}
	}
	for _, want := range []string{
		"Product Name: 1756-L73/B LOGIX5573", "Serial Number: 0x4a3b2c1d", "Communications",
		"Path destination unknown", "Path segment error", "Embedded service error", "Line1_Speed",
		"Forward Open (Response)", "Connected Data Item", "O->T Network Connection ID",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("tshark output lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("%s", text)
	}
}

// nodeClient runs a client script of testdata/nodeclient against a TCP server of h
// and returns its output.
func nodeClient(t *testing.T, h *Handler, script string, args ...string) ([]byte, *protocoltest.Server) {
	t.Helper()
	node := testenv.LookPath(t, "node")
	dir, err := filepath.Abs("testdata/nodeclient")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ethernet-ip", "st-ethernet-ip"} {
		_, err := os.Stat(filepath.Join(dir, "node_modules", m))
		testenv.Require(t, err == nil, "the %s client is not installed: run npm ci in %s", m, dir)
	}
	srv := protocoltest.ServeTCP(t, "127.0.0.1:0", h)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{script, fmt.Sprint(srv.Addr.Port())}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return bytes.TrimSpace(out), srv
}

// TestEthernetIPClient drives the device with a real Logix client, the ethernet-ip
// package for Node.js (testdata/nodeclient; `npm ci` there installs it): it
// registers a session, reads the controller properties with Get_Attribute_All through
// Unconnected_Send, reads, writes and re-reads tags.
func TestEthernetIPClient(t *testing.T) {
	out, srv := nodeClient(t, newHandler(t, nil), "client.js")
	var got struct {
		Name       string  `json:"name"`
		Serial     uint32  `json:"serial"`
		Version    string  `json:"version"`
		Status     int     `json:"status"`
		Speed      float64 `json:"speed"`
		SpeedAfter float64 `json:"speed_after"`
		Count      int     `json:"count"`
		Missing    string  `json:"missing"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if got.Name != testIdentity.Model || got.Serial != 0x4a3b2c1d || got.Version != "32.11" || got.Status != 0x60 {
		t.Errorf("controller properties %+v", got)
	}
	if math.Abs(got.Speed-42.5) > 0.7 || got.SpeedAfter != 61.5 || got.Count != 184220+180 {
		t.Errorf("tag values %+v", got)
	}
	if got.Missing != "4" {
		t.Errorf("reading a missing tag: %q, want general status 4", got.Missing)
	}
	var ops []string
	for _, e := range srv.Events() {
		ops = append(ops, e.Op)
	}
	// The client's UnRegisterSession may still be on its way when it exits.
	if want := "register_session,get_attribute_all,read_tag,write_tag,read_tag,read_tag,read_tag"; !strings.HasPrefix(strings.Join(ops, ","), want) {
		t.Errorf("events %s, want %s", strings.Join(ops, ","), want)
	}
}

// TestConnectedClient drives the device with st-ethernet-ip in connected mode:
// Forward_Open, tag reads and writes with SendUnitData, Forward_Close.
func TestConnectedClient(t *testing.T) {
	h := newHandler(t, nil)
	out, srv := nodeClient(t, h, "client-connected.js", "browse")
	var got struct {
		Name       string   `json:"name"`
		Tags       []string `json:"tags"`
		Level      int      `json:"level"`
		LevelAfter int      `json:"level_after"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("client output %q: %v", out, err)
	}
	if got.Level < 6120-410 || got.Level > 6120+410 || got.LevelAfter != 7000 {
		t.Errorf("tag values %+v", got)
	}
	wantTags := "Line1_Speed:REAL,Line1_Run:BOOL,Tank_Level:INT,Batch_Count:DINT,Recipe_Setpoints:REAL[],Alarm_Word:DINT,Valve_Cmd:SINT[]"
	if got.Name != testIdentity.Model || strings.Join(got.Tags, ",") != wantTags {
		t.Errorf("browse: name %q tags %s, want %s", got.Name, strings.Join(got.Tags, ","), wantTags)
	}
	var ops []string
	for _, e := range srv.Events() {
		ops = append(ops, e.Op+"/"+e.Detail["encapsulation"])
	}
	if want := "register_session/,forward_open/send_rr_data,get_attribute_all/send_unit_data,get_instance_attribute_list/send_unit_data,read_tag/send_unit_data,write_tag/send_unit_data,read_tag/send_unit_data,forward_close/send_rr_data"; !strings.HasPrefix(strings.Join(ops, ","), want) {
		t.Errorf("events %s, want %s", strings.Join(ops, ","), want)
	}
}

// TestSymbolBrowsePaging lists more tags than fit in one reply: the first reply is a
// partial transfer and the client continues after the last instance it got.
func TestSymbolBrowsePaging(t *testing.T) {
	h := newHandler(t, func(c *Config) {
		c.Tags = nil
		for i := range 40 {
			c.Tags = append(c.Tags, TagConfig{Name: fmt.Sprintf("Conveyor_Section_%02d_Motor_Current", i), Type: "REAL"})
		}
	})
	c := dial(t, h)
	handle := c.register()
	var names []string
	start := uint32(0)
	for pages := 0; ; pages++ {
		if pages > 10 {
			t.Fatal("browse does not end")
		}
		path := AppendLogicalPath(nil, classSymbol, start)
		if start < 0x100 { // clients send a 16-bit instance segment
			path = binary.LittleEndian.AppendUint16([]byte{0x20, 0x6b, 0x25, 0x00}, uint16(start))
		}
		r, err := c.roundTrip(rr(handle, AppendRequest(nil, 0x55, path, protocoltest.Unhex(t, "0100 0100"))))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := ParseResponse(cipReply(t, r))
		if err != nil || (resp.Status != 0 && resp.Status != CIPPartialTransfer) {
			t.Fatalf("browse: %+v %v", resp, err)
		}
		var last uint32
		for d := resp.Data; len(d) > 0; {
			last = binary.LittleEndian.Uint32(d)
			n := int(binary.LittleEndian.Uint16(d[4:]))
			names = append(names, string(d[6:6+n]))
			d = d[6+n:]
		}
		if resp.Status == CIPSuccess {
			if pages == 0 {
				t.Error("40 tags fit in one reply")
			}
			break
		}
		start = last + 1
	}
	if len(names) != 40 || names[39] != "Conveyor_Section_39_Motor_Current" {
		t.Errorf("browsed %d names: %v", len(names), names)
	}
}

// TestTagsMove checks that the default process tags follow a plausible process until
// a client writes them.
func TestTagsMove(t *testing.T) {
	h := newHandler(t, nil)
	now := testNow
	h.env.Now = func() time.Time { return now }
	read := func(name string) float64 {
		h.mu.Lock()
		defer h.mu.Unlock()
		tg := h.tags[strings.ToLower(name)]
		tg.refresh(now, h.env.Boot)
		switch tg.typ.code {
		case 0xca:
			return float64(math.Float32frombits(binary.LittleEndian.Uint32(tg.data)))
		case 0xc3:
			return float64(int16(binary.LittleEndian.Uint16(tg.data)))
		}
		return float64(int32(binary.LittleEndian.Uint32(tg.data)))
	}
	speeds := map[float64]bool{}
	prevCount := read("Batch_Count")
	for i := range 100 {
		now = testNow.Add(time.Duration(i) * 23 * time.Second)
		v := read("Line1_Speed")
		if math.Abs(v-42.5) > 0.6*1.1 {
			t.Fatalf("speed %v outside 42.5 ± 0.66", v)
		}
		speeds[v] = true
		if lvl := read("Tank_Level"); lvl < 6120-420 || lvl > 6120+420 {
			t.Fatalf("level %v", lvl)
		}
		if c := read("Batch_Count"); c < prevCount {
			t.Fatalf("counter went back from %v to %v", prevCount, c)
		} else {
			prevCount = c
		}
	}
	if len(speeds) < 50 || prevCount < 184220+0.05*3600+100 {
		t.Errorf("%d distinct speeds, counter %v", len(speeds), prevCount)
	}
	// Written, the tag keeps the written value.
	c := dial(t, h)
	handle := c.register()
	c.roundTrip(rr(handle, protocoltest.Unhex(t, "4d 07 91 0b 4c696e65315f5370656564 00 ca00 0100 00005e42")))
	now = now.Add(time.Hour)
	if v := read("Line1_Speed"); v != 55.5 {
		t.Errorf("written speed reads %v", v)
	}
}
