package link

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"connectrpc.com/connect"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	agentsv1 "github.com/mairust/mairust/proto/mairust/agents/v1"
)

// DefaultOutboxLimit is how many undelivered reports an Outbox keeps by
// default.
const DefaultOutboxLimit = 10000

// Outbox keeps the agent's reports in its database (link_reports) until
// the control plane acknowledges them, so that reports made while it is
// unreachable are delivered later, in order, each with its sequence.
type Outbox struct {
	pool  *pgxpool.Pool
	limit int64
	log   *slog.Logger
	wake  chan struct{}
}

// senderPoll is how often the sender looks for reports it was not woken
// for (enqueued by another process on the same database).
const senderPoll = time.Minute

// NewOutbox returns the outbox in pool's database that keeps at most limit
// reports (0: DefaultOutboxLimit), dropping the oldest.
func NewOutbox(pool *pgxpool.Pool, limit int, log *slog.Logger) *Outbox {
	if limit <= 0 {
		limit = DefaultOutboxLimit
	}
	if log == nil {
		log = slog.Default()
	}
	return &Outbox{pool: pool, limit: int64(limit), log: log, wake: make(chan struct{}, 1)}
}

// Enqueue keeps a copy of r, with the next sequence and, when r has none,
// the time now, until the control plane acknowledges it; it returns the
// sequence. When the outbox is full the oldest reports are dropped, with a
// warning and the metric mairust_link_reports_dropped_total.
func (o *Outbox) Enqueue(ctx context.Context, r *agentsv1.ReportRequest) (int64, error) {
	r = proto.Clone(r).(*agentsv1.ReportRequest)
	if r.At == nil {
		r.At = timestamppb.Now()
	}
	var seq, dropped int64
	err := pgx.BeginFunc(ctx, o.pool, func(tx pgx.Tx) error {
		// The row lock numbers reports one after another, without gaps, in
		// the order they commit.
		if err := tx.QueryRow(ctx, `UPDATE link_state SET report_sequence = report_sequence + 1 RETURNING report_sequence`).Scan(&seq); err != nil {
			return err
		}
		r.Sequence = seq
		payload, err := protojson.Marshal(r)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO link_reports(sequence, payload) VALUES ($1, $2)`, seq, payload); err != nil {
			return err
		}
		// Reports leave from the oldest, so those kept are consecutive.
		tag, err := tx.Exec(ctx, `DELETE FROM link_reports WHERE sequence <= $1`, seq-o.limit)
		dropped = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("link: keep a report for the control plane (is the database migrated?): %w", err)
	}
	if dropped > 0 {
		droppedTotal.WithLabelValues("outbox_full").Add(float64(dropped))
		o.log.Warn("the control plane has been unreachable for long: the oldest undelivered reports are dropped", "dropped", dropped, "limit", o.limit)
	}
	select {
	case o.wake <- struct{}{}:
	default:
	}
	return seq, nil
}

// send delivers the outbox's reports as they come.
func (r *runner) send(ctx context.Context) {
	rt := r.retrier("report")
	poll := time.NewTicker(senderPoll)
	defer poll.Stop()
	for {
		if err := r.deliver(ctx); err != nil {
			if !rt.fail(ctx, err) {
				return
			}
			continue
		}
		rt.ok()
		select {
		case <-ctx.Done():
			return
		case <-r.Outbox.wake:
		case <-poll.C:
		}
	}
}

// deliver sends the pending reports in sequence order, deleting each once
// the control plane has it, until none is left or one fails. A report the
// control plane refuses as invalid is dropped, so as not to hold up the
// others.
func (r *runner) deliver(ctx context.Context) error {
	for {
		var seqs []int64
		var payloads [][]byte
		rows, _ := r.Pool.Query(ctx, `SELECT sequence, payload FROM link_reports ORDER BY sequence LIMIT 100`)
		var seq int64
		var payload []byte
		_, err := pgx.ForEachRow(rows, []any{&seq, &payload}, func() error {
			seqs, payloads = append(seqs, seq), append(payloads, payload)
			return nil
		})
		if err != nil || len(seqs) == 0 {
			return err
		}
		for i, seq := range seqs {
			if err := r.report(ctx, seq, payloads[i]); err != nil {
				return err
			}
			// Acknowledged, whether new or a duplicate, or dropped.
			if _, err := r.Pool.Exec(ctx, `DELETE FROM link_reports WHERE sequence = $1`, seq); err != nil {
				return err
			}
		}
	}
}

// report sends one report; one that cannot be sent as it is (refused as
// invalid, unreadable) is logged and counted as dropped, not returned.
func (r *runner) report(ctx context.Context, seq int64, payload []byte) error {
	rep := &agentsv1.ReportRequest{}
	err := protojson.Unmarshal(payload, rep)
	if err == nil {
		rep.Sequence = seq
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err = r.client.Report(cctx, connect.NewRequest(rep))
		cancel()
		if connect.CodeOf(err) != connect.CodeInvalidArgument {
			return err
		}
	}
	droppedTotal.WithLabelValues("rejected").Inc()
	r.Log.Error("a report cannot be delivered; it is dropped", "sequence", seq, "error", err)
	return nil
}
