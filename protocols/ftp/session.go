package ftp

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// session is one control connection.
type session struct {
	h    *Handler
	s    protocols.Session
	ctrl net.Conn
	ctx  context.Context

	// Control input not yet consumed, and whether an over-long line is being
	// skipped.
	pending    []byte
	discarding bool
	first      time.Time // first byte of the pending line
	commands   int

	// Login.
	user      string // name given by USER, awaiting PASS
	account   *Account
	anonymous bool
	failures  int

	cwd        string
	typ        byte // 'A' or 'I'
	rest       int64
	renameFrom string
	epsvAll    bool

	// Data connection set-up: a passive listener or an active target, used once.
	dataMu    sync.Mutex
	pasv      *net.TCPListener
	active    netip.AddrPort
	accepting *net.TCPListener // the listener a transfer waits on
	data      net.Conn         // the data connection of a running transfer
	dataDone  func()           // ends the linked session of data (see protocols.FlowLinker)

	// Uploads of this connection, by path; held is their size, reserved against
	// the handler's memory bound.
	uploads map[string]*node
	held    int64
	unique  int
}

// Reply texts.
const (
	msgNotLoggedIn  = "Please login with USER and PASS."
	msgNoSuchFile   = "No such file or directory."
	msgPermission   = "Permission denied."
	msgSyntax       = "Syntax error in parameters or arguments."
	msgBadSequence  = "Bad sequence of commands."
	msgUnknown      = "Command not understood."
	msgNoData       = "Can't open data connection."
	msgTransferDone = "Transfer complete."
	msgAborted      = "Connection closed; transfer aborted."
)

// Event operation names by command verb.
var verbOps = map[string]string{
	"USER": "user", "PASS": "login", "ACCT": "account", "CWD": "change_directory", "XCWD": "change_directory",
	"CDUP": "change_directory_up", "XCUP": "change_directory_up", "PWD": "print_directory", "XPWD": "print_directory",
	"TYPE": "type", "MODE": "mode", "STRU": "structure", "PASV": "passive", "EPSV": "extended_passive",
	"PORT": "port", "EPRT": "extended_port", "LIST": "list", "NLST": "name_list", "RETR": "retrieve",
	"SIZE": "size", "MDTM": "modification_time", "STOR": "upload", "APPE": "upload", "STOU": "upload",
	"DELE": "delete", "MKD": "make_directory", "XMKD": "make_directory", "RMD": "remove_directory",
	"XRMD": "remove_directory", "RNFR": "rename_from", "RNTO": "rename_to", "REST": "restart", "ABOR": "abort",
	"NOOP": "noop", "SYST": "system", "FEAT": "features", "OPTS": "options", "HELP": "help", "STAT": "status",
	"SITE": "site", "ALLO": "allocate", "QUIT": "quit", "AUTH": "auth", "PBSZ": "protection_buffer_size",
	"PROT": "protection", "REIN": "reinitialize", "SMNT": "structure_mount", "MLSD": "machine_list",
	"MLST": "machine_list",
}

// preLogin are the commands answered before login.
var preLogin = map[string]bool{
	"USER": true, "PASS": true, "QUIT": true, "NOOP": true, "SYST": true, "FEAT": true, "HELP": true,
	"AUTH": true, "PBSZ": true, "PROT": true, "OPTS": true,
}

// maxArgDetail bounds the command argument kept in an event.
const maxArgDetail = 512

// serve reads and answers commands.
func (c *session) serve() error {
	for {
		line, tooLong, err := c.readLine()
		if err != nil {
			if errors.Is(err, errIdle) {
				_ = c.reply(421, fmt.Sprintf("Timeout (%d seconds): closing control connection.", int(c.h.cfg.IdleTimeout.Seconds())))
				return nil
			}
			if c.ctx.Err() != nil {
				_ = c.reply(421, "Service not available, closing control connection.")
				return nil
			}
			return quiet(err)
		}
		if c.commands >= c.h.cfg.MaxCommands {
			_ = c.reply(421, "Too many commands, closing control connection.")
			return fmt.Errorf("%w: %d commands", ErrSessionLimit, c.commands)
		}
		c.commands++
		ev := protocols.Event{Time: c.h.env.Now(), Protocol: "ftp", Unit: -1, Detail: map[string]string{}}
		var r result
		if tooLong {
			ev.Op = "malformed_command"
			ev.Detail["reason"] = "line_too_long"
			r = result{code: 500, text: "Command line too long."}
		} else {
			r = c.command(line, &ev)
		}
		// The event is recorded before the final reply, when the operation is done.
		if ev.Op != "" {
			ev.Code = r.code
			if r.code >= 400 {
				ev.Exception = r.code
			}
			c.s.Emit(ev)
		}
		if r.err == nil && r.code != 0 {
			r.err = c.reply(r.code, r.text)
		}
		if r.err != nil {
			return quiet(r.err)
		}
		if r.done {
			return nil
		}
	}
}

// command answers one command line and fills ev; the final reply is written by
// the caller.
func (c *session) command(line []byte, ev *protocols.Event) result {
	verb, arg, perr := ParseCommand(line)
	switch {
	case errors.Is(perr, ErrEmptyLine):
		return result{} // blank lines are ignored
	case perr != nil:
		ev.Op = "malformed_command"
		line = bytes.TrimRight(line, "\r")
		ev.Data = bytes.Clone(line[:min(len(line), maxArgDetail)])
		ev.Detail["reason"] = "verb"
		return result{code: 500, text: msgUnknown}
	}
	ev.Op = verbOps[verb]
	if ev.Op == "" {
		ev.Op = "unknown_command"
	}
	ev.Detail["command"] = verb
	if arg != "" && verb != "PASS" {
		ev.Detail["argument"] = arg[:min(len(arg), maxArgDetail)]
	}
	if c.account == nil && !preLogin[verb] {
		if verbOps[verb] == "" {
			return result{code: 500, text: msgUnknown}
		}
		return result{code: 530, text: msgNotLoggedIn}
	}
	if verb != "RNTO" && verb != "RNFR" {
		c.renameFrom = ""
	}
	return c.dispatch(verb, arg, ev)
}

// result is what a command answers: the final reply (code 0 for none), whether the
// session ends, and an I/O error (the session ends without a final reply).
type result struct {
	code int
	text string
	done bool
	err  error
}

func (c *session) dispatch(verb, arg string, ev *protocols.Event) result {
	switch verb {
	case "USER":
		return c.cmdUser(arg, ev)
	case "PASS":
		return c.cmdPass(arg, ev)
	case "QUIT":
		return result{code: 221, text: "Goodbye.", done: true}
	case "NOOP":
		return result{code: 200, text: "NOOP command successful."}
	case "SYST":
		return result{code: 215, text: c.h.cfg.System}
	case "FEAT":
		if len(c.h.cfg.Features) == 0 {
			return result{code: 502, text: "FEAT command not implemented."}
		}
		return result{code: 211, text: "Features:\n " + strings.Join(c.h.cfg.Features, "\n ") + "\nEnd"}
	case "OPTS":
		return c.cmdOpts(arg)
	case "HELP":
		return result{code: 214, text: helpText}
	case "AUTH", "PBSZ", "PROT", "REIN", "SMNT", "MLSD", "MLST", "SITE":
		return result{code: 502, text: verb + " command not implemented."}
	case "ACCT":
		return result{code: 202, text: "ACCT command superfluous."}
	case "ALLO":
		return result{code: 202, text: "ALLO command ignored."}
	case "PWD", "XPWD":
		return result{code: 257, text: fmt.Sprintf("%q is current directory.", c.cwd)}
	case "CWD", "XCWD":
		return c.cmdCwd(arg, ev)
	case "CDUP", "XCUP":
		return c.cmdCwd("..", ev)
	case "TYPE":
		return c.cmdType(arg)
	case "MODE":
		return modeOrStru(arg, "S", "Mode set to S.", "BC")
	case "STRU":
		return modeOrStru(arg, "F", "Structure set to F.", "RP")
	case "PASV":
		return c.cmdPasv(ev)
	case "EPSV":
		return c.cmdEpsv(arg, ev)
	case "PORT", "EPRT":
		return c.cmdPort(verb, arg, ev)
	case "REST":
		n, err := strconv.ParseInt(strings.TrimSpace(arg), 10, 64)
		if err != nil || n < 0 {
			return result{code: 501, text: msgSyntax}
		}
		c.rest = n
		ev.Address = int(min(n, 1<<31))
		return result{code: 350, text: fmt.Sprintf("Restarting at %d. Send STORE or RETRIEVE to initiate transfer.", n)}
	case "ABOR":
		return result{code: 225, text: "ABOR command successful."}
	case "STAT":
		if arg != "" {
			return result{code: 502, text: "STAT command not implemented for that parameter."}
		}
		return result{code: 211, text: c.statText()}
	case "SIZE", "MDTM":
		return c.cmdStat(verb, arg, ev)
	case "RETR":
		return c.cmdRetr(arg, ev)
	case "LIST", "NLST":
		return c.cmdList(verb, arg, ev)
	case "STOR", "APPE", "STOU":
		return c.cmdStore(verb, arg, ev)
	case "DELE", "MKD", "XMKD", "RMD", "XRMD", "RNTO", "RNFR":
		return c.cmdModify(verb, arg, ev)
	}
	return result{code: 500, text: msgUnknown}
}

const helpText = "The following commands are recognized.\n" +
	" ABOR ACCT ALLO APPE CDUP CWD  DELE EPRT EPSV FEAT HELP LIST MDTM MKD\n" +
	" MODE NLST NOOP OPTS PASS PASV PORT PWD  QUIT REST RETR RMD  RNFR RNTO\n" +
	" SIZE STAT STOR STOU STRU SYST TYPE USER XCUP XCWD XMKD XPWD XRMD\n" +
	"Help OK."

func (c *session) cmdUser(arg string, ev *protocols.Event) result {
	ev.Detail["username"] = arg[:min(len(arg), maxArgDetail)]
	if c.account != nil {
		return result{code: 530, text: "Can't change to another user."}
	}
	c.user = arg
	if c.h.cfg.Anonymous && isAnonymous(arg) {
		return result{code: 331, text: "Guest login ok, send your complete e-mail address as password."}
	}
	return result{code: 331, text: "Password required."}
}

func (c *session) cmdPass(arg string, ev *protocols.Event) result {
	if c.account != nil {
		return result{code: 503, text: "Already logged in."}
	}
	if c.user == "" {
		return result{code: 503, text: "Login with USER first."}
	}
	user := c.user
	c.user = ""
	ev.Detail["username"] = user[:min(len(user), maxArgDetail)]
	ev.Detail["password"] = arg[:min(len(arg), maxArgDetail)]
	if c.h.cfg.Anonymous && isAnonymous(user) {
		c.account, c.anonymous, c.cwd = &Account{User: user, Home: "/"}, true, "/"
		ev.Detail["result"] = "anonymous"
		return result{code: 230, text: "Guest login ok, access restrictions apply."}
	}
	for i := range c.h.cfg.Accounts {
		a := &c.h.cfg.Accounts[i]
		userOK := subtle.ConstantTimeCompare([]byte(a.User), []byte(user)) == 1
		passOK := subtle.ConstantTimeCompare([]byte(a.Password), []byte(arg)) == 1
		if userOK && passOK {
			c.account, c.cwd = a, "/"
			if a.Home != "" {
				c.cwd = resolve("/", a.Home)
			}
			ev.Detail["result"] = "success"
			return result{code: 230, text: "User logged in."}
		}
	}
	ev.Detail["result"] = "failure"
	c.failures++
	// A failed login is answered late, as login daemons do against guessing.
	select {
	case <-time.After(c.h.cfg.LoginDelay):
	case <-c.ctx.Done():
	}
	ev.Detail["failures"] = strconv.Itoa(c.failures)
	// After too many failures the server hangs up.
	return result{code: 530, text: "Login incorrect.", done: c.failures >= c.h.cfg.MaxLoginFailures}
}

func (c *session) cmdOpts(arg string) result {
	opt, val, _ := strings.Cut(strings.ToUpper(strings.TrimSpace(arg)), " ")
	if opt == "UTF8" && (val == "ON" || val == "") {
		for _, f := range c.h.cfg.Features {
			if strings.EqualFold(f, "UTF8") {
				return result{code: 200, text: "UTF8 mode enabled."}
			}
		}
	}
	return result{code: 501, text: "Option not understood."}
}

func (c *session) cmdCwd(arg string, ev *protocols.Event) result {
	if arg == "" {
		return result{code: 501, text: msgSyntax}
	}
	p := resolve(c.cwd, arg)
	ev.Area = p
	if n := c.h.tree.lookup(p); n == nil || !n.dir {
		return result{code: 550, text: msgNoSuchFile}
	}
	c.cwd = p
	return result{code: 250, text: "CWD command successful."}
}

func (c *session) cmdType(arg string) result {
	fields := strings.Fields(strings.ToUpper(arg))
	if len(fields) == 0 {
		return result{code: 501, text: msgSyntax}
	}
	switch {
	case fields[0] == "A" && (len(fields) == 1 || fields[1] == "N"):
		c.typ = 'A'
		return result{code: 200, text: "Type set to A."}
	case fields[0] == "I" && len(fields) == 1, fields[0] == "L" && len(fields) == 2 && fields[1] == "8":
		c.typ = 'I'
		return result{code: 200, text: "Type set to I."}
	case fields[0] == "A", fields[0] == "E", fields[0] == "L":
		return result{code: 504, text: "Command not implemented for that parameter."}
	}
	return result{code: 501, text: msgSyntax}
}

func modeOrStru(arg, ok, text, known string) result {
	a := strings.ToUpper(strings.TrimSpace(arg))
	switch {
	case a == ok:
		return result{code: 200, text: text}
	case len(a) == 1 && strings.Contains(known, a):
		return result{code: 504, text: "Command not implemented for that parameter."}
	}
	return result{code: 501, text: msgSyntax}
}

func (c *session) statText() string {
	mode := "ASCII"
	if c.typ == 'I' {
		mode = "BINARY"
	}
	return fmt.Sprintf("FTP server status:\n Connected to %s\n Logged in\n TYPE: %s, FORM: Nonprint; STRUcture: File; transfer MODE: Stream\n No data connection\nEnd of status",
		c.s.Remote().Addr().Unmap(), mode)
}

// lookup finds p in this connection's uploads or in the tree.
func (c *session) lookup(p string) *node {
	if n, ok := c.uploads[p]; ok {
		return n
	}
	return c.h.tree.lookup(p)
}

func (c *session) cmdStat(verb, arg string, ev *protocols.Event) result {
	if arg == "" {
		return result{code: 501, text: msgSyntax}
	}
	p := resolve(c.cwd, arg)
	ev.Area = p
	n := c.lookup(p)
	if n == nil || n.dir {
		return result{code: 550, text: "Could not get file " + map[string]string{"SIZE": "size.", "MDTM": "modification time."}[verb]}
	}
	if verb == "SIZE" {
		ev.Quantity = int(min(n.size, 1<<31))
		return result{code: 213, text: strconv.FormatInt(n.size, 10)}
	}
	return result{code: 213, text: n.modified.UTC().Format("20060102150405")}
}

func (c *session) cmdModify(verb, arg string, ev *protocols.Event) result {
	ev.Write = true
	if arg == "" {
		return result{code: 501, text: msgSyntax}
	}
	p := resolve(c.cwd, arg)
	ev.Area = p
	switch verb {
	case "RNFR":
		if c.lookup(p) == nil {
			return result{code: 550, text: msgNoSuchFile}
		}
		c.renameFrom = p
		return result{code: 350, text: "File exists, ready for destination name."}
	case "RNTO":
		if c.renameFrom == "" {
			return result{code: 503, text: msgBadSequence}
		}
		ev.Detail["from"] = c.renameFrom
		c.renameFrom = ""
		return result{code: 550, text: msgPermission}
	case "DELE", "RMD", "XRMD":
		if c.lookup(p) == nil {
			return result{code: 550, text: msgNoSuchFile}
		}
	}
	return result{code: 550, text: msgPermission}
}

// reply writes a reply with a write deadline.
func (c *session) reply(code int, text string) error {
	if err := c.ctrl.SetWriteDeadline(time.Now().Add(c.h.cfg.IdleTimeout)); err != nil {
		return fmt.Errorf("ftp: set write deadline: %w", err)
	}
	if _, err := c.ctrl.Write(AppendReply(nil, code, text)); err != nil {
		return fmt.Errorf("ftp: write reply: %w", err)
	}
	return nil
}

// errIdle ends a session whose control connection stayed silent.
var errIdle = errors.New("ftp: control connection idle")

// readLine returns the next command line, line end excluded. tooLong reports a line
// longer than MaxLineLen, which is skipped up to its end.
func (c *session) readLine() (line []byte, tooLong bool, err error) {
	var buf [2048]byte
	for {
		if i := bytes.IndexByte(c.pending, '\n'); i >= 0 {
			line = bytes.Clone(c.pending[:i])
			c.pending = c.pending[i+1:]
			c.first = time.Time{}
			if len(c.pending) > 0 {
				c.first = time.Now()
			}
			if c.discarding {
				c.discarding = false
				return nil, true, nil
			}
			if len(line) >= MaxLineLen {
				return nil, true, nil
			}
			return line, false, nil
		}
		if len(c.pending) >= MaxLineLen {
			c.discarding = true
			c.pending = c.pending[:0]
		}
		deadline := time.Now().Add(c.h.cfg.IdleTimeout)
		if !c.first.IsZero() {
			deadline = c.first.Add(c.h.cfg.IdleTimeout)
		}
		if err := c.ctrl.SetReadDeadline(deadline); err != nil {
			return nil, false, fmt.Errorf("ftp: set read deadline: %w", err)
		}
		if c.ctx.Err() != nil {
			return nil, false, c.ctx.Err()
		}
		n, err := c.ctrl.Read(buf[:])
		if n > 0 {
			if c.first.IsZero() {
				c.first = time.Now()
			}
			c.pending = append(c.pending, buf[:n]...)
			continue
		}
		if isTimeout(err) && c.ctx.Err() == nil {
			return nil, false, errIdle
		}
		if err == nil {
			err = io.EOF
		}
		return nil, false, err
	}
}

// close releases what the connection holds: its data connection set-up and the
// memory reservation of its uploads.
func (c *session) close() {
	c.abortData()
	c.dataMu.Lock()
	if c.pasv != nil {
		c.pasv.Close()
		c.pasv = nil
	}
	c.dataMu.Unlock()
	c.h.held.Add(-c.held)
	c.held = 0
}

// quiet maps the errors of a peer that went away to nil.
func quiet(err error) error {
	if err == nil || protocols.PeerGone(err) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// isTimeout reports whether a read or write ended at its deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}
