package ftp

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/pcapot/pcapot/protocols"
)

// The virtual file tree: directories and read-only files built from the
// configuration, in memory. Attacker-supplied paths are only ever looked up in it.

// node is a file or directory of the tree.
type node struct {
	path     string // clean absolute path
	dir      bool
	content  []byte // the first bytes of a file
	size     int64  // file size: content, then generated filler
	seed     uint64 // of the filler
	modified time.Time
}

// tree is the virtual file system; it is built once and never changed.
type tree struct {
	nodes map[string]*node
}

// expander returns the function that replaces identity placeholders such as
// {firmware} in configured names and contents.
func expander(id *protocols.Identity) func(string) string {
	r := strings.NewReplacer(
		"{vendor}", id.Vendor, "{product}", id.Product, "{model}", id.Model,
		"{order_number}", id.OrderNumber, "{firmware}", id.Firmware, "{hardware}", id.Hardware,
		"{serial}", id.Serial, "{mac}", id.MAC.String(), "{hostname}", id.Hostname,
		"{module_name}", id.ModuleName, "{location}", id.Location, "{contact}", id.Contact,
		"{description}", id.Description,
	)
	return r.Replace
}

// newTree builds the tree of the configured files and directories. ident identifies
// the install (vendor, serial, MAC): the filler of a file depends on its path and
// ident in the same way as the TFTP server's, so a file both serve has the same
// bytes. Files without a modification time get one before boot, derived from their
// path and ident.
func newTree(files []File, dirs []string, expand func(string) string, boot time.Time, ident string) (*tree, error) {
	t := &tree{nodes: map[string]*node{"/": {path: "/", dir: true, modified: boot}}}
	mkdirs := func(p string, mod time.Time) error {
		for d := p; d != "/"; d = path.Dir(d) {
			if n, ok := t.nodes[d]; ok {
				if !n.dir {
					return fmt.Errorf("%s is a file and a directory", d)
				}
				continue
			}
			t.nodes[d] = &node{path: d, dir: true, modified: mod}
		}
		return nil
	}
	for _, d := range dirs {
		p, err := cleanConfigPath(expand(d))
		if err != nil {
			return nil, fmt.Errorf("dirs: %w", err)
		}
		if err := mkdirs(p, boot.Add(-30*24*time.Hour)); err != nil {
			return nil, fmt.Errorf("dirs: %w", err)
		}
	}
	for _, f := range files {
		p, err := cleanConfigPath(expand(f.Path))
		if err != nil || p == "/" {
			return nil, fmt.Errorf("files: path %q: want an absolute file path", f.Path)
		}
		if _, dup := t.nodes[p]; dup {
			return nil, fmt.Errorf("files: %s twice (or a directory)", p)
		}
		content := []byte(expand(f.Content))
		size := max(f.Size, int64(len(content)))
		seed := fnv.New64a()
		fmt.Fprintf(seed, "%s\x00%s", strings.TrimPrefix(p, "/"), ident)
		mod := f.Modified
		if mod.IsZero() {
			// Files were written before the device last booted: between 20 and 400
			// days before.
			h := fnv.New64a()
			fmt.Fprintf(h, "mtime\x00%s\x00%s", p, ident)
			mod = boot.Add(-time.Duration(20*24+h.Sum64()%(380*24)) * time.Hour).Truncate(time.Minute)
		}
		if err := mkdirs(path.Dir(p), mod); err != nil {
			return nil, fmt.Errorf("files: %w", err)
		}
		t.nodes[p] = &node{path: p, content: content, size: size, seed: seed.Sum64(), modified: mod}
	}
	return t, nil
}

// cleanConfigPath checks and cleans a configured path.
func cleanConfigPath(p string) (string, error) {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "\x00\r\n") {
		return "", fmt.Errorf("%q: want an absolute path", p)
	}
	return path.Clean(p), nil
}

// lookup returns the node at the clean absolute path p, or nil.
func (t *tree) lookup(p string) *node { return t.nodes[p] }

// children returns the nodes directly in directory dir, sorted by name.
func (t *tree) children(dir string) []*node {
	var out []*node
	for p, n := range t.nodes {
		if p != "/" && path.Dir(p) == dir {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *node) int { return strings.Compare(a.path, b.path) })
	return out
}

// resolve returns the clean absolute path of the argument arg given the working
// directory cwd. ".." never leads above the root.
func resolve(cwd, arg string) string {
	if strings.HasPrefix(arg, "/") {
		return path.Clean(arg)
	}
	return path.Clean(path.Join(cwd, arg))
}

// ReadAt reads the file's bytes at off: its content, then deterministic filler up
// to its size (firmware images and other large files are not kept in memory).
func (n *node) ReadAt(p []byte, off int64) (int, error) {
	if off >= n.size {
		return 0, io.EOF
	}
	k := 0
	for k < len(p) && off < n.size {
		if off < int64(len(n.content)) {
			c := copy(p[k:min(len(p), k+int(n.size-off))], n.content[off:])
			k += c
			off += int64(c)
			continue
		}
		p[k] = fillerByte(n.seed, off)
		k++
		off++
	}
	if k < len(p) {
		return k, io.EOF
	}
	return k, nil
}

// fillerByte is byte off of the filler with the given seed: splitmix64 of the
// seed and the 8-byte block number.
func fillerByte(seed uint64, off int64) byte {
	z := seed + uint64(off/8+1)*0x9E3779B97F4A7C15
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	z ^= z >> 31
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], z)
	return b[off%8]
}

// listLine formats one line of a LIST reply in the Unix "ls -l" form; entries
// modified within six months show the time of day, older ones the year.
func listLine(name string, dir bool, size int64, mod, now time.Time, owner, group string) string {
	perm, links := "-rw-r--r--", 1
	if dir {
		perm, links, size = "drwxr-xr-x", 2, 512
	}
	stamp := mod.Format("Jan _2 15:04")
	if d := now.Sub(mod); d > 182*24*time.Hour || d < -time.Hour {
		stamp = mod.Format("Jan _2  2006")
	}
	return fmt.Sprintf("%s %3d %-8s %-8s %10d %s %s", perm, links, owner, group, size, stamp, name)
}
