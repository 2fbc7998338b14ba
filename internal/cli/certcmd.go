package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/smartclient/smartclient/cert"
	"github.com/smartclient/smartclient/internal/atomicfile"
	"github.com/smartclient/smartclient/resolve"
)

const certUsage = `usage: smartclient cert <keygen|sign|verify|inspect|endorse|pin> [flags]

  keygen  --out KEY [--force]               write an ed25519 key pair: KEY (0600) and KEY.pub
  sign    --key KEY --in DESC --out CERT    sign a certificate described in YAML or JSON
  verify  --trust KEY.pub [--name service://NAME] CERT
                                            exit 0 if CERT is valid, else 1 with the reason
  inspect CERT                              print the certificate and its signatures, unverified
  endorse --key OLD --pub NEW.pub --service NAME --ttl D --out FILE
                                            let clients that trust OLD accept certificates signed by NEW
  pin     FILE.pem | --connect HOST:PORT [--servername NAME]
                                            print the TLS key pin of a member's certificate (or public
                                            key), or of the key a TLS server presents now (unverified)
`

const resolveUsage = `usage: smartclient resolve service://NAME --root URL [--root URL ...] --trust KEY.pub [flags]

Asks every root in parallel for the service's certificate, keeps the highest
valid version (never one older than the cached copy), caches it, and prints
its version, source and members, then each root's answer.
`

const serveCertUsage = `usage: smartclient serve-cert --dir DIR [--listen ADDR]

Publishes the certificates in DIR (files SERVICE.cert) as an HTTP root at
` + resolve.WellKnownPrefix + `SERVICE` + resolve.CertSuffix + `.
`

// trustFlags is how every command takes trust: --trust (repeatable: a PEM
// public key, trusted for any service, or a trusted-keys file) and --tofu
// FILE (trust on first use, recorded in FILE).
type trustFlags struct {
	files []string
	tofu  string
}

func (t *trustFlags) register(fs *flag.FlagSet) {
	fs.Func("trust", "trusted signing key: a .pub file from 'cert keygen', or a trusted-keys file (repeatable)", func(s string) error {
		t.files = append(t.files, s)
		return nil
	})
	fs.StringVar(&t.tofu, "tofu", "", "trust the first key seen for a service and record it in this trusted-keys file")
}

// load builds the Trust; nil error with no keys is fine for a
// self-certifying name.
func (t *trustFlags) load() (*cert.Trust, error) {
	tr := &cert.Trust{}
	if t.tofu != "" {
		var err error
		if tr, err = cert.OpenTOFU(t.tofu); err != nil {
			return nil, usagef("--tofu %s: %v", t.tofu, err)
		}
	}
	for _, f := range t.files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, usagef("--trust: %v", err)
		}
		if bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN")) {
			pub, err := cert.ParsePublicKey(data)
			if err != nil {
				return nil, usagef("--trust %s: %v", f, err)
			}
			tr.AddKey("*", pub)
			continue
		}
		ft, err := cert.ParseTrust(data)
		if err != nil {
			return nil, usagef("--trust %s: %v", f, err)
		}
		for pattern, keys := range ft.Keys {
			for _, k := range keys {
				tr.AddKey(pattern, k)
			}
		}
	}
	return tr, nil
}

// splitArgs separates flags from positional arguments, so that
// "resolve service://x --root …" works like "resolve --root … service://x".
func splitArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usagef("%v", err)
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func runCert(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("missing subcommand: keygen, sign, verify, inspect, endorse or pin")
	}
	sub, args := args[0], args[1:]
	fs := newFlagSet("cert " + sub)
	help := func() error { return helpError{fs: fs, usage: certUsage} }
	switch sub {
	case "pin":
		return runCertPin(ctx, fs, args, stdout, stderr, help)

	case "keygen":
		out := fs.String("out", "", "private key file to write; the public key goes to FILE.pub")
		force := fs.Bool("force", false, "replace existing key files")
		if _, err := parseCert(fs, args, 0, help); err != nil {
			return err
		}
		if *out == "" {
			return usagef("--out is required")
		}
		if *force {
			for _, f := range []string{*out, *out + ".pub"} {
				if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
			}
		}
		priv, err := cert.GenerateKey()
		if err != nil {
			return err
		}
		if err := cert.WriteKeyPair(*out, priv); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s and %s.pub\nfingerprint: %s\n", *out, *out, cert.Fingerprint(priv.Public().(ed25519.PublicKey)))
		return nil

	case "sign":
		key := fs.String("key", "", "private key file")
		in := fs.String("in", "", "description (YAML or JSON): service, version, members, policy, ttl, …")
		out := fs.String("out", "", "certificate file to write")
		if _, err := parseCert(fs, args, 0, help); err != nil {
			return err
		}
		if *key == "" || *in == "" || *out == "" {
			return usagef("--key, --in and --out are required")
		}
		priv, err := cert.ReadPrivateKey(*key)
		if err != nil {
			return err
		}
		c, err := readDescription(*in, time.Now())
		if err != nil {
			return err
		}
		data, err := cert.Sign(c, priv)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(*out, data, 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "signed %s version %d, %d members, expires %s\n", c.Service, c.Version, len(c.MemberList), c.ExpiresAt.Format(time.RFC3339))
		return nil

	case "verify":
		var tf trustFlags
		tf.register(fs)
		name := fs.String("name", "", "service://NAME[~FINGERPRINT] the certificate must be for (default: the service it names)")
		pos, err := parseCert(fs, args, 1, help)
		if err != nil {
			return err
		}
		trust, err := tf.load()
		if err != nil {
			return err
		}
		data, err := readCert(pos[0])
		if err != nil {
			return err
		}
		n, err := nameFor(*name, data)
		if err != nil {
			return err
		}
		c, err := cert.Verify(data, n, trust, time.Now())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "ok: %s version %d, %d members, expires %s\n", c.Service, c.Version, len(c.MemberList), c.ExpiresAt.Format(time.RFC3339))
		return nil

	case "inspect":
		pos, err := parseCert(fs, args, 1, help)
		if err != nil {
			return err
		}
		data, err := readCert(pos[0])
		if err != nil {
			return err
		}
		env, c, err := cert.Parse(data)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "payload type: %s\n", env.PayloadType)
		for _, s := range env.Signatures {
			fmt.Fprintf(stdout, "signature by: %s\n", s.KeyID)
		}
		fmt.Fprintln(stdout, "(not verified: use 'smartclient cert verify')")
		b, _ := json.MarshalIndent(c, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return nil

	case "endorse":
		key := fs.String("key", "", "the endorsing (old, trusted) private key")
		pub := fs.String("pub", "", "the endorsed (new) public key file")
		service := fs.String("service", "", "the service the new key may sign for")
		ttl := fs.Duration("ttl", 90*24*time.Hour, "how long the endorsement lasts")
		out := fs.String("out", "", "endorsement file to write (list it under 'endorsements' in a description)")
		if _, err := parseCert(fs, args, 0, help); err != nil {
			return err
		}
		if *key == "" || *pub == "" || *service == "" || *out == "" {
			return usagef("--key, --pub, --service and --out are required")
		}
		priv, err := cert.ReadPrivateKey(*key)
		if err != nil {
			return err
		}
		newKey, err := cert.ReadPublicKey(*pub)
		if err != nil {
			return err
		}
		e, err := cert.Endorse(priv, newKey, *service, time.Now().Add(*ttl))
		if err != nil {
			return err
		}
		b, _ := json.MarshalIndent(e, "", "  ")
		if err := atomicfile.WriteFile(*out, append(b, '\n'), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "wrote %s: %s endorses %s for %s until %s\n", *out, e.By, cert.Fingerprint(newKey), *service, e.ExpiresAt.Format(time.RFC3339))
		return nil
	}
	return usagef("unknown subcommand %q: keygen, sign, verify, inspect, endorse or pin", sub)
}

// parseCert parses a cert subcommand's flags and wants exactly n positional
// arguments.
func parseCert(fs *flag.FlagSet, args []string, n int, help func() error) ([]string, error) {
	pos, err := splitArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return nil, help()
	}
	if err != nil {
		return nil, err
	}
	switch {
	case len(pos) > n:
		return nil, usagef("unexpected argument %q", pos[n])
	case len(pos) < n:
		return nil, usagef("missing certificate file")
	}
	return pos, nil
}

func readCert(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, cert.MaxSize+1))
	if err != nil {
		return nil, err
	}
	return data, nil
}

// nameFor returns the name to verify against: the one given, or the
// service the certificate itself names.
func nameFor(given string, data []byte) (cert.Name, error) {
	if given != "" {
		n, err := cert.ParseName(given)
		if err != nil {
			return n, usagef("--name: %v", err)
		}
		return n, nil
	}
	_, c, err := cert.Parse(data)
	if err != nil {
		return cert.Name{}, err
	}
	return cert.Name{Service: c.Service}, nil
}

func runServeCert(ctx context.Context, args []string, stdout, stderr io.Writer, ready chan<- string) error {
	fs := newFlagSet("serve-cert")
	dir := fs.String("dir", "", "directory holding SERVICE.cert files")
	listen := fs.String("listen", "127.0.0.1:8443", "address to serve on; port 0 picks a free port")
	if err := parseFlags(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpError{fs: fs, usage: serveCertUsage}
		}
		return err
	}
	if *dir == "" {
		return usagef("--dir is required")
	}
	if st, err := os.Stat(*dir); err != nil || !st.IsDir() {
		return usagef("--dir %s: not a directory", *dir)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return usagef("%v", err)
	}
	srv := &http.Server{Handler: resolve.ServeHandler(*dir), ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(stdout, "serving %s as a root at http://%s%s\n", *dir, ln.Addr(), resolve.WellKnownPrefix)
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		fmt.Fprintln(stdout, "stopped")
		return nil
	}
}
