// Package deploy holds the container image (docker/), the docker compose
// set-ups (compose/) and the Helm chart (helm/). Its test checks the image
// and compose files statically against the binary and the config package:
// there is no container engine in the test environment.
package deploy
