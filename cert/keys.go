package cert

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/smartclient/smartclient/internal/atomicfile"
)

// Key files are PEM: "PRIVATE KEY" (PKCS #8) and "PUBLIC KEY" (PKIX), the
// forms openssl and most tooling read. A key file larger than maxKeyFile is
// refused rather than read.
const maxKeyFile = 64 << 10

// FingerprintLen is the length of a Fingerprint.
const FingerprintLen = 52

var fpEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Fingerprint names an ed25519 public key: the lower-case, unpadded base32
// of the SHA-256 of its 32 raw bytes (FingerprintLen characters). It is the
// DSSE keyid of a signature, the "by" of an endorsement, and the part after
// '~' in a self-certifying name.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return fpEncoding.EncodeToString(sum[:])
}

// validFingerprint reports whether s has the shape of a Fingerprint.
func validFingerprint(s string) bool {
	if len(s) != FingerprintLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}

// GenerateKey returns a new ed25519 signing key from crypto/rand.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// MarshalPrivateKey returns priv as a PEM "PRIVATE KEY" block (PKCS #8).
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	if len(priv) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("cert: private key is %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey returns pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("cert: public key is %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// WriteKeyPair writes priv to path (mode 0600) and its public key to
// path+".pub" (mode 0644). Each file appears whole or not at all, and
// neither replaces an existing file: overwriting a signing key by mistake
// would lock every client out, so the error wraps fs.ErrExist instead.
func WriteKeyPair(path string, priv ed25519.PrivateKey) error {
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		return err
	}
	pubPEM, err := MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	if err != nil {
		return err
	}
	for _, p := range []string{path, path + ".pub"} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("cert: %s: %w", p, os.ErrExist)
		}
	}
	if err := atomicfile.WriteNew(path+".pub", pubPEM, 0o644); err != nil {
		return err
	}
	if err := atomicfile.WriteNew(path, privPEM, 0o600); err != nil {
		os.Remove(path + ".pub")
		return err
	}
	return nil
}

// ReadPrivateKey reads a PEM "PRIVATE KEY" (PKCS #8) ed25519 key.
func ReadPrivateKey(path string) (ed25519.PrivateKey, error) {
	data, err := readBounded(path, maxKeyFile)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("cert: %s: no PEM \"PRIVATE KEY\" block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("cert: %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("cert: %s: private key is %T, want ed25519", path, k)
	}
	return priv, nil
}

// ReadPublicKey reads an ed25519 public key file in either form
// ParsePublicKey accepts.
func ReadPublicKey(path string) (ed25519.PublicKey, error) {
	data, err := readBounded(path, maxKeyFile)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublicKey(data)
	if err != nil {
		return nil, fmt.Errorf("cert: %s: %w", path, err)
	}
	return pub, nil
}

// ParsePublicKey parses an ed25519 public key from a PEM "PUBLIC KEY" block
// (PKIX), or from the first line of the trusted-keys form
// "[PATTERN] ed25519 BASE64 [comment]" that is not blank or a '#' comment.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
		block, _ := pem.Decode(data)
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, errors.New("no PEM \"PUBLIC KEY\" block")
		}
		return parsePKIX(block.Bytes)
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != keyType && len(f) > 1 {
			f = f[1:] // a pattern
		}
		if len(f) < 2 || f[0] != keyType {
			return nil, fmt.Errorf("want \"[PATTERN] %s BASE64\", got %q", keyType, clip(strings.TrimSpace(line)))
		}
		return parseRawKey(f[1])
	}
	return nil, errors.New("no public key found")
}

// keyType is the key type word of the trusted-keys form.
const keyType = "ed25519"

func parsePKIX(der []byte) (ed25519.PublicKey, error) {
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, err
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("public key is %T, want ed25519", k)
	}
	return pub, nil
}

// parseRawKey decodes the standard base64 of a raw 32-byte ed25519 key.
func parseRawKey(s string) (ed25519.PublicKey, error) {
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("key %q is not the base64 of %d bytes", clip(s), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// readBounded reads at most limit bytes of path and refuses a longer file.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("cert: %s is larger than %d bytes", path, limit)
	}
	return data, nil
}
