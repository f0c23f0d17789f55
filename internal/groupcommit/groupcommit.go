// Package groupcommit makes many goroutines share one expensive step (an
// fsync, a database commit): callers queue their item and wait; one worker
// takes everything queued, runs the step once for the whole batch, and
// answers each caller. Under load batches grow by themselves; alone, an item
// goes through at once.
package groupcommit

import (
	"context"
	"errors"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrClosed is returned by Do after Close.
var ErrClosed = errors.New("groupcommit: closed")

var batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Namespace: "mairust",
	Subsystem: "groupcommit",
	Name:      "batch_size",
	Help:      "Items made durable together in one batch, by committer.",
	Buckets:   []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
}, []string{"committer"})

// Collectors returns the package's metrics for registration.
func Collectors() []prometheus.Collector { return []prometheus.Collector{batchSize} }

// Committer batches items of type T for run, which returns one error per
// item (nil for success), in order.
type Committer[T any] struct {
	name string
	max  int
	run  func([]T) []error
	reqs chan request[T]
	stop chan struct{} // closed by Close
	dead chan struct{} // closed when the worker has exited
	once sync.Once
}

type request[T any] struct {
	item T
	res  chan error
}

// New starts a committer named name (for metrics) with workers goroutines,
// each running at most max items a batch. More than one worker lets a batch
// be collected while another runs, when the step is bound by device latency
// rather than by a lock.
func New[T any](name string, workers, max int, run func([]T) []error) *Committer[T] {
	c := &Committer[T]{name: name, max: max, run: run, reqs: make(chan request[T], max), stop: make(chan struct{}), dead: make(chan struct{})}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.loop()
		}()
	}
	go func() {
		wg.Wait()
		c.drain()
		close(c.dead)
	}()
	return c
}

// Do queues item and waits until its batch has run. When ctx ends first, Do
// returns ctx's error, but the item may still be run.
func (c *Committer[T]) Do(ctx context.Context, item T) error {
	r := request[T]{item: item, res: make(chan error, 1)}
	select {
	case <-c.stop:
		return ErrClosed
	default:
	}
	select {
	case c.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.stop:
		return ErrClosed
	}
	select {
	case err := <-r.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-c.dead:
		select {
		case err := <-r.res:
			return err
		default:
			return ErrClosed // queued as the worker stopped: never run
		}
	}
}

func (c *Committer[T]) loop() {
	batch := make([]request[T], 0, c.max)
	items := make([]T, 0, c.max)
	for {
		select {
		case r := <-c.reqs:
			batch = append(batch[:0], r)
		case <-c.stop:
			return
		}
	fill:
		for len(batch) < c.max {
			select {
			case r := <-c.reqs:
				batch = append(batch, r)
			default:
				break fill
			}
		}
		items = items[:0]
		for _, r := range batch {
			items = append(items, r.item)
		}
		batchSize.WithLabelValues(c.name).Observe(float64(len(batch)))
		errs := c.run(items)
		for i, r := range batch {
			r.res <- errs[i]
		}
		clear(items)
	}
}

// drain answers requests still queued when the workers have stopped.
func (c *Committer[T]) drain() {
	for {
		select {
		case r := <-c.reqs:
			r.res <- ErrClosed
		default:
			return
		}
	}
}

// Close stops the worker after the batch under way; later Do calls fail.
func (c *Committer[T]) Close() {
	c.once.Do(func() { close(c.stop) })
	<-c.dead
}
