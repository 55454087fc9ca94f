package main

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// versionString is nvmectl's version from the build info the Go toolchain
// embeds: the module version ("(devel)" for a build from a work tree) and
// the VCS revision, with "+dirty" for a modified tree.
func versionString() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown (no build info)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var rev, when string
	dirty := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.time":
			when = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		}
	}
	if rev != "" {
		v += " " + rev
		if dirty {
			v += "+dirty"
		}
		if when != "" {
			v += " " + when
		}
	}
	return v
}

// versionTemplate is what --version prints.
func versionTemplate() string {
	bi, _ := debug.ReadBuildInfo()
	gov := ""
	if bi != nil {
		gov = bi.GoVersion
	}
	return fmt.Sprintf("nvmectl %s (%s)\n", versionString(), gov)
}

// setVersion gives root --version.
func setVersion(root *cobra.Command) {
	root.Version = versionString()
	root.SetVersionTemplate(versionTemplate())
}
