package capture

import (
	"errors"
	"fmt"

	"golang.org/x/net/bpf"
)

// maxBPFInsns is the kernel's BPF_MAXINSNS for classic BPF socket filters.
const maxBPFInsns = 4096

// assembler is a tiny classic-BPF assembler with symbolic forward labels. Conditional
// jumps can only skip 255 instructions; a jump whose target is farther away is relaxed
// into a conditional jump over an unconditional "ja" stub, so programs of any size up
// to BPF_MAXINSNS assemble.
type assembler struct {
	items  []asmItem
	nlabel int
}

type asmKind uint8

const (
	asmIns    asmKind = iota // a non-jump instruction
	asmLabel                 // a label definition (no code)
	asmJumpIf                // a conditional jump with symbolic targets
	asmJump                  // an unconditional jump to a label
)

type asmItem struct {
	kind asmKind
	ins  bpf.Instruction
	name string // label name (asmLabel) or target (asmJump)
	cond bpf.JumpTest
	val  uint32
	t, f string // targets of asmJumpIf; "" is the next instruction
}

// emit appends plain instructions.
func (a *assembler) emit(ins ...bpf.Instruction) {
	for _, in := range ins {
		a.items = append(a.items, asmItem{kind: asmIns, ins: in})
	}
}

// newLabel returns a fresh label name.
func (a *assembler) newLabel() string {
	a.nlabel++
	return fmt.Sprintf("L%d", a.nlabel)
}

// label defines name at the current position.
func (a *assembler) label(name string) {
	a.items = append(a.items, asmItem{kind: asmLabel, name: name})
}

// jif jumps to t if "A cond val" holds, else to f ("" = fall through).
func (a *assembler) jif(cond bpf.JumpTest, val uint32, t, f string) {
	a.items = append(a.items, asmItem{kind: asmJumpIf, cond: cond, val: val, t: t, f: f})
}

// jeq is jif(bpf.JumpEqual, ...).
func (a *assembler) jeq(val uint32, t, f string) { a.jif(bpf.JumpEqual, val, t, f) }

// jmp jumps unconditionally to target.
func (a *assembler) jmp(target string) {
	a.items = append(a.items, asmItem{kind: asmJump, name: target})
}

var errBPFTooLarge = errors.New("capture: BPF program exceeds 4096 instructions")

// assemble resolves labels and returns the raw program.
func (a *assembler) assemble() ([]bpf.RawInstruction, error) {
	// far[i][0] / far[i][1]: the true / false target of item i needs a "ja" stub.
	far := make([][2]bool, len(a.items))
	pos := make([]int, len(a.items))
	labels := make(map[string]int)
	for {
		clear(labels)
		p := 0
		for i, it := range a.items {
			pos[i] = p
			switch it.kind {
			case asmLabel:
				if _, dup := labels[it.name]; dup {
					return nil, fmt.Errorf("capture: bpf label %q defined twice", it.name)
				}
				labels[it.name] = p
			case asmJumpIf:
				p++
				for _, f := range far[i] {
					if f {
						p++
					}
				}
			default:
				p++
			}
		}
		if p > maxBPFInsns {
			return nil, errBPFTooLarge
		}
		changed := false
		for i, it := range a.items {
			if it.kind != asmJumpIf {
				continue
			}
			next := pos[i] + 1
			for side, target := range [2]string{it.t, it.f} {
				if target == "" || far[i][side] {
					continue
				}
				tp, ok := labels[target]
				if !ok {
					return nil, fmt.Errorf("capture: bpf label %q undefined", target)
				}
				if tp-next > 255 { // the skip counts from the instruction after the jump
					far[i][side] = true
					changed = true
				}
			}
		}
		if !changed {
			break
		}
	}

	out := make([]bpf.Instruction, 0, maxBPFInsns)
	resolve := func(target string, from int) (int, error) {
		tp, ok := labels[target]
		if !ok {
			return 0, fmt.Errorf("capture: bpf label %q undefined", target)
		}
		if tp < from {
			return 0, fmt.Errorf("capture: bpf label %q is behind its jump", target)
		}
		return tp - from, nil
	}
	for i, it := range a.items {
		switch it.kind {
		case asmLabel:
		case asmIns:
			out = append(out, it.ins)
		case asmJump:
			d, err := resolve(it.name, pos[i]+1)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.Jump{Skip: uint32(d)})
		case asmJumpIf:
			ns := stubs(far[i])
			next := pos[i] + 1 + ns // first instruction after the stubs
			skip := func(target string, side int, stubIndex int) (uint8, error) {
				if far[i][side] {
					return uint8(stubIndex), nil
				}
				if target == "" {
					return uint8(ns), nil
				}
				d, err := resolve(target, next)
				if err != nil {
					return 0, err
				}
				return uint8(d + ns), nil
			}
			st, err := skip(it.t, 0, 0)
			if err != nil {
				return nil, err
			}
			sf, err := skip(it.f, 1, ns-1)
			if err != nil {
				return nil, err
			}
			out = append(out, bpf.JumpIf{Cond: it.cond, Val: it.val, SkipTrue: st, SkipFalse: sf})
			stubPos := pos[i] + 1
			for side, target := range [2]string{it.t, it.f} {
				if !far[i][side] {
					continue
				}
				d, err := resolve(target, stubPos+1)
				if err != nil {
					return nil, err
				}
				out = append(out, bpf.Jump{Skip: uint32(d)})
				stubPos++
			}
		}
	}
	raw, err := bpf.Assemble(out)
	if err != nil {
		return nil, fmt.Errorf("capture: assemble bpf: %w", err)
	}
	return raw, nil
}

func stubs(f [2]bool) int {
	n := 0
	for _, b := range f {
		if b {
			n++
		}
	}
	return n
}
