package protocoltest

import (
	"errors"
	"testing"

	"github.com/pcapot/pcapot/protocols"
)

// BadConfigs are configurations a protocol's constructor must refuse, one a case: Mod
// spoils the default configuration. (An alias of a slice of an unnamed struct, so
// that the tables may stay unkeyed.)
type BadConfigs[C any] = []struct {
	Name string
	Mod  func(*C)
}

// RefuseConfigs checks a protocol's constructor New against configurations it must
// refuse: for each case, in a subtest of its Name, New refuses newConfig's
// configuration spoiled by Mod with an error wrapping protocols.ErrConfig (in
// Env(t, id())); and New refuses the default configuration in an Env without an
// identity the same way.
func RefuseConfigs[C, H any](t *testing.T, newConfig func() *C, New func(protocols.Env, *C) (H, error), id func() *protocols.Identity, cases BadConfigs[C]) {
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
