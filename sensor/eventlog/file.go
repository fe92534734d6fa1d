package eventlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
)

// fileSink writes lines to a file, rotating it by size, or to standard output.
type fileSink struct {
	path     string // "" for standard output
	maxBytes int64  // < 0: no rotation
	maxFiles int

	f    *os.File
	w    *bufio.Writer
	size int64
}

func openFileSink(path string, maxBytes int64, maxFiles int, stdout io.Writer) (*fileSink, error) {
	if path == "-" {
		return &fileSink{w: bufio.NewWriterSize(stdout, 64<<10), maxBytes: -1}, nil
	}
	s := &fileSink{path: path, maxBytes: maxBytes, maxFiles: maxFiles}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *fileSink) open() error {
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("eventlog: open %s: %w", s.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return fmt.Errorf("eventlog: stat %s: %w", s.path, err)
	}
	if !st.Mode().IsRegular() {
		_ = f.Close()
		return fmt.Errorf("eventlog: %s is not a regular file", s.path)
	}
	s.f, s.size = f, st.Size()
	s.w = bufio.NewWriterSize(f, 64<<10)
	return nil
}

// write appends one line, rotating first when the line would take the file beyond
// maxBytes (a line longer than maxBytes still gets a file of its own).
func (s *fileSink) write(line []byte) error {
	if s.f == nil && s.path != "" {
		// A failed rotation left no file: try again.
		if err := s.open(); err != nil {
			return err
		}
	}
	if s.maxBytes >= 0 && s.path != "" && s.size > 0 && s.size+int64(len(line)) > s.maxBytes {
		if err := s.rotate(); err != nil {
			return err
		}
	}
	n, err := s.w.Write(line)
	s.size += int64(n)
	return err
}

// rotate renames path.(N-1) to path.N, ..., path to path.1 and opens a new path. The
// oldest file beyond maxFiles is overwritten by the rename chain.
func (s *fileSink) rotate() error {
	if err := s.closeFile(); err != nil {
		return fmt.Errorf("eventlog: rotate %s: %w", s.path, err)
	}
	for i := s.maxFiles - 1; i >= 1; i-- {
		from, to := s.path+"."+strconv.Itoa(i), s.path+"."+strconv.Itoa(i+1)
		if err := os.Rename(from, to); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("eventlog: rotate %s: %w", s.path, err)
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("eventlog: rotate %s: %w", s.path, err)
	}
	return s.open()
}

func (s *fileSink) flush() error {
	if s.w == nil {
		return nil
	}
	return s.w.Flush()
}

// closeFile flushes, syncs and closes the current file (not standard output).
func (s *fileSink) closeFile() error {
	if s.f == nil {
		return nil
	}
	err := errors.Join(s.w.Flush(), s.f.Sync(), s.f.Close())
	s.f, s.w = nil, nil
	return err
}

func (s *fileSink) close() error {
	if s.path == "" {
		return s.flush()
	}
	if err := s.closeFile(); err != nil {
		return fmt.Errorf("eventlog: close %s: %w", s.path, err)
	}
	return nil
}
