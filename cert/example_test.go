package cert_test

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/smartclient/smartclient/cert"
)

func Example() {
	// The service operator signs a certificate.
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c := &cert.Certificate{
		Service:    "chat",
		Version:    1,
		IssuedAt:   now,
		ExpiresAt:  now.Add(30 * 24 * time.Hour),
		MemberList: []cert.Member{{URL: "http://10.0.0.1:8080"}, {URL: "http://10.0.0.2:8080"}},
		Allow:      cert.Allow{CIDRs: []string{"10.0.0.0/24"}},
	}
	data, err := cert.Sign(c, priv)
	if err != nil {
		panic(err)
	}

	// A client that knows only the self-certifying name verifies it.
	pub := priv.Public().(ed25519.PublicKey)
	name, err := cert.ParseName("service://chat~" + cert.Fingerprint(pub))
	if err != nil {
		panic(err)
	}
	got, err := cert.Verify(data, name, nil, now.Add(time.Minute))
	if err != nil {
		panic(err)
	}
	cfg := got.DirectorConfig()
	fmt.Println(got.Service, got.Version, len(got.Members()), cfg.LearnMembers)
	// Output: chat 1 2 true
}
