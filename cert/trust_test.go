package cert

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseTrust(t *testing.T) {
	a, b := pubOf(testKey(1)), pubOf(testKey(2))
	file := "# trusted keys\n\n" +
		TrustLine("chat", a, "ops team key") +
		"  mail\ted25519 " + base64.StdEncoding.EncodeToString(b) + "\n" +
		TrustLine("*.example", b, "") +
		"   # indented comment\n" +
		TrustLine("*", b, "")
	tr, err := ParseTrust([]byte(file))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		service string
		want    int
	}{{"chat", 2}, {"mail", 1}, {"x.example", 1}, {"other", 1}}
	for _, tt := range tests {
		if got := tr.KeysFor(tt.service); len(got) != tt.want {
			t.Errorf("KeysFor(%q) = %d keys, want %d", tt.service, len(got), tt.want)
		}
	}
	if strings.Count(TrustLine("chat", a, "two\nlines"), "\n") != 1 {
		t.Error("TrustLine let a newline through from the comment")
	}
}

func TestParseTrustRefusals(t *testing.T) {
	key := base64.StdEncoding.EncodeToString(pubOf(testKey(1)))
	tests := []struct {
		name, file, want string
	}{
		{"two fields", "chat ed25519\n", "line 1"},
		{"wrong type", "# c\nchat rsa " + key + "\n", "line 2"},
		{"short key", "chat ed25519 AAAA\n", "line 1"},
		{"bad base64", "chat ed25519 !!!!\n", "line 1"},
		{"bad pattern", "ch[at ed25519 " + key + "\n", "pattern"},
		{"pattern with slash", "a/b ed25519 " + key + "\n", "pattern"},
		{"PEM of a private key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "PRIVATE KEY"},
		{"broken PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n", "PEM"},
	}
	for _, tt := range tests {
		_, err := ParseTrust([]byte(tt.file))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming %q", tt.name, err, tt.want)
		}
	}
}

// A KEY.pub written by WriteKeyPair works as a trust file for every service.
func TestLoadTrustFilePEM(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "key")
	key := testKey(1)
	if err := WriteKeyPair(path, key); err != nil {
		t.Fatal(err)
	}
	tr, err := LoadTrustFile(path + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(mustSign(t, testCert(), key), chat, tr, t0); err != nil {
		t.Error(err)
	}
	if _, err := LoadTrustFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v", err)
	}
}

func TestAddKey(t *testing.T) {
	tr := &Trust{}
	if err := tr.AddKey("", pubOf(testKey(1))); err == nil {
		t.Error("empty pattern accepted")
	}
	if err := tr.AddKey("chat", pubOf(testKey(1))[:31]); err == nil {
		t.Error("short key accepted")
	}
	for range 2 {
		if err := tr.AddKey("chat", pubOf(testKey(1))); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(tr.Keys["chat"]); n != 1 {
		t.Errorf("adding a key twice kept %d copies", n)
	}
	var nilTrust *Trust
	if nilTrust.KeysFor("chat") != nil {
		t.Error("nil Trust has keys")
	}
}

func TestTOFU(t *testing.T) {
	first, second := testKey(1), testKey(2)
	path := filepath.Join(t.TempDir(), "sub", "known_keys")

	// Off: a stranger's key is refused even when nothing else is known.
	_, err := Verify(mustSign(t, testCert(), first), chat, &Trust{}, t0)
	wantOnly(t, err, ErrUntrustedKey)

	tr, err := OpenTOFU(path)
	if err != nil {
		t.Fatal(err)
	}
	// An expired certificate does not get its key recorded.
	exp := testCert()
	exp.IssuedAt, exp.ExpiresAt = t0.Add(-48*time.Hour), t0.Add(-time.Hour)
	_, err = Verify(mustSign(t, exp, first), chat, tr, t0)
	wantOnly(t, err, ErrExpired)
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("key recorded from an expired certificate: %v", err)
	}

	if _, err := Verify(mustSign(t, testCert(), first), chat, tr, t0); err != nil {
		t.Fatalf("first use: %v", err)
	}
	// Recorded in the file, mode 0600, beside its lock file, no temporary
	// files left behind.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), TrustLine("chat", pubOf(first), "")[:len("chat ed25519 ")+44]) {
		t.Errorf("trust file lacks the key:\n%s", data)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Errorf("trust file mode %v", fi.Mode())
	}
	ents, _ := os.ReadDir(filepath.Dir(path))
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"known_keys", "known_keys.lock"}; !slices.Equal(names, want) {
		t.Errorf("directory holds %q, want %q", names, want)
	}

	// From now on only that key is trusted for chat, in this process and the next.
	_, err = Verify(mustSign(t, testCert(), second), chat, tr, t0)
	wantOnly(t, err, ErrUntrustedKey)
	tr2, err := OpenTOFU(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(mustSign(t, testCert(), first), chat, tr2, t0); err != nil {
		t.Errorf("after restart: %v", err)
	}
	_, err = Verify(mustSign(t, testCert(), second), chat, tr2, t0)
	wantOnly(t, err, ErrUntrustedKey)

	// Another service gets its own first key; the file keeps both lines.
	mail := testCert()
	mail.Service = "mail"
	if _, err := Verify(mustSign(t, mail, second), Name{Service: "mail"}, tr2, t0); err != nil {
		t.Fatal(err)
	}
	data, _ = os.ReadFile(path)
	if n := strings.Count(string(data), " ed25519 "); n != 2 {
		t.Errorf("trust file has %d keys, want 2:\n%s", n, data)
	}
}

// TOFU never overrides a key already trusted, including one for "*".
func TestTOFUNotWhenAKeyIsKnown(t *testing.T) {
	tr := trustFor(t, "*", testKey(1))
	tr.TOFU = true
	_, err := Verify(mustSign(t, testCert(), testKey(2)), chat, tr, t0)
	wantOnly(t, err, ErrUntrustedKey)
}

// Two roots answering at once with different keys: exactly one key wins.
func TestTOFURace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_keys")
	tr, err := OpenTOFU(path)
	if err != nil {
		t.Fatal(err)
	}
	certs := [][]byte{mustSign(t, testCert(), testKey(1)), mustSign(t, testCert(), testKey(2))}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = Verify(certs[i%2], chat, tr, t0) })
	}
	wg.Wait()
	winners := map[int]bool{}
	for i, err := range errs {
		if err == nil {
			winners[i%2] = true
		} else {
			wantOnly(t, err, ErrUntrustedKey)
		}
	}
	if len(winners) != 1 || len(tr.KeysFor("chat")) != 1 {
		t.Errorf("winners %v, keys %d", winners, len(tr.KeysFor("chat")))
	}
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), " ed25519 "); n != 1 {
		t.Errorf("trust file has %d keys:\n%s", n, data)
	}
}

func TestTOFUInMemory(t *testing.T) {
	tr := &Trust{TOFU: true}
	if _, err := Verify(mustSign(t, testCert(), testKey(1)), chat, tr, t0); err != nil {
		t.Fatal(err)
	}
	if len(tr.KeysFor("chat")) != 1 {
		t.Error("key not remembered")
	}
}

func TestTOFUWriteFailure(t *testing.T) {
	dir := t.TempDir()
	tr := &Trust{TOFU: true, TOFUFile: filepath.Join(dir, "known_keys")}
	if err := os.Mkdir(tr.TOFUFile, 0o700); err != nil { // a directory where the file should be
		t.Fatal(err)
	}
	if _, err := Verify(mustSign(t, testCert(), testKey(1)), chat, tr, t0); err == nil {
		t.Fatal("accepted although the key could not be recorded")
	}
	if len(tr.KeysFor("chat")) != 0 {
		t.Error("key trusted in memory although recording failed")
	}
}
