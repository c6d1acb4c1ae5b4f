package adminapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/exactjson"
	"github.com/keygate/keygate/internal/store"
)

// maxBody bounds a request's body.
const maxBody = 64 << 10

// readBody reads the request's body, at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, badRequest("body_too_large", "", "the body is over %d bytes", maxBody)
	case err != nil:
		return nil, badRequest("invalid_body", "", "the body could not be read: %v", err)
	}
	return b, nil
}

// object is a JSON object's members, as a request's body gives them.
type object map[string]json.RawMessage

// parseObject reads body as a JSON object; an empty body, when allowed,
// is an empty object.
func parseObject(body []byte, emptyOK bool) (object, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 && emptyOK {
		return object{}, nil
	}
	var o object
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&o); err != nil || o == nil {
		return nil, badRequest("invalid_json", "", "the body is not a JSON object")
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, badRequest("invalid_json", "", "the body holds more than one JSON value")
	}
	if err := exactjson.Check(body); err != nil {
		return nil, badRequest("invalid_json", "", "%v", err)
	}
	return o, nil
}

// take decodes member name into v, if present and not null; it reports
// whether it was present, and whether it was null.
func (o object) take(name string, v any) (present, null bool, e *apiError) {
	raw, ok := o[name]
	if !ok {
		return false, false, nil
	}
	delete(o, name)
	if string(raw) == "null" {
		return true, true, nil
	}
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return true, false, badRequest("invalid_value", name, "%s: %s", name, jsonProblem(err))
	}
	return true, false, nil
}

// jsonProblem says what is wrong with a value, without echoing it.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		if te.Field != "" {
			return "member " + te.Field + " must be " + jsonType(te.Type.Kind().String())
		}
		return "must be " + jsonType(te.Type.Kind().String())
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "has the " + strings.TrimPrefix(err.Error(), "json: ")
	}
	return "is not valid"
}

func jsonType(kind string) string {
	switch kind {
	case "int", "int64":
		return "an integer"
	case "string":
		return "a string"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	case "bool":
		return "true or false"
	}
	return kind
}

// done refuses the members left: none is known.
func (o object) done() *apiError {
	if len(o) == 0 {
		return nil
	}
	names := make([]string, 0, len(o))
	for n := range o {
		names = append(names, n)
	}
	slices.Sort(names)
	return badRequest("unknown_field", exactjson.Shown(names[0]), "%s is not a member of this request", exactjson.Shown(names[0]))
}

// window reads a limit's window: a Go duration ("1m").
func window(param, s string) (store.Duration, *apiError) {
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, badRequest("invalid_value", param, "%s: window must be a positive Go duration like 1m or 1h", param)
	}
	return store.Duration(d), nil
}

// query is a request's query parameters, checked as they are read.
type query struct {
	vals url.Values
	seen map[string]bool
}

// newQuery reads the request's query parameters.
func newQuery(r *http.Request) (*query, *apiError) {
	vals, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("invalid_query", "", "the query string is not valid")
	}
	return &query{vals: vals, seen: map[string]bool{}}, nil
}

// get returns parameter name, "" if absent; given twice, it is refused.
func (q *query) get(name string) (string, *apiError) {
	q.seen[name] = true
	vs := q.vals[name]
	if len(vs) > 1 {
		return "", badRequest("invalid_value", name, "%s: give it once", name)
	}
	if len(vs) == 0 {
		return "", nil
	}
	return vs[0], nil
}

// done refuses the parameters not read.
func (q *query) done() *apiError {
	var names []string
	for n := range q.vals {
		if !q.seen[n] {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return badRequest("unknown_parameter", names[0], "%s is not a parameter of this request", names[0])
}
