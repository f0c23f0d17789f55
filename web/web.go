// Package web serves the browser front ends embedded in the binary. For now
// that is the webmail (and, for admins, the agent admin pages), a small
// single-page app over the REST API under /api/v1; it holds no state of its
// own and talks to nothing but that API.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

//go:embed webmail
var files embed.FS

// csp keeps the app to its own scripts and styles; message bodies are shown
// in a sandboxed frame with a policy of their own.
const csp = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; frame-src 'self' blob: data:; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// SecurityHeaders sets the headers every page of MaiRust's front ends
// carries: the page's content security policy, no sniffing, no referrer
// (links may carry tokens), no framing.
func SecurityHeaders(h http.Header, csp string) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

// Handler serves the webmail at /, with security headers on every answer.
func Handler() http.Handler {
	sub, err := fs.Sub(files, "webmail")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	static := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		SecurityHeaders(h, csp)
		if !strings.Contains(r.URL.Path, ".") {
			r.URL.Path = "/" // app routes all load the one page
		}
		h.Set("Cache-Control", "no-cache")
		static.ServeHTTP(w, r)
	})
}
