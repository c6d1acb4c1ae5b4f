package audit

import (
	"os"
	"os/user"
)

// CLIActor is the person running a keygate command: the operating
// system's user name and the host name, each left empty if unknown.
func CLIActor() Actor {
	a := Actor{Kind: ActorCLI}
	if u, err := user.Current(); err == nil {
		a.User = u.Username
	}
	if h, err := os.Hostname(); err == nil {
		a.Host = h
	}
	if !printable(a.User) {
		a.User = ""
	}
	if !printable(a.Host) {
		a.Host = ""
	}
	return a
}
