package password

import "testing"

func TestHashCheck(t *testing.T) {
	h, err := Hash("correct horse")
	if err != nil {
		t.Fatal(err)
	}
	for pw, want := range map[string]bool{"correct horse": true, "correct hors": false, "": false} {
		ok, err := Check(h, pw)
		if err != nil || ok != want {
			t.Errorf("Check(%q) = %v, %v; want %v", pw, ok, err, want)
		}
	}
	h2, _ := Hash("correct horse")
	if h == h2 {
		t.Error("two hashes of one password are equal: salt not random")
	}
	if _, err := Check("$2a$10$abc", "x"); err == nil {
		t.Error("non-argon2 hash accepted")
	}
	if len(Random(20)) != 20 {
		t.Error("Random length")
	}
}
