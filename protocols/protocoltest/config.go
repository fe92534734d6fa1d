package protocoltest

import (
	"errors"
	"testing"

	"github.com/pcapot/pcapot/protocols"
)

// RefuseConfigs checks a protocol's constructor New against configurations it must
// refuse: for each case, in a subtest of its Name, New refuses newConfig's
// configuration spoiled by Mod with an error wrapping protocols.ErrConfig (in
// Env(t, id())); and New refuses the default configuration in an Env without an
// identity the same way. (The cases are a slice of an unnamed struct, so that the
// table may stay unkeyed.)
func RefuseConfigs[C, H any](t *testing.T, newConfig func() *C, New func(protocols.Env, *C) (H, error), id func() *protocols.Identity, cases []struct {
	Name string
	Mod  func(*C)
}) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.Name, func(t *testing.T) {
			c := newConfig()
			tc.Mod(c)
			if _, err := New(Env(t, id()), c); !errors.Is(err, protocols.ErrConfig) {
				t.Fatalf("New: %v, want ErrConfig", err)
			}
		})
	}
	if _, err := New(protocols.Env{}, newConfig()); !errors.Is(err, protocols.ErrConfig) {
		t.Errorf("no identity: %v", err)
	}
}
