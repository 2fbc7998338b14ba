// Package cert owns the service certificate: the signed document that names
// a service, its members, its director policy and the roots where newer
// versions are published, and the rules a client uses to decide whether to
// believe one.
//
// A certificate is JSON (Certificate, format "smartclient-cert/1.x") wrapped
// in a DSSE v1 envelope (https://github.com/secure-systems-lab/dsse) and
// signed with ed25519. DSSE signs the exact payload bytes, so no JSON
// canonicalisation is needed; Sign still encodes deterministically so the
// same description signs to the same bytes. Parse reads an envelope without
// trusting it (for inspection); Verify believes a certificate only when a
// signature checks out under a key the client already trusts for the
// service:
//
//   - a key listed for the service in a trusted-keys file (Trust, like ssh's
//     known_hosts);
//   - the key whose Fingerprint a self-certifying name embeds
//     (service://chat~<fingerprint>); the key itself travels in the
//     certificate (signing_key, or an endorsement's key or by_key) and is
//     believed because its SHA-256 matches the name;
//   - a key reached from one of those through at most MaxChainDepth
//     unexpired endorsements (key rotation: the old key signs the new one);
//   - trust on first use, only when Trust.TOFU is set: the first key seen
//     for a service that has no trusted key yet is recorded in the trust
//     file.
//
// Each refusal wraps exactly one sentinel error that names the reason
// (ErrMalformed, ErrTooLarge, ErrVersion, ErrWrongService, ErrExpired,
// ErrNotYetValid, ErrBadSignature, ErrUntrustedKey); CheckVersion gives
// ErrRollback to callers that compare against a cached version.
//
// # Threat model
//
// The signed certificate and AcceptMembers stop:
//
//   - forged certificates served by a hostile mirror, root or DNS zone: no
//     trusted key signed them (ErrUntrustedKey);
//   - tampering with a genuine certificate in transit or in a cache
//     (ErrBadSignature), and replaying one service's certificate for another
//     (ErrWrongService);
//   - rollback to an old member list: versions only grow, and callers refuse
//     a version lower than the one cached (CheckVersion, ErrRollback); old
//     certificates also expire;
//   - one compromised or malicious member steering clients to hosts the
//     service never approved: a membership record piggy-backed on a reply is
//     applied only if every URL is listed in the certificate or lies inside
//     its allow rules (CIDR ranges, domain suffixes, ports), and only when
//     the certificate has such rules at all.
//
// They do not stop:
//
//   - a compromised signing key (or a key endorsed by it): its holder can
//     sign anything until clients stop trusting that key;
//   - a compromised member lying about its own load, answering wrongly, or
//     dropping requests; or shrinking the member list to approved members
//     only (itself, say), possibly with a huge epoch that freezes the list
//     until the client restarts from a certificate;
//   - an attacker who controls a host inside an allowed range or domain;
//   - denial of service: roots that are all down or all refuse still leave
//     a client without a certificate (the cache softens this);
//   - a hostile root winning the race on a trust-on-first-use client's very
//     first fetch; prefer self-certifying names or a trust file.
package cert
