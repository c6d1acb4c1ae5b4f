package adminapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/admin"
)

// POST /v1/keys
func (a *api) createKey(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var in admin.CreateKeyInput
		if in, e = parseCreateKey(body); e == nil {
			a.once(w, r, c.tok.ID, body, func() (*result, error) {
				n, err := a.admin.CreateKey(r.Context(), c.by, in)
				if err = a.changed(err); err != nil {
					return nil, err
				}
				return newKeyResult(n, http.StatusCreated, "/v1/keys/"+n.ID)
			})
			return
		}
	}
	writeError(w, e)
}

// newKeyResult answers a key just minted with the key itself, and a
// repeat with "key": null: keygate keeps no key.
func newKeyResult(n admin.NewKey, status int, location string) (*result, error) {
	shown, err := n.Public(true)
	if err != nil {
		return nil, err
	}
	replay, err := n.Public(false)
	if err != nil {
		return nil, err
	}
	return &result{status: status, body: shown, replay: replay, location: location}, nil
}

// GET /v1/keys
func (a *api) listKeys(w http.ResponseWriter, r *http.Request, _ *call) {
	f, cursor, limit, e := listQuery(r)
	if e != nil {
		writeError(w, e)
		return
	}
	page, err := a.admin.ListKeys(r.Context(), f, cursor, limit)
	if err != nil {
		writeError(w, fromError(err))
		return
	}
	out := struct {
		Data       []json.RawMessage `json:"data"`
		NextCursor *string           `json:"next_cursor"`
	}{Data: make([]json.RawMessage, 0, len(page.Keys))}
	for _, v := range page.Keys {
		b, err := v.Public()
		if err != nil {
			writeError(w, fromError(err))
			return
		}
		out.Data = append(out.Data, b)
	}
	if page.Next != "" {
		out.NextCursor = &page.Next
	}
	writeJSON(w, http.StatusOK, out)
}

// listQuery reads GET /v1/keys's parameters.
func listQuery(r *http.Request) (f admin.Filter, cursor string, limit int, e *apiError) {
	q, e := newQuery(r)
	if e != nil {
		return f, "", 0, e
	}
	limit = admin.DefaultPageSize
	var status, unused, limitText string
	for _, p := range []struct {
		name string
		v    *string
	}{{"account", &f.Account}, {"status", &status}, {"unused", &unused}, {"cursor", &cursor}, {"limit", &limitText}} {
		if *p.v, e = q.get(p.name); e != nil {
			return f, "", 0, e
		}
	}
	if e = q.done(); e != nil {
		return f, "", 0, e
	}
	if status != "" {
		f.Statuses = strings.Split(status, ",")
	}
	var err error
	if f.Unused, err = admin.ParseAge(unused); err != nil {
		return f, "", 0, badRequest("invalid_value", "unused", "unused: %v", err)
	}
	if limitText != "" {
		if limit, err = strconv.Atoi(limitText); err != nil {
			return f, "", 0, badRequest("invalid_value", "limit", "limit: %q is not a whole number from 1 to %d", limitText, admin.MaxPageSize)
		}
	}
	return f, cursor, limit, nil
}

// GET /v1/keys/{id}
func (a *api) getKey(w http.ResponseWriter, r *http.Request, c *call) {
	if e := noQuery(r); e != nil {
		writeError(w, e)
		return
	}
	v, err := a.admin.GetKey(r.Context(), c.id)
	a.writeKey(w, http.StatusOK, v, err)
}

// writeKey answers with a key's view, or err.
func (a *api) writeKey(w http.ResponseWriter, status int, v admin.KeyView, err error) {
	if err = a.changed(err); err != nil {
		writeError(w, fromError(err))
		return
	}
	b, err := v.Public()
	if err != nil {
		writeError(w, fromError(err))
		return
	}
	writeRaw(w, status, b)
}

// PATCH /v1/keys/{id}
func (a *api) updateKey(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var p admin.KeyPatch
		if p, e = parsePatch(body); e == nil {
			v, err := a.admin.UpdateKey(r.Context(), c.by, c.id, p)
			a.writeKey(w, http.StatusOK, v, err)
			return
		}
	}
	writeError(w, e)
}

// POST /v1/keys/{id}/revoke
func (a *api) revokeKey(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var o object
		if o, e = parseObject(body, true); e == nil {
			if e = o.done(); e == nil {
				v, _, err := a.admin.RevokeKey(r.Context(), c.by, c.id)
				a.writeKey(w, http.StatusOK, v, err)
				return
			}
		}
	}
	writeError(w, e)
}

// POST /v1/keys/{id}/rotate
func (a *api) rotateKey(w http.ResponseWriter, r *http.Request, c *call) {
	body, e := readBody(w, r)
	if e == nil {
		var in admin.RotateInput
		if in, e = parseRotate(body); e == nil {
			a.once(w, r, c.tok.ID, body, func() (*result, error) {
				n, err := a.admin.RotateKey(r.Context(), c.by, c.id, in)
				if err = a.changed(err); err != nil {
					return nil, err
				}
				return newKeyResult(n, http.StatusCreated, "/v1/keys/"+n.ID)
			})
			return
		}
	}
	writeError(w, e)
}

// parseRotate reads a rotation's body: {"grace":"24h","force":false},
// each optional.
func parseRotate(body []byte) (admin.RotateInput, *apiError) {
	in := admin.RotateInput{Grace: 24 * time.Hour}
	o, e := parseObject(body, true)
	if e != nil {
		return in, e
	}
	var grace string
	if set, null, e := o.take("grace", &grace); e != nil {
		return in, e
	} else if set && !null {
		d, err := time.ParseDuration(grace)
		if err != nil || d < 0 {
			return in, badRequest("invalid_value", "grace", "grace: %q is not a Go duration of 0 or more, like 24h", grace)
		}
		in.Grace = d
	}
	if _, _, e := o.take("force", &in.Force); e != nil {
		return in, e
	}
	return in, o.done()
}

// GET /v1/keys/{id}/usage
func (a *api) keyUsage(w http.ResponseWriter, r *http.Request, c *call) {
	days, e := daysQuery(r)
	if e != nil {
		writeError(w, e)
		return
	}
	v, err := a.admin.KeyUsage(r.Context(), c.id, days)
	a.writeView(w, v, err)
}

// writeView answers 200 with v, or err.
func (a *api) writeView(w http.ResponseWriter, v any, err error) {
	if err = a.changed(err); err != nil {
		writeError(w, fromError(err))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// daysQuery reads the days parameter of a usage: 1 to 90, 7 if absent.
func daysQuery(r *http.Request) (int, *apiError) {
	q, e := newQuery(r)
	if e != nil {
		return 0, e
	}
	text, e := q.get("days")
	if e != nil {
		return 0, e
	}
	if e := q.done(); e != nil {
		return 0, e
	}
	if text == "" {
		return 7, nil
	}
	days, err := strconv.Atoi(text)
	if err != nil {
		return 0, badRequest("invalid_value", "days", "days: %q is not a whole number from 1 to 90", text)
	}
	return days, nil
}

// noQuery refuses query parameters where an operation takes none.
func noQuery(r *http.Request) *apiError {
	q, e := newQuery(r)
	if e != nil {
		return e
	}
	return q.done()
}
