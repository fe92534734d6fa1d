package protocoltest

import (
	"errors"
	"testing"

	"github.com/pcapot/pcapot/protocols"
)

// CheckSpec checks a protocol's registry entry s against the contract: the Name,
// Transport, Port and Service of want; New, given env and what NewConfig returns, builds
// a handler of the transport's kind; New refuses a config of another type with
// ErrConfig. It returns the handler.
func CheckSpec(t testing.TB, s, want protocols.Spec, env protocols.Env) any {
	t.Helper()
	if s.Name != want.Name || s.Transport != want.Transport || s.Port != want.Port || s.Service != want.Service {
		t.Fatalf("spec %s/%s port %d service %q, want %s/%s port %d service %q",
			s.Name, s.Transport, s.Port, s.Service, want.Name, want.Transport, want.Port, want.Service)
	}
	var cfg any
	if s.NewConfig != nil {
		cfg = s.NewConfig()
	}
	h, err := s.New(env, cfg)
	if err != nil {
		t.Fatalf("New with the config of NewConfig: %v", err)
	}
	switch s.Transport {
	case protocols.TCP:
		if _, ok := h.(protocols.StreamHandler); !ok {
			t.Fatalf("New returned %T, not a StreamHandler", h)
		}
	case protocols.UDP:
		if _, ok := h.(protocols.DatagramHandler); !ok {
			t.Fatalf("New returned %T, not a DatagramHandler", h)
		}
	default:
		t.Fatalf("transport %q", s.Transport)
	}
	if s.NewConfig != nil {
		if _, err := s.New(env, struct{}{}); !errors.Is(err, protocols.ErrConfig) {
			t.Fatalf("New with a config of the wrong type: %v, want ErrConfig", err)
		}
	}
	return h
}
