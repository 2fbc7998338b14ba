package cli

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"github.com/smartclient/smartclient/smarthttp"
)

// maxPEMSize bounds what `cert pin` reads from a file: a certificate chain
// is a few KiB.
const maxPEMSize = 1 << 20

// runCertPin prints the TLS key pin (smarthttp.Pin, the "pin" of a member in
// a certificate description) of a PEM certificate or public key file, or of
// the key a TLS server presents now (--connect).
func runCertPin(ctx context.Context, fs *flag.FlagSet, args []string, stdout, stderr io.Writer, help func() error) error {
	connect := fs.String("connect", "", "HOST:PORT of a TLS server: pin the key it presents now (not verified: check it out of band)")
	serverName := fs.String("servername", "", "with --connect, the TLS server name to ask for (default: HOST)")
	timeout := fs.Duration("timeout", 10*time.Second, "with --connect, how long the handshake may take")
	pos, err := splitArgs(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return help()
	}
	if err != nil {
		return err
	}
	switch {
	case *connect != "" && len(pos) > 0:
		return usagef("give a PEM file or --connect, not both")
	case *connect == "" && len(pos) != 1:
		return usagef("want one PEM file (a certificate or a public key) or --connect HOST:PORT")
	case *timeout <= 0:
		return usagef("--timeout %v: must be positive", *timeout)
	}
	if *connect != "" {
		pin, leaf, err := pinOfServer(ctx, *connect, *serverName, *timeout)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, pin)
		fmt.Fprintf(stderr, "%s presented %q (expires %s); the chain was not verified: compare the pin with the server's own before signing it\n",
			*connect, leaf.Subject.String(), leaf.NotAfter.Format(time.RFC3339))
		return nil
	}
	f, err := os.Open(pos[0])
	if err != nil {
		return err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxPEMSize+1))
	if err != nil {
		return err
	}
	if len(data) > maxPEMSize {
		return fmt.Errorf("%s: larger than %d bytes: not a PEM certificate", pos[0], maxPEMSize)
	}
	pin, err := pinFromPEM(data)
	if err != nil {
		return fmt.Errorf("%s: %w", pos[0], err)
	}
	fmt.Fprintln(stdout, pin)
	return nil
}

// pinFromPEM returns the pin of the first CERTIFICATE or PUBLIC KEY block
// in data (a server's certificate file lists its own certificate first).
func pinFromPEM(data []byte) (smarthttp.Pin, error) {
	for rest := data; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return smarthttp.Pin{}, errors.New("no PEM CERTIFICATE or PUBLIC KEY block")
		}
		switch b.Type {
		case "CERTIFICATE":
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return smarthttp.Pin{}, fmt.Errorf("CERTIFICATE block: %w", err)
			}
			return smarthttp.PinOf(c), nil
		case "PUBLIC KEY":
			if _, err := x509.ParsePKIXPublicKey(b.Bytes); err != nil {
				return smarthttp.Pin{}, fmt.Errorf("PUBLIC KEY block: %w", err)
			}
			return smarthttp.Pin(sha256.Sum256(b.Bytes)), nil
		}
	}
}

// pinOfServer makes one TLS handshake with addr and returns the pin of the
// certificate it presents, without verifying its chain: pinning is for
// members whose chain cannot be verified (self-signed), so the caller must
// check the printed pin some other way.
func pinOfServer(ctx context.Context, addr, serverName string, timeout time.Duration) (smarthttp.Pin, *x509.Certificate, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return smarthttp.Pin{}, nil, usagef("--connect %q: want HOST:PORT", addr)
	}
	if serverName == "" {
		serverName = host
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := tls.Dialer{Config: &tls.Config{ServerName: serverName, InsecureSkipVerify: true}}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return smarthttp.Pin{}, nil, fmt.Errorf("--connect %s: %w", addr, err)
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	if len(certs) == 0 {
		return smarthttp.Pin{}, nil, fmt.Errorf("--connect %s: the server presented no certificate", addr)
	}
	return smarthttp.PinOf(certs[0]), certs[0], nil
}
