package groupcommit

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
)

func TestBatchesAndPerItemErrors(t *testing.T) {
	var mu sync.Mutex
	var sizes []int
	release := make(chan struct{})
	c := New("test", 1, 8, func(items []int) []error {
		mu.Lock()
		sizes = append(sizes, len(items))
		first := len(sizes) == 1
		mu.Unlock()
		if first {
			<-release // hold the first batch so that the others queue up
		}
		errs := make([]error, len(items))
		for i, v := range items {
			if v%5 == 0 {
				errs[i] = errors.New("five")
			}
		}
		return errs
	})
	defer c.Close()
	var wg sync.WaitGroup
	results := make([]error, 20)
	started := make(chan struct{}, 20)
	for i := 1; i < 20; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			started <- struct{}{}
			results[i] = c.Do(context.Background(), i)
		}(i)
	}
	for i := 1; i < 20; i++ {
		<-started
	}
	for len(c.reqs) < cap(c.reqs) {
		runtime.Gosched() // until the queue is full behind the held batch
	}
	close(release)
	wg.Wait()
	for i := 1; i < 20; i++ {
		if (results[i] != nil) != (i%5 == 0) {
			t.Errorf("item %d: %v", i, results[i])
		}
	}
	total := 0
	for _, s := range sizes {
		if s > 8 {
			t.Errorf("batch of %d exceeds max 8", s)
		}
		total += s
	}
	if total != 19 || len(sizes) >= 19 {
		t.Errorf("batch sizes %v: want 19 items in fewer than 19 batches", sizes)
	}
}

func TestClosed(t *testing.T) {
	c := New("test", 1, 4, func(items []int) []error { return make([]error, len(items)) })
	if err := c.Do(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := c.Do(context.Background(), 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}
