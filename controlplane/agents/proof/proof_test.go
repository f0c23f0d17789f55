package proof

import "testing"

// The messages are the contract of agents.v1: pin their bytes.
func TestMessages(t *testing.T) {
	if got, want := string(Enroll("mre_T", []byte{0, 'k'})), "mairust-enroll\nmre_T\n\x00k"; got != want {
		t.Errorf("Enroll: %q, want %q", got, want)
	}
	if got, want := string(Renew("a-1", 1700000000)), "mairust-renew\na-1\n1700000000"; got != want {
		t.Errorf("Renew: %q, want %q", got, want)
	}
}
