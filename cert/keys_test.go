package cert

import (
	"bytes"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFingerprint(t *testing.T) {
	// RFC 8032 section 7.1, test 1 public key.
	pub, _ := hex.DecodeString("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
	sum := sha256.Sum256(pub)
	want := strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(sum[:]), "="))
	got := Fingerprint(pub)
	if got != want || len(got) != FingerprintLen || !validFingerprint(got) {
		t.Errorf("Fingerprint = %q (%d), want %q", got, len(got), want)
	}
	if Fingerprint(pubOf(testKey(1))) == Fingerprint(pubOf(testKey(2))) {
		t.Error("two keys share a fingerprint")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "signing.key")
	priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteKeyPair(path, priv); err != nil {
		t.Fatal(err)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != mode {
			t.Errorf("%s: %v mode %v, want %v", p, err, fi.Mode(), mode)
		}
	}
	got, err := ReadPrivateKey(path)
	if err != nil || !bytes.Equal(got, priv) {
		t.Fatalf("ReadPrivateKey = %v", err)
	}
	pub, err := ReadPublicKey(path + ".pub")
	if err != nil || !bytes.Equal(pub, pubOf(priv)) {
		t.Fatalf("ReadPublicKey = %v", err)
	}
	if data, _ := os.ReadFile(path); !bytes.HasPrefix(data, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("private key file:\n%s", data)
	}
	if data, _ := os.ReadFile(path + ".pub"); !bytes.HasPrefix(data, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Errorf("public key file:\n%s", data)
	}

	// Never overwrites a key, and leaves nothing behind when refusing.
	if err := WriteKeyPair(path, testKey(9)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite: %v", err)
	}
	if got, _ := ReadPrivateKey(path); !bytes.Equal(got, priv) {
		t.Error("key was overwritten")
	}
	os.Remove(path)
	if err := WriteKeyPair(path, testKey(9)); !errors.Is(err, fs.ErrExist) {
		t.Errorf("overwrite of the .pub: %v", err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries after refusing", len(ents))
	}
	if _, err := ReadPrivateKey(path + ".pub"); err == nil {
		t.Error("ReadPrivateKey read a public key")
	}
}

func TestParsePublicKey(t *testing.T) {
	pub := pubOf(testKey(1))
	pemData, err := MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	line := TrustLine("chat", pub, "c")
	ok := []string{
		string(pemData),
		line,
		"# comment\n\n" + line,
		strings.TrimPrefix(line, "chat "),
	}
	for _, s := range ok {
		got, err := ParsePublicKey([]byte(s))
		if err != nil || !bytes.Equal(got, pub) {
			t.Errorf("ParsePublicKey(%q) = %v", s, err)
		}
	}
	privPEM, _ := MarshalPrivateKey(testKey(1))
	bad := []string{"", "# only a comment\n", "chat rsa AAAA", "ed25519 AAAA", string(privPEM), "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"}
	for _, s := range bad {
		if _, err := ParsePublicKey([]byte(s)); err == nil {
			t.Errorf("ParsePublicKey(%q) accepted", s)
		}
	}
}

func TestReadKeyBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, bytes.Repeat([]byte("#"), maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPublicKey(path); err == nil || !strings.Contains(err.Error(), "larger") {
		t.Errorf("ReadPublicKey of a huge file: %v", err)
	}
}
