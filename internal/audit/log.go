package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/keygate/keygate/internal/store"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/keygate/keygate/internal/apikey"
)

// Defaults of Options.
const (
	DefaultStream   = "keygate_audit"
	DefaultMaxAge   = 400 * 24 * time.Hour
	DefaultMaxBytes = 1 << 30 // 1 GiB
)

// Options name the stream and its limits.
type Options struct {
	Stream   string        // the stream's name, and its subjects' first token
	Replicas int           // as the store's buckets (store.Options.Replicas)
	MaxAge   time.Duration // records older than this are discarded
	MaxBytes int64         // past this size, the oldest records are discarded
	// KeyFormat is the configured key format, by which Append recognises
	// a plaintext key whatever the field holding it is called.
	KeyFormat apikey.Format
	// Now is the clock that stamps records without a time.
	Now func() time.Time
}

// withDefaults fills what o leaves zero and checks the rest.
func (o Options) withDefaults() (Options, error) {
	if o.Stream == "" {
		o.Stream = DefaultStream
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.MaxAge == 0 {
		o.MaxAge = DefaultMaxAge
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if len(o.KeyFormat.Prefixes) == 0 {
		o.KeyFormat = apikey.DefaultFormat()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	switch {
	case !idPattern.MatchString(o.Stream):
		return o, fmt.Errorf("audit stream %q: must be 1-64 of [A-Za-z0-9_-], starting with a letter or digit", o.Stream)
	case o.Replicas < 1 || o.Replicas > 5:
		return o, fmt.Errorf("audit replicas %d: must be 1 to 5", o.Replicas)
	case o.MaxAge < 0:
		return o, fmt.Errorf("audit max age %s: must be positive", o.MaxAge)
	case o.MaxBytes < 0:
		return o, fmt.Errorf("audit max bytes %d: must be positive", o.MaxBytes)
	}
	return o, nil
}

// dedupeWindow is how long the stream remembers a record's id: a record
// appended again within it, as Append does when a try times out, is
// stored once.
const dedupeWindow = 2 * time.Minute

// attemptTimeout bounds one try at a JetStream request.
const attemptTimeout = 5 * time.Second

// ErrNoStream is returned by Bind when the stream does not exist.
var ErrNoStream = errors.New("no audit stream")

// Log is the audit trail.
type Log struct {
	js     jetstream.JetStream
	stream string
	secret func(string) bool
	now    func() time.Time
}

// streamConfig is the stream's configuration for o.
func streamConfig(o Options) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name: o.Stream, Description: "keygate audit trail: every change through the admin API or the CLI",
		Subjects: []string{o.Stream + ".>"}, Retention: jetstream.LimitsPolicy, Discard: jetstream.DiscardOld,
		MaxAge: o.MaxAge, MaxBytes: o.MaxBytes, Replicas: o.Replicas, Storage: jetstream.FileStorage,
		Duplicates: dedupeWindow, DenyDelete: true, DenyPurge: true,
	}
}

// Open creates the stream, or brings an existing one to o's settings.
func Open(ctx context.Context, js jetstream.JetStream, o Options) (*Log, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := store.EnsureStream(ctx, js, streamConfig(o)); err != nil {
		return nil, fmt.Errorf("open stream %s: %w", o.Stream, err)
	}
	return newLog(js, o), nil
}

// Bind uses the stream as it is, without creating or changing it: for
// readers, which need no right to configure streams.
func Bind(ctx context.Context, js jetstream.JetStream, o Options) (*Log, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	if _, err := js.Stream(ctx, o.Stream); errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("%w %s", ErrNoStream, o.Stream)
	} else if err != nil {
		return nil, fmt.Errorf("open stream %s: %w", o.Stream, err)
	}
	return newLog(js, o), nil
}

func newLog(js jetstream.JetStream, o Options) *Log {
	return &Log{js: js, stream: o.Stream, secret: secretValue(o.KeyFormat), now: o.Now}
}

// Stream is the stream's name.
func (l *Log) Stream() string { return l.stream }

// Subject is where the records of a target are: "<stream>.<kind>.<id>".
func (l *Log) Subject(t Target) string { return l.stream + "." + t.Kind + "." + t.ID }

// Append stores r, after dropping from Before and After, at any depth,
// every member whose name says it holds a secret (hash, key, token,
// secret, password and their kin; see secretName) and every string that
// is a plaintext key or a hex SHA-256. It refuses (ErrInvalid) a record
// whose id, action, target or actor is malformed or looks like a
// secret. A record without an id or a time gets them. A try that times
// out is made again with the same id, so that the record is stored once.
func (l *Log) Append(ctx context.Context, r Record) error {
	if r.ID == "" {
		r.ID = NewID()
	}
	if r.At.IsZero() {
		r.At = l.now()
	}
	r.At = r.At.UTC()
	if err := r.validate(l.secret); err != nil {
		return err
	}
	var err error
	if r.Before, err = scrub(r.Before, l.secret); err != nil {
		return err
	}
	if r.After, err = scrub(r.After, l.secret); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return l.publish(ctx, &nats.Msg{Subject: l.Subject(r.Target), Data: data}, r.ID)
}

// publish sends m until the stream acknowledges it, trying again while
// the stream would still know it as a duplicate.
func (l *Log) publish(ctx context.Context, m *nats.Msg, id string) error {
	ctx, cancel := context.WithTimeout(ctx, dedupeWindow)
	defer cancel()
	for {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		_, err := l.js.PublishMsg(actx, m, jetstream.WithMsgID(id), jetstream.WithExpectStream(l.stream))
		acancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("append audit record %s to %s: %w", id, l.stream, err)
		}
	}
}
