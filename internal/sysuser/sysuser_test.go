package sysuser

import (
	"os"
	"os/exec"
	"os/user"
	"testing"
)

// TestEnsureCreatesOnce creates a throwaway system user (the tests run as
// root, as CI does) and finds it again the second time.
func TestEnsureCreatesOnce(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test creates a system user: run it as root (CI does)")
	}
	const name = "mairust-sysuser-test"
	exec.Command("userdel", name).Run()
	t.Cleanup(func() { exec.Command("userdel", name).Run() })
	c1, err := Ensure(name)
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(name)
	if err != nil || u.Uid == "0" || c1.Uid == 0 {
		t.Fatalf("created %+v, %v; credential %+v", u, err, c1)
	}
	c2, err := Ensure(name)
	if err != nil || c2.Uid != c1.Uid || c2.Gid != c1.Gid {
		t.Fatalf("second Ensure: %+v, %v; want %+v", c2, err, c1)
	}
	if _, err := Ensure("bad name!"); err == nil {
		t.Fatal("an invalid user name was accepted")
	}
}
