package main

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mairust/mairust/internal/proctest"
	"github.com/mairust/mairust/internal/smtpload"
)

// bench smtp loads bench sink, which counts what it took and says so when
// interrupted.
func TestBenchSinkAndSMTP(t *testing.T) {
	addr := proctest.FreeAddr(t)
	sink := exec.Command(proctest.Binary(t), "bench", "sink", "--listen", addr)
	var out, errs bytes.Buffer
	sink.Stdout, sink.Stderr = &out, &errs
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Process.Kill() })
	var res smtpload.Result
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		o, code := run(t, "bench", "smtp", "--addr", addr, "--conns", "2", "--messages", "20", "--size", "2k", "--to", "a@sink.test", "--json")
		if code == 0 {
			if err := json.Unmarshal([]byte(o[strings.Index(o, "{"):]), &res); err != nil {
				t.Fatalf("%v: %s", err, o)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bench smtp: exit %d\n%s\nsink: %s", code, o, errs.String())
		}
	}
	if res.OK != 20 || res.Failed != 0 {
		t.Fatalf("bench smtp: %+v", res)
	}
	sink.Process.Signal(syscall.SIGINT)
	if err := sink.Wait(); err != nil {
		t.Fatalf("sink: %v\n%s", err, errs.String())
	}
	if got := strings.TrimSpace(out.String()); got != "received 20 messages" {
		t.Errorf("sink said %q", got)
	}
}
