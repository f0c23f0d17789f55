// Package proof builds the messages an agent signs with its Ed25519 key to
// prove that it holds it (agents.v1 EnrollRequest and
// RenewCredentialRequest): the agent signs them, the control plane
// verifies them.
package proof

import "strconv"

// Enroll is the message an EnrollRequest's signature covers:
// "mairust-enroll\n" + token + "\n" + publicKey.
func Enroll(token string, publicKey []byte) []byte {
	return append([]byte("mairust-enroll\n"+token+"\n"), publicKey...)
}

// Renew is the message a RenewCredentialRequest's signature covers:
// "mairust-renew\n" + agentID + "\n" + timestamp (Unix seconds, decimal).
func Renew(agentID string, timestamp int64) []byte {
	return []byte("mairust-renew\n" + agentID + "\n" + strconv.FormatInt(timestamp, 10))
}
