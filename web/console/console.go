// Package console serves the hosted console: the pages and scripts of a
// small single-page app, embedded in the binary, at /console/ on the
// control plane's listener. It holds no state and needs no authentication
// itself: the pages call the control plane's Connect API on the same
// origin with the session token the person logged in to, kept in the
// tab's sessionStorage. It must not reach the database or the services
// behind the API.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/mairust/mairust/web"
)

// storePages are the plugin store's pages: /console/store/<plugin id>.
const storePages = Prefix + "store/"

//go:embed static
var files embed.FS

// Prefix is the path the console is served under; its pages link to it.
const Prefix = "/console/"

// csp keeps the pages to their own scripts and styles and their calls to
// the same origin. Forms are sent by script only, so a form that a
// failed script leaves to the browser goes nowhere (form-action 'none').
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// Handler serves the console under Prefix: a file by its name, any other
// path without a dot in its last element (a page of the app, such as
// /console/verify) or under storePages (a plugin's page, whose id may
// have dots) as index.html, never cached, and 404 for an unknown file.
// Every answer carries the security headers.
func Handler() http.Handler {
	static, err := fs.Sub(files, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	assets := http.StripPrefix(strings.TrimSuffix(Prefix, "/"), http.FileServerFS(static))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		web.SecurityHeaders(h, csp)
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the console's pages are read with GET", http.StatusMethodNotAllowed)
			return
		}
		if !strings.HasPrefix(r.URL.Path, Prefix) {
			http.NotFound(w, r)
			return
		}
		if !strings.Contains(path.Base(r.URL.Path), ".") || strings.HasSuffix(r.URL.Path, "/") || strings.HasPrefix(r.URL.Path, storePages) {
			h.Set("Cache-Control", "no-store")
			http.ServeFileFS(w, r, static, "index.html")
			return
		}
		h.Set("Cache-Control", "no-cache")
		assets.ServeHTTP(w, r)
	})
}
