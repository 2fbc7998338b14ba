package testbed

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RunDir holds one record per bed (NAME.json), each bed's scratch
// directory (NAME/, nginx configurations and logs) and the lock that
// serialises creating and sweeping beds. It is on /run, a tmpfs, so a
// reboot empties it together with the namespaces it describes.
const RunDir = "/run/smartclient-testbed"

const maxRecord = 4 << 10 // a record is a few hundred bytes; refuse anything larger

// record is what RunDir/NAME.json says about a bed. It is written before
// anything of the bed is created and removed after everything is gone, so
// a bed whose owner died is always found.
type record struct {
	Name   string `json:"name"` // PREFIX-ID, the start of every name the bed uses
	Prefix string `json:"prefix"`
	Hosts  int    `json:"hosts"`
	Subnet string `json:"subnet"`
	// Pid is the owner process; 0 marks a persistent bed (smartclient
	// testbed up) that only Down removes.
	Pid int `json:"pid"`
	// Start is the owner's start time (clock ticks after boot, field 22
	// of /proc/PID/stat), so a reused pid does not keep a dead bed alive.
	Start   uint64    `json:"start"`
	Created time.Time `json:"created"`
}

// bedNameRE matches a bed name and captures its prefix.
var bedNameRE = regexp.MustCompile(`^([a-z][a-z0-9]{0,5})-[0-9a-f]{4}$`)

// ownerAlive reports whether the record's owner still runs (persistent
// beds count as alive).
func (r record) ownerAlive() bool {
	if r.Pid == 0 {
		return true
	}
	st, err := procStart(r.Pid)
	return err == nil && st == r.Start
}

// procStart reads a process's start time from /proc/PID/stat.
func procStart(pid int) (uint64, error) {
	f, err := statFields("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	const startField = 22 - 3
	if len(f) <= startField {
		return 0, fmt.Errorf("testbed: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[startField], 10, 64)
}

// statFields reads a /proc stat file (of a process or a thread) and
// returns its fields from field 3 (the state) on.
func statFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// The command name (field 2) may hold spaces and parentheses: count
	// fields after its closing parenthesis, which is field 3 onwards.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("testbed: %s: no command name", path)
	}
	return strings.Fields(string(b[i+1:])), nil
}

// lockRunDir takes the exclusive lock on RunDir; the kernel drops it if
// the process dies.
func lockRunDir() (unlock func(), err error) {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(RunDir, "lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("testbed: lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

func recordPath(name string) string { return filepath.Join(RunDir, name+".json") }

// writeRecord writes r atomically (a reader never sees half a record).
func writeRecord(r record) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp := recordPath(r.Name) + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("testbed: %w", err)
	}
	if err := os.Rename(tmp, recordPath(r.Name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("testbed: %w", err)
	}
	return nil
}

// readRecords reads every record in RunDir. A record that cannot be read
// or parsed is returned with only its name (from the file name) and a dead
// owner, so that a sweep removes what it named.
func readRecords() ([]record, error) {
	ents, err := os.ReadDir(RunDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("testbed: %w", err)
	}
	var out []record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !bedNameRE.MatchString(name) {
			continue
		}
		r, err := loadRecord(filepath.Join(RunDir, e.Name()))
		if err != nil || r.Name != name {
			m := bedNameRE.FindStringSubmatch(name)
			r = record{Name: name, Prefix: m[1], Pid: -1}
		}
		out = append(out, r)
	}
	return out, nil
}

func loadRecord(path string) (record, error) {
	f, err := os.Open(path)
	if err != nil {
		return record{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxRecord+1))
	if err != nil {
		return record{}, err
	}
	r, err := parseRecord(b)
	if err != nil {
		return record{}, fmt.Errorf("testbed: %s: %w", path, err)
	}
	return r, nil
}

// parseRecord checks a record read from disk: bounded, JSON, a valid name,
// prefix, subnet and host count.
func parseRecord(b []byte) (record, error) {
	if len(b) > maxRecord {
		return record{}, fmt.Errorf("record over %d bytes", maxRecord)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return record{}, err
	}
	m := bedNameRE.FindStringSubmatch(r.Name)
	switch {
	case m == nil:
		return record{}, fmt.Errorf("bad bed name %q", r.Name)
	case m[1] != r.Prefix:
		return record{}, fmt.Errorf("prefix %q does not start the name %q", r.Prefix, r.Name)
	case r.Pid < 0:
		return record{}, fmt.Errorf("bad owner pid %d", r.Pid)
	case r.Hosts < 1 || r.Hosts > MaxHosts:
		return record{}, fmt.Errorf("hosts %d out of 1..%d", r.Hosts, MaxHosts)
	}
	if _, err := parseSubnet(r.Subnet); err != nil {
		return record{}, err
	}
	return r, nil
}

// ownedNameRE matches the namespaces and links a bed of prefix p creates
// and captures the bed's name.
func ownedNameRE(prefix string) *regexp.Regexp {
	return regexp.MustCompile(`^(` + regexp.QuoteMeta(prefix) + `-[0-9a-f]{4})-(br|h[0-9]{1,2})$`)
}

// inventory is what exists now: namespaces, root-namespace links and root
// FORWARD rules (with their -S lines).
type inventory struct {
	netns []string
	links []string
	rules []string
}

func takeInventory(ctx context.Context) (inventory, error) {
	var inv inventory
	out, err := run(ctx, "ip", "netns", "list")
	if err != nil {
		return inv, err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			inv.netns = append(inv.netns, f[0])
		}
	}
	out, err = run(ctx, "ip", "-o", "link", "show")
	if err != nil {
		return inv, err
	}
	for _, line := range strings.Split(out, "\n") {
		// "7: sctb-1a2b-h1@if2: <BROADCAST,…"
		f := strings.SplitN(line, ": ", 3)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(f[1], "@")
		inv.links = append(inv.links, name)
	}
	if _, err := tool("iptables"); err == nil {
		out, err = run(ctx, "iptables", "-w", "5", "-S", "FORWARD")
		if err != nil {
			return inv, err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.HasPrefix(line, "-A FORWARD ") && strings.Contains(line, "--comment ") {
				inv.rules = append(inv.rules, line)
			}
		}
	}
	return inv, nil
}

// ruleComment returns the --comment value of an iptables -S line.
func ruleComment(line string) string {
	f := strings.Fields(line)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "--comment" {
			return strings.Trim(f[i+1], `"`)
		}
	}
	return ""
}

// teardown removes every trace of the bed called name: the processes in
// its namespaces, the namespaces (and with them their veths, rules and
// qdiscs), its links in the root namespace, its root FORWARD rule, its
// scratch directory and its record. It carries on past errors and returns
// them all; what is already gone is not an error.
func teardown(ctx context.Context, name string, inv inventory) error {
	var errs []error
	owned := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-(br|h[0-9]{1,2})$`)
	var nss []string
	for _, ns := range inv.netns {
		if owned.MatchString(ns) {
			nss = append(nss, ns)
		}
	}
	if err := killNetnsProcs(ctx, nss); err != nil {
		errs = append(errs, err)
	}
	for _, ns := range nss {
		if _, err := run(ctx, "ip", "netns", "delete", ns); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
	}
	// Deleting a namespace deletes its veth and so the root end; what is
	// left is the bridge, and a veth whose namespace was never made.
	if len(nss) > 0 {
		if fresh, err := takeInventory(ctx); err == nil {
			inv.links = fresh.links
		}
	}
	for _, l := range inv.links {
		if owned.MatchString(l) {
			if _, err := run(ctx, "ip", "link", "delete", l); err != nil && !notFound(err) {
				errs = append(errs, err)
			}
		}
	}
	for _, line := range inv.rules {
		if ruleComment(line) != name {
			continue
		}
		args := append([]string{"-w", "5", "-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
		if _, err := run(ctx, "iptables", args...); err != nil && !notFound(err) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(filepath.Join(RunDir, name)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := os.Remove(recordPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNetnsProcs SIGKILLs every process in the namespaces and waits until
// they are gone: a namespace with a process in it outlives `ip netns
// delete`, and so would its veth.
func killNetnsProcs(ctx context.Context, nss []string) error {
	var pids []int
	for _, ns := range nss {
		out, err := run(ctx, "ip", "netns", "pids", ns)
		if err != nil {
			if notFound(err) {
				continue
			}
			return err
		}
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for processExists(pid) {
			if time.Now().After(deadline) {
				return fmt.Errorf("testbed: process %d survived SIGKILL for 10s", pid)
			}
			if err := pause(ctx, 5*time.Millisecond); err != nil {
				return err
			}
		}
	}
	return nil
}

// processExists reports whether pid is a process that has not exited; a
// zombie (exited, not yet reaped by its parent) counts as gone, since it
// holds no namespace.
func processExists(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

// pause waits d or until ctx ends: the poll interval of loops that wait for
// something the kernel offers no event for.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// bedNames lists the beds that have a record or left a namespace, link or
// root rule, for prefix ("" for every prefix, records only).
func bedNames(recs []record, inv inventory, prefix string) []string {
	seen := map[string]bool{}
	var out []string
	add := func(n string) {
		if !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	for _, r := range recs {
		if prefix == "" || r.Prefix == prefix {
			add(r.Name)
		}
	}
	if prefix == "" {
		return out
	}
	re := ownedNameRE(prefix)
	for _, l := range append(append([]string{}, inv.netns...), inv.links...) {
		if m := re.FindStringSubmatch(l); m != nil {
			add(m[1])
		}
	}
	for _, line := range inv.rules {
		c := ruleComment(line)
		if m := bedNameRE.FindStringSubmatch(c); m != nil && m[1] == prefix {
			add(c)
		}
	}
	return out
}

// sweepDead removes the beds of dead owners (any prefix) and the orphans
// of prefix (names without a record). The caller holds the RunDir lock, so
// no bed is between writing its record and creating its first name.
func sweepDead(ctx context.Context, prefix string) ([]string, error) {
	recs, err := readRecords()
	if err != nil {
		return nil, err
	}
	inv, err := takeInventory(ctx)
	if err != nil {
		return nil, err
	}
	alive := map[string]bool{}
	for _, r := range recs {
		if r.ownerAlive() {
			alive[r.Name] = true
		}
	}
	var swept []string
	var errs []error
	for _, n := range append(bedNames(recs, inv, ""), bedNames(recs, inv, prefix)...) {
		if alive[n] || slices.Contains(swept, n) {
			continue
		}
		if err := teardown(ctx, n, inv); err != nil {
			errs = append(errs, err)
		}
		swept = append(swept, n)
	}
	return swept, errors.Join(errs...)
}

// BedInfo describes a bed found on the machine.
type BedInfo struct {
	Name       string // PREFIX-ID
	Subnet     string // "" if its record is lost
	Hosts      int
	Pid        int  // owner; 0 for a persistent bed
	Alive      bool // the owner runs, or the bed is persistent
	Persistent bool
	Netns      []string // its namespaces that exist now
}

// List describes the beds on the machine: those with a record (any prefix)
// and, for prefix, orphaned namespaces, links and rules without one.
func List(ctx context.Context, prefix string) ([]BedInfo, error) {
	recs, err := readRecords()
	if err != nil {
		return nil, err
	}
	inv, err := takeInventory(ctx)
	if err != nil {
		return nil, err
	}
	byName := map[string]record{}
	for _, r := range recs {
		byName[r.Name] = r
	}
	names := bedNames(recs, inv, "")
	if prefix != "" {
		for _, n := range bedNames(recs, inv, prefix) {
			if !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
	}
	var out []BedInfo
	for _, n := range names {
		r, ok := byName[n]
		bi := BedInfo{Name: n}
		if ok {
			bi.Subnet, bi.Hosts, bi.Pid, bi.Persistent = r.Subnet, r.Hosts, r.Pid, r.Pid == 0
			bi.Alive = r.ownerAlive()
		}
		for _, ns := range inv.netns {
			if strings.HasPrefix(ns, n+"-") {
				bi.Netns = append(bi.Netns, ns)
			}
		}
		out = append(out, bi)
	}
	return out, nil
}

// Down removes every bed of prefix but those whose owner still runs (a
// test in progress, which removes its own bed): their processes,
// namespaces, links, root rules and records, and returns the names of the
// beds it removed. Given a bed's name (PREFIX-XXXX) instead, it removes that
// bed whatever its owner's state. It is `smartclient testbed down`: for people
// cleaning up, and for tests removing a bed whose owner they killed (New
// sweeps dead beds by itself).
func Down(ctx context.Context, prefix string) ([]string, error) {
	if !prefixRE.MatchString(prefix) && !bedNameRE.MatchString(prefix) {
		return nil, fmt.Errorf("testbed: prefix %q: want 1..6 characters, a lower-case letter then lower-case letters or digits, or a bed's name PREFIX-XXXX", prefix)
	}
	unlock, err := lockRunDir()
	if err != nil {
		return nil, err
	}
	defer unlock()
	recs, err := readRecords()
	if err != nil {
		return nil, err
	}
	inv, err := takeInventory(ctx)
	if err != nil {
		return nil, err
	}
	var names []string
	if m := bedNameRE.FindStringSubmatch(prefix); m != nil {
		if slices.Contains(bedNames(recs, inv, m[1]), prefix) {
			names = []string{prefix}
		}
	} else {
		live := make(map[string]bool)
		for _, r := range recs {
			if r.Pid != 0 && r.ownerAlive() {
				live[r.Name] = true
			}
		}
		for _, n := range bedNames(recs, inv, prefix) {
			if !live[n] { // a running test's bed is left to it
				names = append(names, n)
			}
		}
	}
	var errs []error
	for _, n := range names {
		if err := teardown(ctx, n, inv); err != nil {
			errs = append(errs, err)
		}
	}
	return names, errors.Join(errs...)
}
