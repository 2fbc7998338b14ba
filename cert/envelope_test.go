package cert

import (
	"bytes"
	"encoding/base64"
	"strings"
	"testing"
)

func TestPAE(t *testing.T) {
	tests := []struct {
		typ  string
		body string
		want string
	}{
		// The worked example in the DSSE protocol specification.
		{"http://example.com/HelloWorld", "hello world", "DSSEv1 29 http://example.com/HelloWorld 11 hello world"},
		{"", "", "DSSEv1 0  0 "},
		// Lengths count bytes, not characters.
		{"t", "é", "DSSEv1 1 t 2 é"},
		{PayloadType, "{}", "DSSEv1 37 application/vnd.smartclient.cert+json 2 {}"},
	}
	for _, tt := range tests {
		if got := string(PAE(tt.typ, []byte(tt.body))); got != tt.want {
			t.Errorf("PAE(%q, %q) = %q, want %q", tt.typ, tt.body, got, tt.want)
		}
	}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	env := &Envelope{PayloadType: "x/y", Payload: []byte("hello <&>"), Signatures: []Signature{{KeyID: "k", Sig: []byte{1, 2, 3}}, {Sig: []byte{4}}}}
	data, err := env.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasSuffix(data, []byte("}\n")) || bytes.Contains(data, []byte(`\u003c`)) {
		t.Errorf("Marshal = %s, want plain JSON and a final newline", data)
	}
	got, err := ParseEnvelope(data)
	if err != nil {
		t.Fatal(err)
	}
	if got.PayloadType != env.PayloadType || !bytes.Equal(got.Payload, env.Payload) || len(got.Signatures) != 2 ||
		got.Signatures[0].KeyID != "k" || !bytes.Equal(got.Signatures[1].Sig, []byte{4}) {
		t.Errorf("round trip = %+v, want %+v", got, env)
	}
}

// DSSE lets writers use standard or URL-safe base64, padded or not.
func TestEnvelopeBase64Forms(t *testing.T) {
	payload := []byte{0xfb, 0xff, 0xfe, 'a'} // encodes with + and / (or - and _)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		data := `{"payloadType":"t","payload":"` + enc.EncodeToString(payload) + `","signatures":[{"sig":"` + enc.EncodeToString([]byte{9, 9}) + `"}]}`
		env, err := ParseEnvelope([]byte(data))
		if err != nil {
			t.Fatalf("%s: %v", data, err)
		}
		if !bytes.Equal(env.Payload, payload) {
			t.Errorf("%s: payload %x", data, env.Payload)
		}
	}
}

func TestParseEnvelopeRefusals(t *testing.T) {
	sig := `[{"keyid":"k","sig":"AQID"}]`
	manySigs := "[" + strings.Repeat(`{"sig":"AQID"},`, MaxSignatures) + `{"sig":"AQID"}]`
	tests := []struct {
		name string
		data string
		want error
	}{
		{"empty", ``, ErrMalformed},
		{"not JSON", `hello`, ErrMalformed},
		{"array", `[]`, ErrMalformed},
		{"trailing garbage", `{"payloadType":"t","payload":"","signatures":` + sig + `}x`, ErrMalformed},
		{"no payloadType", `{"payload":"","signatures":` + sig + `}`, ErrMalformed},
		{"no signatures", `{"payloadType":"t","payload":"","signatures":[]}`, ErrMalformed},
		{"too many signatures", `{"payloadType":"t","payload":"","signatures":` + manySigs + `}`, ErrTooLarge},
		{"payload not base64", `{"payloadType":"t","payload":"!!","signatures":` + sig + `}`, ErrMalformed},
		{"sig not base64", `{"payloadType":"t","payload":"","signatures":[{"sig":"*"}]}`, ErrMalformed},
		{"empty sig", `{"payloadType":"t","payload":"","signatures":[{"sig":""}]}`, ErrMalformed},
		{"keyid too long", `{"payloadType":"t","payload":"","signatures":[{"keyid":"` + strings.Repeat("k", maxKeyID+1) + `","sig":"AQID"}]}`, ErrMalformed},
		{"payload a number", `{"payloadType":"t","payload":1,"signatures":` + sig + `}`, ErrMalformed},
		{"oversized", `{"payloadType":"t","payload":"` + strings.Repeat("A", MaxSize) + `","signatures":` + sig + `}`, ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEnvelope([]byte(tt.data))
			wantOnly(t, err, tt.want)
		})
	}
}
