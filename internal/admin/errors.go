package admin

import (
	"errors"
	"fmt"
)

// Kind is what an Error says of the request.
type Kind uint8

// Kinds of Error.
const (
	// Invalid: a value given is refused; Field names it.
	Invalid Kind = iota + 1
	// NotFound: the key, account or token named does not exist.
	NotFound
	// Conflict: the record's state refuses the change (a revoked key, a
	// key already rotated, a currency that cannot change).
	Conflict
)

// Codes of Error, stable for programs.
const (
	CodeInvalidValue      = "invalid_value"
	CodeKeyNotFound       = "key_not_found"
	CodeAccountNotFound   = "account_not_found"
	CodeTokenNotFound     = "token_not_found"
	CodeKeyRevoked        = "key_revoked"
	CodeKeyNotActive      = "key_not_active"
	CodeKeyAlreadyRotated = "key_already_rotated"
	CodeKeyChanged        = "key_changed"
	CodeKeyUnknownMembers = "key_unknown_members"
	CodeCurrencyLocked    = "currency_change_refused"
	CodeBalanceOutOfRange = "balance_out_of_range"
)

// Error is an operation's refusal: what the caller asked for cannot be
// done as asked. Other errors are failures of the store.
type Error struct {
	Kind Kind
	Code string
	// Field is the input field refused, as the admin API's JSON names it
	// ("rate_limit"); "" for none.
	Field string
	// Msg is for people. With Invalid it leaves out the field's name,
	// which each caller writes its own way (a flag, a JSON member).
	Msg string
	// Target is the id of the key, account or token concerned, if any.
	Target string
}

func (e *Error) Error() string {
	if e.Kind == Invalid && e.Field != "" {
		return e.Field + ": " + e.Msg
	}
	return e.Msg
}

// invalid refuses the value of field.
func invalid(field, format string, args ...any) *Error {
	return &Error{Kind: Invalid, Code: CodeInvalidValue, Field: field, Msg: fmt.Sprintf(format, args...)}
}

func conflict(code, target, format string, args ...any) *Error {
	return &Error{Kind: Conflict, Code: code, Target: target, Msg: fmt.Sprintf(format, args...)}
}

func notFound(code, what, target, shown string) *Error {
	return &Error{Kind: NotFound, Code: code, Target: target, Msg: what + " " + shown + " not found"}
}

// AsError returns err's *Error, if it is one.
func AsError(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// ErrAudit wraps a Recorder's failure. The change it reports stands: an
// operation that returns it also returns its result.
var ErrAudit = errors.New("the change was made, but its audit record was not written")
