// Package helm holds the Helm chart of MaiRust (deploy/helm/mairust) and
// its test, which lints and renders the chart with every values file and
// checks the output.
package helm
