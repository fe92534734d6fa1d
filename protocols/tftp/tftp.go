// Package tftp emulates the TFTP server of a PLC (UDP port 69): RFC 1350 read and
// write requests with the RFC 2347-2349 options (blksize, tsize, timeout), files from a
// virtual read-only tree built from the persona, and written files kept in memory as
// evidence and reported through events. Transfers are answered from the well-known
// port, the only socket a protocols.DatagramHandler has; see README.md.
package tftp

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Spec returns the registry entry of the TFTP server.
func Spec() protocols.Spec {
	return protocols.Spec{
		Name:      "tftp",
		Transport: protocols.UDP,
		Port:      69,
		Service:   "tftp",
		NewConfig: func() any { return NewConfig() },
		New:       protocols.NewFunc("tftp", New),
	}
}

// File is a file the server offers.
type File struct {
	// Path is the file name clients ask for ("fw/cpu.bin"; a leading slash is
	// ignored). Identity placeholders such as {firmware} are replaced.
	Path string `yaml:"path"`
	// Content is the start of the file (placeholders replaced); the file is Size
	// bytes long, the rest deterministic filler.
	Content string `yaml:"content"`
	Size    int64  `yaml:"size"`
}

// Config is the persona's `tftp:` section. NewConfig fills in the defaults.
type Config struct {
	Files []File `yaml:"files"`
	// AllowWrite accepts write requests for names that are not files of the tree;
	// the data is kept in memory as evidence, never written to disk.
	AllowWrite bool `yaml:"allow_write"`
	// Options enables RFC 2347 option negotiation (blksize, tsize, timeout).
	Options bool `yaml:"options"`
	// MaxBlockSize is the largest block size granted to a blksize option.
	MaxBlockSize int `yaml:"max_block_size"`
	// Timeout abandons a transfer that receives nothing for this long.
	Timeout time.Duration `yaml:"timeout"`
	// MaxTransfers bounds the transfers in progress.
	MaxTransfers int `yaml:"max_transfers"`
	// MaxUploadSize bounds one written file, MaxUploadMemory all written data held.
	MaxUploadSize   int64 `yaml:"max_upload_size"`
	MaxUploadMemory int64 `yaml:"max_upload_memory"`
}

// NewConfig returns the default configuration: the TFTP server of a PLC that
// serves its device parameter (FDR) files and firmware image and accepts uploads.
func NewConfig() *Config {
	return &Config{
		Files: []File{
			{Path: "sys/version.txt", Content: "{vendor} {product}\r\nModel      : {model}\r\nOrder no.  : {order_number}\r\n" +
				"Firmware   : {firmware}\r\nHardware   : {hardware}\r\nSerial no. : {serial}\r\nMAC address: {mac}\r\n"},
			{Path: "fdr/{hostname}.prm", Content: "PRM\x00\x02\x00", Size: 2048},
			{Path: "fw/{firmware}.ldx", Content: "LDX\x01", Size: 1867776},
		},
		AllowWrite:      true,
		Options:         true,
		MaxBlockSize:    1468,
		Timeout:         10 * time.Second,
		MaxTransfers:    64,
		MaxUploadSize:   8 << 20,
		MaxUploadMemory: 64 << 20,
	}
}

// Validate checks c; New calls it (and builds the file table, which is checked too).
func (c *Config) Validate() error {
	switch {
	case c.MaxBlockSize < MinBlockSize || c.MaxBlockSize > MaxBlockSize:
		return fmt.Errorf("max_block_size %d: want %d to %d", c.MaxBlockSize, MinBlockSize, MaxBlockSize)
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %v: want a positive duration", c.Timeout)
	case c.MaxTransfers < 1:
		return fmt.Errorf("max_transfers %d: want at least 1", c.MaxTransfers)
	case c.MaxUploadSize < 0 || c.MaxUploadMemory < c.MaxUploadSize:
		return errors.New("upload limits: want 0 <= max_upload_size <= max_upload_memory")
	}
	return nil
}

// file is a file of the tree.
type file struct {
	content []byte
	size    int64
	seed    uint64
}

// readAt fills p with the file's bytes at off and returns how many there were.
func (f *file) readAt(p []byte, off int64) int {
	k := 0
	for k < len(p) && off < f.size {
		if off < int64(len(f.content)) {
			c := copy(p[k:], f.content[off:])
			k += c
			off += int64(c)
			continue
		}
		p[k] = fillerByte(f.seed, off)
		k++
		off++
	}
	return k
}

// fillerByte is byte off of the filler with the given seed: splitmix64 of the
// seed and the 8-byte block number.
func fillerByte(seed uint64, off int64) byte {
	z := seed + uint64(off/8+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	return byte(z >> (8 * (off % 8)))
}

// cleanName maps a requested file name to the key of the file table: no leading
// slash, no empty or "." elements. ok is false for a name that climbs with "..".
func cleanName(name string) (string, bool) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", false
	}
	for _, el := range strings.Split(name, "/") {
		if el == ".." {
			return "", false
		}
	}
	return strings.TrimPrefix(path.Clean("/"+name), "/"), true
}

// Handler serves TFTP flows. The file table is read-only; transfers in progress
// are kept per session (flow) and expire after Timeout. Handler is safe for
// concurrent use.
type Handler struct {
	cfg   Config
	env   protocols.Env
	files map[string]*file

	mu        sync.Mutex
	transfers map[string]*transfer // by session id
	held      int64                // bytes of written data held
}

var _ protocols.DatagramHandler = (*Handler)(nil)

// New builds a handler for the persona env.Identity.
func New(env protocols.Env, cfg *Config) (*Handler, error) {
	if cfg == nil {
		cfg = NewConfig()
	}
	if env.Identity == nil {
		return nil, fmt.Errorf("tftp: no device identity: %w", protocols.ErrConfig)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("tftp: %w: %w", protocols.ErrConfig, err)
	}
	env = env.WithDefaults()
	id := env.Identity
	expand := strings.NewReplacer(
		"{vendor}", id.Vendor, "{product}", id.Product, "{model}", id.Model,
		"{order_number}", id.OrderNumber, "{firmware}", id.Firmware, "{hardware}", id.Hardware,
		"{serial}", id.Serial, "{mac}", id.MAC.String(), "{hostname}", id.Hostname,
		"{module_name}", id.ModuleName, "{location}", id.Location, "{contact}", id.Contact,
		"{description}", id.Description,
	).Replace
	h := &Handler{cfg: *cfg, env: env, files: map[string]*file{}, transfers: map[string]*transfer{}}
	for i, f := range cfg.Files {
		name, ok := cleanName(expand(f.Path))
		if !ok || name == "" || len(name) > 255 {
			return nil, fmt.Errorf("tftp: %w: files[%d]: path %q: want a file name without a \"..\" element", protocols.ErrConfig, i, f.Path)
		}
		if _, dup := h.files[name]; dup {
			return nil, fmt.Errorf("tftp: %w: files[%d]: %s twice", protocols.ErrConfig, i, name)
		}
		content := []byte(expand(f.Content))
		seed := fnv.New64a()
		fmt.Fprintf(seed, "%s\x00%s\x00%s\x00%s", name, id.Vendor, id.Serial, id.MAC)
		h.files[name] = &file{content: content, size: max(f.Size, int64(len(content))), seed: seed.Sum64()}
	}
	return h, nil
}

// transfer is one read or write in progress, the state of one flow.
type transfer struct {
	sess    protocols.Session
	write   bool
	name    string // as requested
	key     string // cleaned
	mode    string // "octet" or "netascii"
	blksize int
	start   time.Time
	timer   *time.Timer

	// Read: the file, the next raw offset, netascii bytes converted but not sent,
	// the current block and its packet, whether it is the last one.
	f       *file
	rawOff  int64
	carry   []byte
	block   uint16
	blocks  int
	last    []byte
	lastAt  time.Time
	final   bool
	sent    int64
	options string

	// Write: the data so far, the block expected next, completion.
	data   []byte
	expect uint16
	done   bool
}

// ServeDatagram answers one datagram of a flow.
func (h *Handler) ServeDatagram(ctx context.Context, s protocols.Session, req []byte, reply func([]byte) error) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	out, ev := h.handle(s, req)
	if ev != nil {
		s.Emit(*ev)
	}
	if out == nil {
		return nil
	}
	if err := reply(out); err != nil {
		return fmt.Errorf("tftp: send reply: %w", err)
	}
	return nil
}

func (h *Handler) event(op string) *protocols.Event {
	return &protocols.Event{Time: h.env.Now(), Protocol: "tftp", Op: op, Unit: -1, Detail: map[string]string{}}
}

// refuse returns an ERROR packet and records it in ev.
func refuse(ev *protocols.Event, code uint16) []byte {
	ev.Exception = int(code)
	ev.Detail["error"] = errorText[code]
	return AppendError(nil, code)
}

// handle returns the reply to req (nil for none) and the event to record (nil for
// none: blocks of a transfer in progress are summarised when it ends). h.mu is held.
func (h *Handler) handle(s protocols.Session, req []byte) ([]byte, *protocols.Event) {
	op, err := Opcode(req)
	if err != nil {
		ev := h.event("malformed")
		ev.Data = req[:min(len(req), 512)]
		ev.Detail["reason"] = err.Error()
		return refuse(ev, ErrIllegalOp), ev
	}
	t := h.transfers[s.ID()]
	if t != nil {
		t.timer.Reset(h.cfg.Timeout)
	}
	switch op {
	case OpRRQ, OpWRQ:
		return h.request(s, req, t)
	case OpACK:
		return h.ack(s, req, t)
	case OpDATA:
		return h.data(s, req, t)
	case OpERROR:
		code, msg, _ := ParseError(req)
		ev := h.event("client_error")
		ev.Code = int(code)
		ev.Detail["message"] = msg
		if t != nil {
			h.finish(t, ev, "client_error")
		}
		return nil, ev
	}
	// OACK: only servers send it.
	ev := h.event("malformed")
	ev.Code = int(op)
	ev.Detail["reason"] = "oack from client"
	return refuse(ev, ErrIllegalOp), ev
}

// request serves an RRQ or WRQ.
func (h *Handler) request(s protocols.Session, req []byte, cur *transfer) ([]byte, *protocols.Event) {
	r, err := ParseRequest(req)
	op := "read_request"
	if len(req) >= 2 && binary.BigEndian.Uint16(req) == OpWRQ {
		op = "write_request"
	}
	ev := h.event(op)
	if err != nil {
		ev.Data = req[:min(len(req), 512)]
		ev.Detail["reason"] = err.Error()
		return refuse(ev, ErrIllegalOp), ev
	}
	ev.Area = r.Filename
	ev.Detail["name"] = r.Filename
	ev.Detail["mode"] = r.Mode
	ev.Write = r.Op == OpWRQ
	if len(r.Options) > 0 {
		var o []string
		for _, opt := range r.Options {
			o = append(o, opt.Name+"="+opt.Value)
		}
		ev.Detail["options"] = strings.Join(o, " ")
	}
	if cur != nil {
		// The client repeated its request because our answer was lost: answer again.
		if cur.name == r.Filename && cur.write == ev.Write && !cur.done && (cur.blocks <= 1 && cur.expect <= 1) && cur.last != nil {
			return cur.last, nil
		}
		h.finish(cur, nil, "replaced")
	}
	mode := strings.ToLower(r.Mode)
	if mode != "octet" && mode != "netascii" {
		return refuse(ev, ErrIllegalOp), ev
	}
	key, ok := cleanName(r.Filename)
	if !ok || key == "" {
		return refuse(ev, ErrAccess), ev
	}
	if len(h.transfers) >= h.cfg.MaxTransfers {
		ev.Detail["reason"] = "transfer_limit"
		ev.Detail["response"] = "none"
		return nil, ev
	}
	t := &transfer{sess: s, write: ev.Write, name: r.Filename, key: key, mode: mode, blksize: DefaultBlockSize, start: h.env.Now()}
	f := h.files[key]
	if t.write {
		switch {
		case !h.cfg.AllowWrite || f != nil:
			return refuse(ev, ErrAccess), ev
		case h.cfg.MaxUploadSize == 0:
			return refuse(ev, ErrDiskFull), ev
		}
	} else if f == nil {
		return refuse(ev, ErrNotFound), ev
	}
	t.f = f
	oack, code := h.negotiate(t, r)
	if code != 0 {
		return refuse(ev, code), ev
	}
	id := s.ID()
	t.timer = time.AfterFunc(h.cfg.Timeout, func() { h.expire(id, t) })
	h.transfers[id] = t
	ev.Detail["blksize"] = strconv.Itoa(t.blksize)
	switch {
	case oack != nil:
		t.last = AppendOACK(nil, oack)
		t.expect = 1 // a writer sends DATA 1 after the OACK
	case t.write:
		t.last = AppendACK(nil, 0)
		t.expect = 1
	default:
		t.last = h.nextBlock(t)
	}
	t.lastAt = time.Now()
	return t.last, ev
}

// negotiate applies the request's options (RFC 2347-2349) and returns those to
// acknowledge, or an error code to refuse the request with.
func (h *Handler) negotiate(t *transfer, r Request) ([]Option, uint16) {
	if !h.cfg.Options {
		return nil, 0
	}
	var acked []Option
	seen := map[string]bool{}
	for _, o := range r.Options {
		name := strings.ToLower(o.Name)
		if seen[name] {
			continue
		}
		seen[name] = true
		switch name {
		case "blksize":
			n, ok := parseUint(o.Value, MinBlockSize, MaxBlockSize)
			if !ok {
				continue
			}
			t.blksize = min(int(n), h.cfg.MaxBlockSize)
			acked = append(acked, Option{o.Name, strconv.Itoa(t.blksize)})
		case "timeout":
			if _, ok := parseUint(o.Value, 1, 255); ok {
				acked = append(acked, Option{o.Name, o.Value})
			}
		case "tsize":
			n, ok := parseUint(o.Value, 0, 1<<62)
			if !ok {
				continue
			}
			if t.write {
				if n > h.cfg.MaxUploadSize {
					return nil, ErrDiskFull
				}
				acked = append(acked, Option{o.Name, o.Value})
			} else if t.mode == "octet" {
				// The size of a netascii transfer is not known before it is sent.
				acked = append(acked, Option{o.Name, strconv.FormatInt(t.f.size, 10)})
			}
		}
	}
	for _, o := range acked {
		t.options += o.Name + "=" + o.Value + " "
	}
	t.options = strings.TrimSpace(t.options)
	return acked, 0
}

// nextBlock builds the next DATA packet of a read.
func (h *Handler) nextBlock(t *transfer) []byte {
	t.block++
	t.blocks++
	buf := make([]byte, 0, 4+t.blksize)
	buf = AppendData(buf, t.block, nil)
	room := t.blksize
	if t.mode == "octet" {
		n := t.f.readAt(buf[4:4+room], t.rawOff)
		buf = buf[:4+n]
		t.rawOff += int64(n)
		t.sent += int64(n)
	} else {
		raw := make([]byte, room)
		for len(t.carry) < room && t.rawOff < t.f.size {
			n := t.f.readAt(raw[:room-len(t.carry)], t.rawOff)
			t.rawOff += int64(n)
			t.carry = netASCII(t.carry, raw[:n])
		}
		n := min(room, len(t.carry))
		buf = append(buf, t.carry[:n]...)
		t.carry = append(t.carry[:0], t.carry[n:]...)
		t.sent += int64(n)
	}
	t.final = len(buf)-4 < t.blksize
	return buf
}

// ack serves an ACK: the next block of a read, a repeated block, or the end.
func (h *Handler) ack(s protocols.Session, req []byte, t *transfer) ([]byte, *protocols.Event) {
	_, block, _, err := ParseBlock(req)
	if err != nil {
		ev := h.event("malformed")
		ev.Detail["reason"] = err.Error()
		return refuse(ev, ErrIllegalOp), ev
	}
	if t == nil || t.write {
		ev := h.event("unknown_transfer")
		ev.Code = int(OpACK)
		ev.Address = int(block)
		return refuse(ev, ErrUnknownTID), ev
	}
	switch {
	case block == t.block && (t.blocks > 0 || block == 0):
		if t.blocks > 0 && t.final {
			ev := h.event("read_complete")
			h.finish(t, ev, "")
			return nil, ev
		}
		t.last = h.nextBlock(t)
	case block == t.block-1 && t.blocks > 0:
		// Our last block was lost: the client repeats its previous ACK. Send the
		// block again, but not for duplicates of one ACK arriving together.
		if time.Since(t.lastAt) < resendGap {
			return nil, nil
		}
	default:
		return nil, nil // an old duplicate
	}
	t.lastAt = time.Now()
	return t.last, nil
}

// eventDataLen is how much of an upload its event carries; the whole upload goes to
// Session.KeepFile.
const eventDataLen = 256

// resendGap is the shortest interval between two sends of one block.
const resendGap = 200 * time.Millisecond

// data serves a DATA packet of a write.
func (h *Handler) data(s protocols.Session, req []byte, t *transfer) ([]byte, *protocols.Event) {
	_, block, payload, err := ParseBlock(req)
	if err != nil {
		ev := h.event("malformed")
		ev.Detail["reason"] = err.Error()
		return refuse(ev, ErrIllegalOp), ev
	}
	if t == nil || !t.write {
		ev := h.event("unknown_transfer")
		ev.Code = int(OpDATA)
		ev.Address = int(block)
		return refuse(ev, ErrUnknownTID), ev
	}
	switch {
	case block == t.expect && !t.done:
		if len(payload) > t.blksize {
			ev := h.event("upload")
			out := refuse(ev, ErrIllegalOp)
			h.finish(t, ev, "block_too_large")
			return out, ev
		}
		take := min(int64(len(payload)), h.cfg.MaxUploadSize-int64(len(t.data)), h.cfg.MaxUploadMemory-h.held)
		t.data = append(t.data, payload[:take]...)
		h.held += take
		if take < int64(len(payload)) {
			ev := h.event("upload")
			out := refuse(ev, ErrDiskFull)
			h.finish(t, ev, "size_limit")
			return out, ev
		}
		t.last = AppendACK(nil, block)
		t.expect++
		if len(payload) < t.blksize {
			// The last block: the upload is complete. The transfer stays until its
			// timeout to acknowledge a repeated last block.
			t.done = true
			ev := h.event("upload")
			h.report(t, ev, "")
			return t.last, ev
		}
		return t.last, nil
	case block == t.expect-1:
		return t.last, nil // our ACK was lost: acknowledge again
	}
	return nil, nil
}

// finish ends a transfer and forgets it. It reports the transfer into ev, or, when ev
// is nil, in an event of its own emitted to the transfer's session. h.mu is held.
func (h *Handler) finish(t *transfer, ev *protocols.Event, reason string) {
	t.timer.Stop()
	if h.transfers[t.sess.ID()] == t {
		delete(h.transfers, t.sess.ID())
	}
	h.held -= int64(len(t.data))
	if t.done {
		return // the upload was reported when it completed
	}
	if ev != nil {
		h.report(t, ev, reason)
		return
	}
	op := "read_incomplete"
	if t.write {
		op = "upload"
	}
	ev = h.event(op)
	h.report(t, ev, reason)
	t.sess.Emit(*ev)
}

// report fills ev with the summary of a transfer.
func (h *Handler) report(t *transfer, ev *protocols.Event, reason string) {
	ev.Area = t.name
	ev.Detail["name"] = t.name
	ev.Detail["mode"] = t.mode
	ev.Detail["blksize"] = strconv.Itoa(t.blksize)
	ev.Detail["duration_ms"] = strconv.FormatInt(h.env.Now().Sub(t.start).Milliseconds(), 10)
	if t.options != "" {
		ev.Detail["options"] = t.options
	}
	if reason != "" {
		ev.Detail["reason"] = reason
	}
	if t.write {
		// The upload is evidence: the sensor keeps it beside the session's pcap.
		t.sess.KeepFile(protocols.File{Time: h.env.Now(), Protocol: "tftp", Name: t.name, Data: t.data, Truncated: reason == "size_limit"})
		sum := sha256.Sum256(t.data)
		ev.Write = true
		ev.Data = t.data[:min(len(t.data), eventDataLen)]
		ev.Quantity = len(t.data)
		ev.Detail["size"] = strconv.Itoa(len(t.data))
		ev.Detail["sha256"] = hex.EncodeToString(sum[:])
		ev.Detail["complete"] = strconv.FormatBool(t.done)
		return
	}
	ev.Quantity = int(min(t.sent, 1<<31))
	ev.Detail["bytes"] = strconv.FormatInt(t.sent, 10)
	ev.Detail["blocks"] = strconv.Itoa(t.blocks)
}

// expire ends a transfer that received nothing for Timeout.
func (h *Handler) expire(id string, t *transfer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.transfers[id] != t {
		return
	}
	h.finish(t, nil, "timeout")
}
