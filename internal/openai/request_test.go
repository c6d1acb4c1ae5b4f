package openai

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	for _, c := range []struct {
		body string
		want Request
	}{
		{`{}`, Request{N: 1}},
		{" \t\r\n{} \t\r\n", Request{N: 1}},
		{`{"model":"gpt-4o"}`, Request{Model: "gpt-4o", N: 1}},
		{`{"model":"gpt\u002d4o\/x"}`, Request{Model: "gpt-4o/x", N: 1}},
		{`{"model":"mod\u00e8le-\ud83d\ude00"}`, Request{Model: "modèle-😀", N: 1}},
		{`{"model":""}`, Request{N: 1}},
		{`{"model":null,"max_tokens":null,"n":null,"stream":null,"stream_options":null,"messages":null}`, Request{N: 1}},
		{`{"max_completion_tokens":10,"max_tokens":20,"max_output_tokens":30}`, Request{MaxOutput: 30, N: 1}},
		{`{"max_completion_tokens":0,"max_tokens":100000}`, Request{MaxOutput: 100000, N: 1}},
		{`{"max_completion_tokens":500,"max_tokens":20}`, Request{MaxOutput: 500, N: 1}},
		{`{"max_output_tokens":30,"max_tokens":20}`, Request{MaxOutput: 30, N: 1}},
		{`{"max_output_tokens":30}`, Request{MaxOutput: 30, N: 1}},
		{`{"max_completion_tokens":null,"max_tokens":0}`, Request{MaxOutput: 0, N: 1}},
		{`{"max_tokens":1000000000000}`, Request{MaxOutput: 1e12, N: 1}},
		{`{"n":0}`, Request{N: 0}},
		{`{"n":3}`, Request{N: 3}},
		{`{"stream":true}`, Request{Stream: true, N: 1}},
		{`{"stream":false}`, Request{N: 1}},
		{`{"stream":true,"stream_options":{"include_usage":true}}`, Request{Stream: true, IncludeUsage: true, N: 1}},
		{`{"stream_options":{"include_usage":false}}`, Request{N: 1}},
		{`{"stream_options":{"include_usage":null,"x":[1,{"include_usage":1}]}}`, Request{N: 1}},
		{`{"stream_options":{}}`, Request{N: 1}},
		{`{"messages":[{"role":"user","content":"hi"}]}`, Request{N: 1, PromptBytes: 32}},
		{`{"messages": [ ] ,"prompt":"abc","input":[1,2],"instructions":"x","system":{}}`, Request{N: 1, PromptBytes: 3 + 5 + 5 + 3 + 2}},
		// a model nested anywhere but the top level is not the model
		{`{"messages":[{"role":"user","content":"hi","model":"other","max_tokens":-1,"Model":1}],"model":"m"}`,
			Request{Model: "m", N: 1, PromptBytes: 74}},
		{`{"metadata":{"model":"x","model":"y","MODEL":[]},"tools":[{"n":1.5}]}`, Request{N: 1}},
		// names that only look like metered ones
		{`{"model_name":"x","nn":1,"streams":true,"max_tokens_x":1.5,"":1,"m\u00f6del":1}`, Request{N: 1}},
		// deepest nesting allowed: the top-level object and 63 arrays
		{`{"x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`, Request{N: 1}},
		// numbers, literals and escapes that are skipped are valid
		{`{"a":[0,-0,1.5,-1e10,2E+3,3e-2,true,false,null,"\"\\\/\b\f\n\r\t\u0000\uffff"]}`, Request{N: 1}},
	} {
		got, err := ParseRequest([]byte(c.body))
		if err != nil || got != c.want {
			t.Errorf("ParseRequest(%s) = %+v, %v; want %+v", c.body, got, err, c.want)
		}
	}
}

func TestParseRequestRefuses(t *testing.T) {
	for _, c := range []struct {
		body, code, param string
	}{
		// not JSON, or not an object
		{``, CodeInvalidJSON, ""},
		{` `, CodeInvalidJSON, ""},
		{`[]`, CodeInvalidJSON, ""},
		{`"model"`, CodeInvalidJSON, ""},
		{`null`, CodeInvalidJSON, ""},
		{`{`, CodeInvalidJSON, ""},
		{`{"model":"a"`, CodeInvalidJSON, ""},
		{`{"model":"a",}`, CodeInvalidJSON, ""},
		{`{,}`, CodeInvalidJSON, ""},
		{`{"a" 1}`, CodeInvalidJSON, ""},
		{`{'a':1}`, CodeInvalidJSON, ""},
		{`{a:1}`, CodeInvalidJSON, ""},
		{`{"a":1}x`, CodeInvalidJSON, ""},
		{`{"a":1}{}`, CodeInvalidJSON, ""},
		{`{"a":1} ,`, CodeInvalidJSON, ""},
		{"\xef\xbb\xbf{}", CodeInvalidJSON, ""},
		{"{}\x00", CodeInvalidJSON, ""},
		{"{\"a\":1\x0b}", CodeInvalidJSON, ""},
		{`{"a":[1,]}`, CodeInvalidJSON, ""},
		{`{"a":[1 2]}`, CodeInvalidJSON, ""},
		{`{"a":tru}`, CodeInvalidJSON, ""},
		{`{"a":True}`, CodeInvalidJSON, ""},
		{`{"a":nul}`, CodeInvalidJSON, ""},
		{`{"a":undefined}`, CodeInvalidJSON, ""},
		{`{"a":NaN}`, CodeInvalidJSON, ""},
		{`{"a":Infinity}`, CodeInvalidJSON, ""},
		// numbers
		{`{"a":01}`, CodeInvalidJSON, ""},
		{`{"a":-}`, CodeInvalidJSON, ""},
		{`{"a":+1}`, CodeInvalidJSON, ""},
		{`{"a":1.}`, CodeInvalidJSON, ""},
		{`{"a":.5}`, CodeInvalidJSON, ""},
		{`{"a":1e}`, CodeInvalidJSON, ""},
		{`{"a":1e+}`, CodeInvalidJSON, ""},
		{`{"a":0x10}`, CodeInvalidJSON, ""},
		{`{"max_tokens":01}`, CodeInvalidJSON, ""},
		// strings
		{`{"a":"x}`, CodeInvalidJSON, ""},
		{"{\"a\":\"x\ny\"}", CodeInvalidJSON, ""},
		{"{\"a\":\"x\ty\"}", CodeInvalidJSON, ""},
		{`{"a":"\x"}`, CodeInvalidJSON, ""},
		{`{"a":"\'"}`, CodeInvalidJSON, ""},
		{`{"a":"\u12"}`, CodeInvalidJSON, ""},
		{`{"a":"\u12G4"}`, CodeInvalidJSON, ""},
		{`{"a":"\ud800"}`, CodeInvalidJSON, ""},
		{`{"a":"\udc00"}`, CodeInvalidJSON, ""},
		{`{"a":"\ud800\ud800"}`, CodeInvalidJSON, ""},
		{`{"a":"\ud800x\udc00"}`, CodeInvalidJSON, ""},
		{`{"a":"\udc00\ud800"}`, CodeInvalidJSON, ""},
		{`{"a":"\ud800\n"}`, CodeInvalidJSON, ""},
		{`{"model":"\ud800"}`, CodeInvalidJSON, ""},
		{`{"\udfff":1}`, CodeInvalidJSON, ""},
		{"{\"a\":\"\xff\"}", CodeInvalidJSON, ""},
		{"{\"a\":\"\xc3\"}", CodeInvalidJSON, ""},
		{"{\"a\":\"\xc0\xaf\"}", CodeInvalidJSON, ""},                        // overlong
		{"{\"a\":\"\xed\xa0\x80\"}", CodeInvalidJSON, ""},                    // a surrogate in UTF-8
		{"{\"a\":\"\xf4\x90\x80\x80\"}", CodeInvalidJSON, ""},                // above U+10FFFF
		{"{\"model\":\"gpt\x80\"}", CodeInvalidJSON, ""},                     // in a metered value
		{"{\"mod\xe9l\":1}", CodeInvalidJSON, ""},                            // in a name
		{"{\"messages\":[{\"content\":\"\xe2\x82\"}]}", CodeInvalidJSON, ""}, // truncated
		// depth: the top-level object and 64 arrays is 65 deep
		{`{"x":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`, CodeInvalidJSON, ""},
		{`{"x":` + strings.Repeat(`{"a":`, 64) + `1` + strings.Repeat("}", 64) + `}`, CodeInvalidJSON, ""},
		{`{"messages":` + strings.Repeat("[", 100000), CodeInvalidJSON, ""},
		// duplicates, compared after unescaping
		{`{"model":"a","model":"a"}`, CodeDuplicateMember, "model"},
		{`{"model":"a","\u006dodel":"b"}`, CodeDuplicateMember, "model"},
		{`{"\u006dodel":"a","model":"b"}`, CodeDuplicateMember, "model"},
		{`{"messages":[],"messages":[]}`, CodeDuplicateMember, "messages"},
		{`{"tools":[],"tools":[]}`, CodeDuplicateMember, "tools"},
		{`{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13,"o":14,"p":15,"q":16,"r":17,"s":18,"a":19}`,
			CodeDuplicateMember, "a"},
		{`{"x\ny":1,"x\u000ay":2}`, CodeDuplicateMember, "x?y"},
		{`{"stream_options":{"include_usage":true,"include_usage":false}}`, CodeDuplicateMember, "stream_options.include_usage"},
		{`{"stream_options":{"x":1,"x":2}}`, CodeDuplicateMember, "stream_options.x"},
		// wrong types and ranges
		{`{"model":1}`, CodeInvalidMember, "model"},
		{`{"model":["a"]}`, CodeInvalidMember, "model"},
		{`{"model":{"id":"a"}}`, CodeInvalidMember, "model"},
		{`{"model":true}`, CodeInvalidMember, "model"},
		{`{"max_tokens":"10"}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":-1}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":-0}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":1.0}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":1.5}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":1e3}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":1E0}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":1000000000001}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":99999999999999999999999999999}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":true}`, CodeInvalidMember, "max_tokens"},
		{`{"max_tokens":[1]}`, CodeInvalidMember, "max_tokens"},
		{`{"max_completion_tokens":-5}`, CodeInvalidMember, "max_completion_tokens"},
		{`{"max_output_tokens":2.5}`, CodeInvalidMember, "max_output_tokens"},
		{`{"n":-1}`, CodeInvalidMember, "n"},
		{`{"n":"2"}`, CodeInvalidMember, "n"},
		{`{"n":2.0}`, CodeInvalidMember, "n"},
		{`{"stream":"true"}`, CodeInvalidMember, "stream"},
		{`{"stream":1}`, CodeInvalidMember, "stream"},
		{`{"stream":0}`, CodeInvalidMember, "stream"},
		{`{"stream_options":true}`, CodeInvalidMember, "stream_options"},
		{`{"stream_options":[]}`, CodeInvalidMember, "stream_options"},
		{`{"stream_options":{"include_usage":"true"}}`, CodeInvalidMember, "stream_options.include_usage"},
		{`{"stream_options":{"include_usage":1}}`, CodeInvalidMember, "stream_options.include_usage"},
		// names a case-insensitive reader takes for a metered one
		{`{"Model":"a"}`, CodeAmbiguousMember, "Model"},
		{`{"MODEL":"a","model":"b"}`, CodeAmbiguousMember, "MODEL"},
		{`{"model":"b","mOdEl":"a"}`, CodeAmbiguousMember, "mOdEl"},
		{`{"MAX_TOKENS":5}`, CodeAmbiguousMember, "MAX_TOKENS"},
		{`{"Max_Completion_Tokens":5}`, CodeAmbiguousMember, "Max_Completion_Tokens"},
		{`{"max_output_Tokens":5}`, CodeAmbiguousMember, "max_output_Tokens"},
		{`{"N":5}`, CodeAmbiguousMember, "N"},
		{`{"Stream":true}`, CodeAmbiguousMember, "Stream"},
		{`{"Stream_Options":{}}`, CodeAmbiguousMember, "Stream_Options"},
		{`{"Messages":[]}`, CodeAmbiguousMember, "Messages"},
		{`{"PROMPT":"x"}`, CodeAmbiguousMember, "PROMPT"},
		{`{"Input":"x"}`, CodeAmbiguousMember, "Input"},
		{`{"Instructions":"x"}`, CodeAmbiguousMember, "Instructions"},
		{`{"System":"x"}`, CodeAmbiguousMember, "System"},
		{`{"\u004dodel":"a"}`, CodeAmbiguousMember, `\u004dodel`},
		{`{"ſtream":true}`, CodeAmbiguousMember, "?tream"},                // U+017F long s
		{`{"max_to\u212aens":1}`, CodeAmbiguousMember, `max_to\u212aens`}, // Kelvin sign
		{"{\"max_to\u212aens\":1}", CodeAmbiguousMember, "max_to?ens"},    // raw Kelvin sign
		{`{"inſtructionſ":"x"}`, CodeAmbiguousMember, "in?truction?"},
		{`{"ſyſtem":"x"}`, CodeAmbiguousMember, "?y?tem"},
		{`{"stream_options":{"Include_Usage":true}}`, CodeAmbiguousMember, "stream_options.Include_Usage"},
		{`{"stream_options":{"include_uſage":true}}`, CodeAmbiguousMember, "stream_options.include_u?age"},
	} {
		got, err := ParseRequest([]byte(c.body))
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("ParseRequest(%.80q) = %+v, %v; want %s", c.body, got, err, c.code)
			continue
		}
		if e.Code != c.code || e.Param != c.param || e.Message == "" || got != (Request{}) {
			t.Errorf("ParseRequest(%.80q) = %+v, %+v; want %s %q", c.body, got, e, c.code, c.param)
		}
	}
}

func TestErrorEcho(t *testing.T) {
	long := `{"` + strings.Repeat("MODEL", 40) + `":1,"` + strings.Repeat("\u00e9", 100) + `Model":1}`
	_, err := ParseRequest([]byte(long))
	if err != nil {
		t.Fatalf("a long name that folds to no metered name: %v", err)
	}
	for _, c := range []struct{ body, param string }{
		{"{\"mOdel\":1,\"" + strings.Repeat("x", 100) + "\":1}", "mOdel"},
		{"{\"" + strings.Repeat("\u00e9", 70) + "\":1,\"" + strings.Repeat("\u00e9", 70) + "\":2}", strings.Repeat("?", 64)},
		{"{\"" + strings.Repeat("a\\u0001\\\"", 30) + "\":1,\"" + strings.Repeat("a\\u0001\\\"", 30) + "\":2}",
			strings.Repeat(`a?"`, 21) + "a"},
	} {
		_, err := ParseRequest([]byte(c.body))
		var e *Error
		if !errors.As(err, &e) || e.Param != c.param || len(e.Param) > 64 || !strings.Contains(e.Message, e.Param) {
			t.Errorf("ParseRequest(%.60q): %+v; want param %q", c.body, e, c.param)
		}
	}
}

func TestMessages(t *testing.T) {
	for body, want := range map[string]string{
		`{"model":"a","model":"b"}`: `The request body has two "model" members; send one.`,
		`{"Model":"a"}`:             `The request body has a member "Model", which some servers read as "model"; spell it "model" exactly.`,
		`{"n":1.5}`:                 `"n" must be a non-negative integer of at most 1000000000000, written without a sign, fraction or exponent.`,
		`{"stream":1}`:              `"stream" must be a boolean.`,
		`{"a":1}x`:                  `The request body is not valid JSON: data after the top-level object at byte 7.`,
	} {
		if _, err := ParseRequest([]byte(body)); err == nil || err.Error() != want {
			t.Errorf("ParseRequest(%s): %v; want %s", body, err, want)
		}
	}
}

func TestParseRequestSamples(t *testing.T) {
	for file, want := range map[string]Request{
		"chat_request.json":        {Model: "gpt-4o-2024-08-06", MaxOutput: 1024, N: 1, Stream: true, IncludeUsage: true, PromptBytes: 3002},
		"completions_request.json": {Model: "gpt-3.5-turbo-instruct", MaxOutput: 7, N: 2, PromptBytes: 49},
		"embeddings_request.json":  {Model: "text-embedding-3-small", N: 1, PromptBytes: 42},
		"responses_request.json":   {Model: "gpt-4.1", MaxOutput: 500, N: 1, Stream: true, PromptBytes: 30 + 130},
	} {
		body, err := os.ReadFile("testdata/" + file)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := ParseRequest(body); err != nil || got != want {
			t.Errorf("%s: %+v, %v; want %+v", file, got, err, want)
		}
	}
}

// TestParseRequestCopiesModel: the caller may reuse the body's buffer.
func TestParseRequestCopiesModel(t *testing.T) {
	body := []byte(`{"model":"gpt-4o"}`)
	r, err := ParseRequest(body)
	if err != nil {
		t.Fatal(err)
	}
	copy(body, strings.Repeat("x", len(body)))
	if r.Model != "gpt-4o" {
		t.Fatalf("Model = %q after the body changed", r.Model)
	}
}

// TestLargeObject: many top-level members cost one pass, duplicates found
// among them.
func TestLargeObject(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"model":"m"`)
	for i := range 50000 {
		b.WriteString(`,"k`)
		b.WriteString(strconv.Itoa(i))
		b.WriteString(`":0`)
	}
	body := b.String()
	if r, err := ParseRequest([]byte(body + "}")); err != nil || r.Model != "m" {
		t.Fatalf("%+v, %v", r, err)
	}
	_, err := ParseRequest([]byte(body + `,"k49999":1}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeDuplicateMember || e.Param != "k49999" {
		t.Fatalf("duplicate among many: %v", err)
	}
}
