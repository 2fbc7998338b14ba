//go:build race

package failsuite

func init() { raceEnabled = true }
