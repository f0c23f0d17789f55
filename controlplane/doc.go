// Package controlplane will hold the multi-tenant control plane: tenants and
// accounts, the console API, agent enrollment and configuration push, usage
// and billing. It never sees message bodies.
package controlplane
