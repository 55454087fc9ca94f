package fabrics

import "github.com/seedb8fa28ef/gonvme/nvme/spec"

// Command specific status values of the Fabrics commands (SCT 1,
// spec.SCTCommandSpecific). Base 2.0, 4.6.1.2.2 and 6.3. They share values
// with the NVM Command Set's command specific codes (0x80 is also
// "Conflicting Attributes"), so a status means these only for a Fabrics
// command: use StatusName with the command's FCTYPE known.
const (
	SCIncompatibleFormat     = 0x80 // Connect: RECFMT not supported
	SCControllerBusy         = 0x81 // Connect: the controller is busy with this host's previous association
	SCConnectInvalidParams   = 0x82 // Connect: a field named by ConnectResponse.InvalidParameter
	SCConnectRestartDiscover = 0x83 // Connect: the subsystem moved, rediscover
	SCConnectInvalidHost     = 0x84 // Connect: the host may not use this subsystem
	SCInvalidQueueType       = 0x85 // Connect: the queue type is not supported
	SCDiscoverRestart        = 0x90 // Get Log Page (discovery): the log changed, read it again
	SCAuthRequired           = 0x91 // in-band authentication required
)

var fabricsStatusNames = map[uint8]string{
	SCIncompatibleFormat:     "Incompatible Format",
	SCControllerBusy:         "Controller Busy",
	SCConnectInvalidParams:   "Connect Invalid Parameters",
	SCConnectRestartDiscover: "Connect Restart Discovery",
	SCConnectInvalidHost:     "Connect Invalid Host",
	SCInvalidQueueType:       "Invalid Queue Type",
	SCDiscoverRestart:        "Discover Restart",
	SCAuthRequired:           "Authentication Required",
}

// StatusName names the status of a completed Fabrics command: the fabrics
// name for the command specific codes above, spec.StatusName for the rest.
func StatusName(s spec.Status) string {
	if s.SCT() == spec.SCTCommandSpecific {
		if n, ok := fabricsStatusNames[s.SC()]; ok {
			return n
		}
	}
	return s.Name()
}
