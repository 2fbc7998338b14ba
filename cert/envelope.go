package cert

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
)

// Media types signed into every DSSE signature, so a signature over a
// certificate can never be passed off as an endorsement or anything else.
const (
	PayloadType     = "application/vnd.smartclient.cert+json"
	EndorsementType = "application/vnd.smartclient.endorsement"
)

// Bounds applied before any signature is checked; larger input is refused,
// not truncated.
const (
	MaxSize       = 256 << 10 // bytes of an envelope
	MaxSignatures = 8         // signatures in one envelope
	maxKeyID      = 256       // bytes of a keyid
)

// Envelope is a DSSE v1 envelope: a payload, its type and signatures over
// PAE(PayloadType, Payload).
type Envelope struct {
	PayloadType string
	Payload     []byte
	Signatures  []Signature
}

// Signature is one DSSE signature. KeyID is a hint (the Fingerprint of the
// signing key), not authenticated.
type Signature struct {
	KeyID string
	Sig   []byte
}

type envelopeJSON struct {
	PayloadType string          `json:"payloadType"`
	Payload     string          `json:"payload"`
	Signatures  []signatureJSON `json:"signatures"`
}

type signatureJSON struct {
	KeyID string `json:"keyid,omitempty"`
	Sig   string `json:"sig"`
}

// PAE is DSSE's pre-authentication encoding, the bytes actually signed:
// "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body, lengths in decimal.
// It binds the type to the body so neither can be swapped.
func PAE(payloadType string, body []byte) []byte {
	b := make([]byte, 0, len("DSSEv1   ")+2*20+len(payloadType)+len(body))
	b = append(b, "DSSEv1 "...)
	b = strconv.AppendInt(b, int64(len(payloadType)), 10)
	b = append(b, ' ')
	b = append(b, payloadType...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, ' ')
	return append(b, body...)
}

// Marshal encodes e as DSSE JSON (standard base64 with padding), followed
// by a newline.
func (e *Envelope) Marshal() ([]byte, error) {
	j := envelopeJSON{
		PayloadType: e.PayloadType,
		Payload:     base64.StdEncoding.EncodeToString(e.Payload),
		Signatures:  make([]signatureJSON, len(e.Signatures)),
	}
	for i, s := range e.Signatures {
		j.Signatures[i] = signatureJSON{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)}
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(j); err != nil {
		return nil, err
	}
	if buf.Len() > MaxSize {
		return nil, fmt.Errorf("%w: envelope is %d bytes, limit %d", ErrTooLarge, buf.Len(), MaxSize)
	}
	return buf.Bytes(), nil
}

// ParseEnvelope decodes a DSSE envelope of at most MaxSize bytes with one
// to MaxSignatures signatures. It checks syntax only: no signature is
// verified and the payload is not interpreted.
func ParseEnvelope(data []byte) (*Envelope, error) {
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), MaxSize)
	}
	var j envelopeJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return nil, fmt.Errorf("%w: envelope: %v", ErrMalformed, err)
	}
	switch {
	case j.PayloadType == "":
		return nil, fmt.Errorf("%w: envelope has no payloadType", ErrMalformed)
	case len(j.Signatures) == 0:
		return nil, fmt.Errorf("%w: envelope has no signatures", ErrMalformed)
	case len(j.Signatures) > MaxSignatures:
		return nil, fmt.Errorf("%w: envelope has %d signatures, limit %d", ErrTooLarge, len(j.Signatures), MaxSignatures)
	}
	payload, err := decodeBase64(j.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: envelope payload is not base64", ErrMalformed)
	}
	e := &Envelope{PayloadType: j.PayloadType, Payload: payload, Signatures: make([]Signature, len(j.Signatures))}
	for i, s := range j.Signatures {
		if len(s.KeyID) > maxKeyID {
			return nil, fmt.Errorf("%w: signature %d keyid is %d bytes, limit %d", ErrMalformed, i, len(s.KeyID), maxKeyID)
		}
		sig, err := decodeBase64(s.Sig)
		if err != nil || len(sig) == 0 {
			return nil, fmt.Errorf("%w: signature %d is empty or not base64", ErrMalformed, i)
		}
		e.Signatures[i] = Signature{KeyID: s.KeyID, Sig: sig}
	}
	return e, nil
}

// decodeBase64 accepts standard or URL-safe base64, padded or not, as DSSE
// allows. The encoding is not signed, so this adds no malleability that
// matters: the signature covers the decoded bytes.
func decodeBase64(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.Strict().DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, base64.CorruptInputError(0)
}
