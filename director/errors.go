package director

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
)

// Class says whether a failed attempt may be re-applied elsewhere.
type Class uint8

const (
	// NotReached: the request never reached the member (connection refused,
	// no route, DNS failure, the member said it is draining before reading
	// the request). Always safe to retry.
	NotReached Class = iota + 1
	// MaybeProcessed: the member may have acted on the request (timeout,
	// reset mid-reply, server error). Retried only if the request is
	// idempotent.
	MaybeProcessed
	// Permanent: retrying cannot help (the request itself was refused). The
	// member is not blamed.
	Permanent
)

func (c Class) String() string {
	switch c {
	case NotReached:
		return "not-reached"
	case MaybeProcessed:
		return "maybe-processed"
	case Permanent:
		return "permanent"
	}
	return "unclassified"
}

// Sentinel errors; an *Error wraps exactly one of them.
var (
	// ErrExhausted: every attempt failed (the paper's apply returning false).
	ErrExhausted = errors.New("director: all attempts failed")
	// ErrNotRetryable: an attempt failed in a way that forbids a retry.
	ErrNotRetryable = errors.New("director: failure is not safe to retry")
	// ErrBudget: a retry was needed but the retry budget was empty.
	ErrBudget = errors.New("director: retry budget exhausted")
	// ErrAttemptTimeout is the cause of an attempt cancelled by AttemptTimeout.
	ErrAttemptTimeout = errors.New("director: attempt timed out")
	// ErrHedgeLost is passed to Cleanup for a hedged attempt that finished
	// after another attempt had already succeeded.
	ErrHedgeLost = errors.New("director: another attempt won the hedge")
	// ErrClosed: the director was closed.
	ErrClosed = errors.New("director: closed")
)

type classified struct {
	class Class
	err   error
}

func (c *classified) Error() string { return c.err.Error() }
func (c *classified) Unwrap() error { return c.err }

// WithClass marks err with a class that Classify will return. Actions use
// it to translate a service-specific failure into the director's terms, as
// the paper's requests raise a generic exception.
func WithClass(err error, c Class) error {
	if err == nil {
		return nil
	}
	return &classified{class: c, err: err}
}

// Classify returns the class of an attempt's error: the class attached with
// WithClass if any; NotReached for failures to dial or connect; otherwise
// MaybeProcessed.
func Classify(err error) Class {
	var c *classified
	if errors.As(err, &c) {
		return c.class
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return NotReached
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return NotReached
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.Is(err, syscall.ENETUNREACH) {
		return NotReached
	}
	return MaybeProcessed
}

// AttemptError records one failed attempt.
type AttemptError struct {
	Member string // the member's URL
	Number int    // 1-based attempt number
	Hedge  bool   // started as a hedge
	Class  Class
	Err    error
}

func (a AttemptError) String() string {
	h := ""
	if a.Hedge {
		h = " (hedge)"
	}
	return fmt.Sprintf("#%d %s%s: %s: %v", a.Number, a.Member, h, a.Class, a.Err)
}

// Error is what Apply returns when the request did not succeed: the reason,
// one of the sentinels above or the caller's context error, plus every
// attempt's error.
type Error struct {
	Reason   error
	Attempts []AttemptError
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Reason.Error())
	for i, a := range e.Attempts {
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString("; ")
		}
		b.WriteString(a.String())
	}
	return b.String()
}

// Unwrap lets errors.Is see the reason and the last attempt's error.
func (e *Error) Unwrap() []error {
	errs := []error{e.Reason}
	if n := len(e.Attempts); n > 0 {
		errs = append(errs, e.Attempts[n-1].Err)
	}
	return errs
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
