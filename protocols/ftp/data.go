package ftp

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/netip"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// Data connections. A passive listener or an active target is set up by PASV, EPSV,
// PORT or EPRT and used by the next transfer command, then closed; only the
// client's own address may connect to the listener, and the server only connects to
// the client's own address (no FTP bounce).

// errNoDataSetup means a transfer command came without PASV, EPSV, PORT or EPRT.
var errNoDataSetup = errors.New("ftp: no data connection set up")

// chunkLen is the size of the reads and writes of a transfer.
const chunkLen = 32 << 10

// eventDataLen is how much of an upload its event carries; the whole upload goes to
// Session.KeepFile.
const eventDataLen = 256

func (c *session) cmdPasv(ev *protocols.Event) result {
	if c.epsvAll {
		return result{code: 500, text: "PASV not allowed after EPSV ALL."}
	}
	local := c.s.Local().Addr().Unmap()
	if !local.Is4() {
		return result{code: 500, text: "PASV is not supported on this connection; use EPSV."}
	}
	port, err := c.listen(local)
	if err != nil {
		c.s.Logger().Warn("ftp: passive listen", "err", err)
		return result{code: 425, text: "Can't open passive connection."}
	}
	shown := local
	if c.h.passive.IsValid() {
		shown = c.h.passive
	}
	ap := netip.AddrPortFrom(shown, port)
	ev.Detail["data_address"] = ap.String()
	return result{code: 227, text: fmt.Sprintf("Entering Passive Mode (%s).", FormatHostPort(ap))}
}

func (c *session) cmdEpsv(arg string, ev *protocols.Event) result {
	a := strings.ToUpper(strings.TrimSpace(arg))
	if a == "ALL" {
		c.epsvAll = true
		return result{code: 200, text: "EPSV ALL command successful."}
	}
	local := c.s.Local().Addr().Unmap()
	proto := "2"
	if local.Is4() {
		proto = "1"
	}
	if a != "" && a != proto {
		return result{code: 522, text: fmt.Sprintf("Network protocol not supported, use (%s).", proto)}
	}
	port, err := c.listen(local)
	if err != nil {
		c.s.Logger().Warn("ftp: passive listen", "err", err)
		return result{code: 425, text: "Can't open passive connection."}
	}
	ev.Detail["data_address"] = netip.AddrPortFrom(local, port).String()
	return result{code: 229, text: fmt.Sprintf("Entering Extended Passive Mode (|||%d|).", port)}
}

func (c *session) cmdPort(verb, arg string, ev *protocols.Event) result {
	if c.epsvAll {
		return result{code: 500, text: verb + " not allowed after EPSV ALL."}
	}
	var ap netip.AddrPort
	var err error
	if verb == "PORT" {
		ap, err = ParseHostPort(arg)
	} else {
		ap, err = ParseEPRT(arg)
	}
	switch {
	case errors.Is(err, ErrNetProto):
		return result{code: 522, text: "Network protocol not supported, use (1,2)."}
	case err != nil:
		return result{code: 501, text: msgSyntax}
	}
	ev.Detail["data_address"] = ap.String()
	if ap.Addr().Unmap() != c.s.Remote().Addr().Unmap() {
		// A data connection to another host: an FTP bounce attempt.
		ev.Detail["bounce"] = "true"
		return result{code: 500, text: "Illegal " + verb + " command."}
	}
	if ap.Port() < 1024 {
		ev.Detail["reason"] = "privileged_port"
		return result{code: 500, text: "Illegal " + verb + " command."}
	}
	c.dropData()
	c.dataMu.Lock()
	c.active = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	c.dataMu.Unlock()
	return result{code: 200, text: verb + " command successful."}
}

// listen replaces the data set-up with a new passive listener on the session's local
// address and returns its port.
func (c *session) listen(local netip.Addr) (uint16, error) {
	c.dropData()
	var ln *net.TCPListener
	var err error
	lo, hi := c.h.cfg.PassivePortMin, c.h.cfg.PassivePortMax
	if lo == 0 {
		ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0)))
	} else {
		// Random ports of the range, as a firewall-friendly server picks them.
		for try := 0; try < 32; try++ {
			n, rerr := rand.Int(rand.Reader, big.NewInt(int64(hi)-int64(lo)+1))
			if rerr != nil {
				return 0, fmt.Errorf("ftp: passive port: %w", rerr)
			}
			ln, err = net.ListenTCP("tcp", net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, lo+uint16(n.Int64()))))
			if err == nil {
				break
			}
		}
	}
	if err != nil {
		return 0, fmt.Errorf("ftp: passive listen: %w", err)
	}
	c.dataMu.Lock()
	c.pasv = ln
	c.dataMu.Unlock()
	return ln.Addr().(*net.TCPAddr).AddrPort().Port(), nil
}

// dropData closes the data set-up that a command will not use.
func (c *session) dropData() {
	c.dataMu.Lock()
	defer c.dataMu.Unlock()
	if c.pasv != nil {
		c.pasv.Close()
		c.pasv = nil
	}
	c.active = netip.AddrPort{}
}

// abortData closes the data connection (or the listener) of a running transfer; it
// is called when the session's context is cancelled.
func (c *session) abortData() {
	c.dataMu.Lock()
	defer c.dataMu.Unlock()
	if c.accepting != nil {
		c.accepting.Close()
	}
	if c.data != nil {
		c.data.Close()
	}
}

// openData opens the data connection of a transfer: it accepts the client's
// connection on the passive listener or connects to the client's active port.
func (c *session) openData() (net.Conn, error) {
	c.dataMu.Lock()
	ln, target := c.pasv, c.active
	c.pasv, c.active = nil, netip.AddrPort{}
	c.accepting = ln
	c.dataMu.Unlock()
	var dc net.Conn
	var err error
	switch {
	case ln != nil:
		dc, err = c.accept(ln)
		ln.Close()
	case target.IsValid():
		dc, err = c.dial(target)
	default:
		err = errNoDataSetup
	}
	c.dataMu.Lock()
	defer c.dataMu.Unlock()
	c.accepting = nil
	if err != nil {
		return nil, err
	}
	if c.ctx.Err() != nil {
		dc.Close()
		return nil, c.ctx.Err()
	}
	c.data = dc
	c.dataDone = c.link(dc)
	return dc, nil
}

// dial opens an active-mode data connection to target from an ephemeral port of the
// session's local address. (Such a connection is outside the capture's port set; the
// passive range is what the capture sees.)
func (c *session) dial(target netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: c.h.cfg.DataTimeout}
	if local := c.s.Local().Addr().Unmap(); local.IsValid() && !local.IsUnspecified() {
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(local, 0))
	}
	return d.DialContext(c.ctx, "tcp", target.String())
}

// link makes the data connection a session of its own when the sensor can capture it
// (protocols.FlowLinker), linked to this one by an event in each; it returns the
// function that ends it.
func (c *session) link(dc net.Conn) func() {
	linker, ok := c.s.(protocols.FlowLinker)
	if !ok {
		return func() {}
	}
	local, remote := addrPortOf(dc.LocalAddr()), addrPortOf(dc.RemoteAddr())
	child, done, err := linker.LinkFlow("ftp-data", "ftp-data", local, remote)
	if err != nil {
		c.s.Logger().Warn("ftp: data connection not linked", "err", err)
		return func() {}
	}
	now := c.h.env.Now()
	c.s.Emit(protocols.Event{Time: now, Protocol: "ftp", Op: "data_connection", Unit: -1,
		Detail: map[string]string{"session": child.ID(), "address": remote.String()}})
	child.Emit(protocols.Event{Time: now, Protocol: "ftp-data", Op: "data_connection", Unit: -1,
		Detail: map[string]string{"control_session": c.s.ID()}})
	return done
}

func addrPortOf(a net.Addr) netip.AddrPort {
	if t, ok := a.(*net.TCPAddr); ok {
		return netip.AddrPortFrom(t.AddrPort().Addr().Unmap(), t.AddrPort().Port())
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// accept waits for the client's data connection; connections from other addresses
// are closed (and reported), as they would steal the transfer.
func (c *session) accept(ln *net.TCPListener) (net.Conn, error) {
	client := c.s.Remote().Addr().Unmap()
	if err := ln.SetDeadline(time.Now().Add(c.h.cfg.DataTimeout)); err != nil {
		return nil, fmt.Errorf("ftp: data accept deadline: %w", err)
	}
	for {
		dc, err := ln.Accept()
		if err != nil {
			return nil, fmt.Errorf("ftp: data accept: %w", err)
		}
		from := addrOf(dc.RemoteAddr())
		if from == client {
			return dc, nil
		}
		dc.Close()
		c.s.Emit(protocols.Event{
			Time: c.h.env.Now(), Protocol: "ftp", Op: "data_connection_rejected", Unit: -1,
			Detail: map[string]string{"from": from.String()},
		})
	}
}

// closeData closes the data connection of a transfer.
func (c *session) closeData(dc net.Conn) {
	dc.Close()
	c.dataMu.Lock()
	c.data = nil
	done := c.dataDone
	c.dataDone = nil
	c.dataMu.Unlock()
	if done != nil {
		done()
	}
}

// openFailed answers a transfer command whose data connection could not be opened.
func openFailed(err error) result {
	if errors.Is(err, errNoDataSetup) {
		return result{code: 425, text: "Use PORT or PASV first."}
	}
	return result{code: 425, text: msgNoData}
}

func (c *session) cmdRetr(arg string, ev *protocols.Event) result {
	offset := c.rest
	c.rest = 0
	if arg == "" {
		c.dropData()
		return result{code: 501, text: msgSyntax}
	}
	p := resolve(c.cwd, arg)
	ev.Area = p
	n := c.lookup(p)
	if n == nil || n.dir {
		c.dropData()
		return result{code: 550, text: msgNoSuchFile}
	}
	ev.Detail["size"] = strconv.FormatInt(n.size, 10)
	if offset > 0 {
		ev.Detail["offset"] = strconv.FormatInt(offset, 10)
	}
	dc, err := c.openData()
	if err != nil {
		return openFailed(err)
	}
	defer c.closeData(dc)
	mode := "BINARY"
	if c.typ == 'A' {
		mode = "ASCII"
	}
	if err := c.reply(150, fmt.Sprintf("Opening %s mode data connection for %s (%d bytes).", mode, sanitize(arg, 256), n.size)); err != nil {
		return result{err: err, done: true}
	}
	sent, err := c.sendFile(dc, n, offset)
	ev.Quantity = int(min(sent, 1<<31))
	if err != nil {
		return result{code: 426, text: msgAborted}
	}
	return result{code: 226, text: msgTransferDone}
}

// sendFile writes the file from offset on the data connection, converting line ends
// in ASCII type, and returns the file bytes sent.
func (c *session) sendFile(dc net.Conn, n *node, offset int64) (int64, error) {
	end := time.Now().Add(c.h.cfg.TransferTimeout)
	buf := make([]byte, chunkLen)
	var out []byte
	var sent int64
	prevCR := false
	for off := max(offset, 0); off < n.size; {
		k, _ := n.ReadAt(buf, off)
		if k == 0 {
			break
		}
		chunk := buf[:k]
		if c.typ == 'A' {
			out, prevCR = ToNetASCII(out[:0], chunk, prevCR)
			chunk = out
		}
		if err := c.write(dc, chunk, end); err != nil {
			return sent, err
		}
		off += int64(k)
		sent += int64(k)
	}
	return sent, nil
}

// write writes on a data connection with the data timeout, within the transfer's
// end.
func (c *session) write(dc net.Conn, b []byte, end time.Time) error {
	deadline := time.Now().Add(c.h.cfg.DataTimeout)
	if end.Before(deadline) {
		deadline = end
	}
	if err := dc.SetWriteDeadline(deadline); err != nil {
		return fmt.Errorf("ftp: data write deadline: %w", err)
	}
	if _, err := dc.Write(b); err != nil {
		return fmt.Errorf("ftp: data write: %w", err)
	}
	return nil
}

// listEntry is one entry of a listing.
type listEntry struct {
	name string
	n    *node
}

func (c *session) cmdList(verb, arg string, ev *protocols.Event) result {
	c.rest = 0
	// ls options such as "-la" come before the path.
	fields := strings.Fields(arg)
	for len(fields) > 0 && strings.HasPrefix(fields[0], "-") {
		fields = fields[1:]
	}
	name := strings.Join(fields, " ")
	p := resolve(c.cwd, name)
	ev.Area = p
	entries, ok := c.entries(p, name)
	if !ok {
		c.dropData()
		return result{code: 550, text: msgNoSuchFile}
	}
	ev.Quantity = len(entries)
	dc, err := c.openData()
	if err != nil {
		return openFailed(err)
	}
	defer c.closeData(dc)
	if err := c.reply(150, "Opening ASCII mode data connection for file list."); err != nil {
		return result{err: err, done: true}
	}
	now := c.h.env.Now()
	var out []byte
	for _, e := range entries {
		if verb == "NLST" {
			out = append(out, e.name...)
		} else {
			out = append(out, listLine(path.Base(e.n.path), e.n.dir, e.n.size, e.n.modified, now, c.h.cfg.Owner, c.h.cfg.Group)...)
		}
		out = append(out, '\r', '\n')
	}
	if err := c.write(dc, out, time.Now().Add(c.h.cfg.TransferTimeout)); err != nil {
		return result{code: 426, text: msgAborted}
	}
	return result{code: 226, text: msgTransferDone}
}

// entries returns what a listing of p shows: the entries of a directory, the file
// itself, or the entries of p's directory whose names match p's last element as a
// glob pattern. name is the path as the client gave it (NLST prefixes it).
func (c *session) entries(p, name string) ([]listEntry, bool) {
	prefix := func(base string) string {
		if name == "" || name == "." {
			return base
		}
		return path.Join(name, base)
	}
	if n := c.lookup(p); n != nil && !n.dir {
		return []listEntry{{name: name, n: n}}, true
	} else if n != nil {
		var out []listEntry
		for _, e := range c.children(p) {
			out = append(out, listEntry{prefix(path.Base(e.path)), e})
		}
		return out, true
	}
	dir, pattern := path.Split(p)
	if !strings.ContainsAny(pattern, "*?[") {
		return nil, false
	}
	dir = path.Clean(dir)
	if d := c.lookup(dir); d == nil || !d.dir {
		return nil, false
	}
	if _, err := path.Match(pattern, ""); err != nil {
		return nil, false
	}
	var out []listEntry
	for _, e := range c.children(dir) {
		if ok, _ := path.Match(pattern, path.Base(e.path)); ok {
			out = append(out, listEntry{path.Join(path.Dir(name), path.Base(e.path)), e})
		}
	}
	return out, true
}

// children returns the entries of directory dir: the tree's and this connection's
// uploads, sorted by name.
func (c *session) children(dir string) []*node {
	out := c.h.tree.children(dir)
	for p, u := range c.uploads {
		if path.Dir(p) == dir {
			out = append(out, u)
		}
	}
	sortNodes(out)
	return out
}

func sortNodes(ns []*node) {
	slices.SortFunc(ns, func(a, b *node) int { return strings.Compare(a.path, b.path) })
}

func (c *session) cmdStore(verb, arg string, ev *protocols.Event) result {
	ev.Write = true
	c.rest = 0
	if c.anonymous || !c.account.Write {
		c.dropData()
		return result{code: 550, text: msgPermission}
	}
	if verb == "STOU" {
		for {
			c.unique++
			arg = fmt.Sprintf("ftp%04d.tmp", c.unique)
			if c.lookup(resolve(c.cwd, arg)) == nil {
				break
			}
		}
	}
	if arg == "" {
		c.dropData()
		return result{code: 501, text: msgSyntax}
	}
	p := resolve(c.cwd, arg)
	ev.Area = p
	ev.Detail["name"] = arg[:min(len(arg), maxArgDetail)]
	if d := c.h.tree.lookup(path.Dir(p)); d == nil || !d.dir {
		c.dropData()
		return result{code: 553, text: "Could not create file."}
	}
	if c.h.tree.lookup(p) != nil {
		// The device's own files are read-only.
		c.dropData()
		return result{code: 550, text: msgPermission}
	}
	var prev []byte
	if u := c.uploads[p]; u != nil && verb == "APPE" {
		prev = u.content
	}
	dc, err := c.openData()
	if err != nil {
		return openFailed(err)
	}
	defer c.closeData(dc)
	msg := "Ok to send data."
	if verb == "STOU" {
		msg = "FILE: " + arg
	}
	if err := c.reply(150, msg); err != nil {
		return result{err: err, done: true}
	}
	if old := c.uploads[p]; old != nil && verb != "APPE" {
		c.release(int64(len(old.content)))
		delete(c.uploads, p)
	}
	limit := min(c.h.cfg.MaxUploadSize-int64(len(prev)), c.h.cfg.MaxSessionUpload-c.held)
	data, reason := c.receive(dc, max(limit, 0))
	truncated := reason == "size_limit" || reason == "memory_limit"
	// The upload is evidence: the sensor keeps it beside the session's pcap (the
	// data connection is not part of the captured session).
	c.s.KeepFile(protocols.File{Time: c.h.env.Now(), Protocol: "ftp", Name: arg, Data: data, Truncated: truncated})
	sum := sha256.Sum256(data)
	ev.Data = data[:min(len(data), eventDataLen)]
	ev.Quantity = len(data)
	ev.Detail["sha256"] = hex.EncodeToString(sum[:])
	ev.Detail["size"] = strconv.Itoa(len(data))
	ev.Detail["path"] = p
	ev.Detail["type"] = string(c.typ)
	ev.Detail["complete"] = strconv.FormatBool(reason == "")
	if reason != "" {
		ev.Detail["reason"] = reason
	}
	// The upload is visible to this connection (LIST, SIZE, RETR), not to others.
	content := append(prev[:len(prev):len(prev)], data...)
	c.uploads[p] = &node{path: p, content: content, size: int64(len(content)), modified: c.h.env.Now()}
	switch reason {
	case "":
		return result{code: 226, text: msgTransferDone}
	case "size_limit", "memory_limit":
		return result{code: 552, text: "Requested file action aborted. Exceeded storage allocation."}
	}
	return result{code: 426, text: msgAborted}
}

// receive reads an upload from the data connection, at most limit bytes; reason is
// empty when the client closed the connection after sending the whole file.
func (c *session) receive(dc net.Conn, limit int64) (data []byte, reason string) {
	end := time.Now().Add(c.h.cfg.TransferTimeout)
	buf := make([]byte, chunkLen)
	for {
		deadline := time.Now().Add(c.h.cfg.DataTimeout)
		if end.Before(deadline) {
			deadline = end
		}
		if err := dc.SetReadDeadline(deadline); err != nil {
			return data, "connection_error"
		}
		n, err := dc.Read(buf)
		if n > 0 {
			take := min(int64(n), limit-int64(len(data)))
			if take > 0 && !c.reserve(take) {
				return data, "memory_limit"
			}
			data = append(data, buf[:take]...)
			if int64(n) > take {
				return data, "size_limit"
			}
		}
		switch {
		case errors.Is(err, io.EOF):
			return data, ""
		case isTimeout(err):
			return data, "timeout"
		case err != nil:
			return data, "connection_error"
		}
	}
}

// reserve counts n more uploaded bytes held by this connection against the
// handler's bound.
func (c *session) reserve(n int64) bool {
	if c.h.held.Add(n) > c.h.cfg.MaxUploadMemory {
		c.h.held.Add(-n)
		return false
	}
	c.held += n
	return true
}

// release gives back n bytes reserved by this connection.
func (c *session) release(n int64) {
	c.h.held.Add(-n)
	c.held -= n
}
