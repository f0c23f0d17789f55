// Package controlplane runs the multi-tenant control plane (`mairust
// controlplane`): tenants and accounts, the console API, agent enrollment,
// configuration push and reports, each service in its own package and all
// served on one HTTP listener by controlplane/server. It never sees
// message bodies.
package controlplane
