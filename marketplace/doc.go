// Package marketplace will hold the plugin package format, signing and
// verification, review, the catalog and recalls.
package marketplace
