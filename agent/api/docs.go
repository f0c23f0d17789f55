package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"html/template"
	"net/http"
	"reflect"
)

// docsStyle is the reference page's only style; the CSP allows it by hash.
const docsStyle = `body{font:15px/1.45 system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em;color:#222}
section{border-top:1px solid #ddd;padding:.6em 0}h2{font-size:1em;margin:0 0 .3em}
code,.m{font-family:ui-monospace,monospace}.m{display:inline-block;min-width:4.5em;font-weight:bold}
.a{color:#666;font-size:.9em}ul{margin:.2em 0;padding-left:1.4em}`

var docsCSP = func() string {
	sum := sha256.Sum256([]byte(docsStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var docsTemplate = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>MaiRust agent API</title>
<style>{{.Style}}</style></head><body>
<h1>MaiRust agent API</h1>
<p>Every error is an RFC 9457 problem (<code>application/problem+json</code>). Authenticated endpoints take
<code>Authorization: Bearer</code> with an access token or an API token. The machine-readable description is
<a href="/api/v1/openapi.json">/api/v1/openapi.json</a> (OpenAPI 3.1).</p>
{{range .Routes}}<section>
<h2><span class="m">{{.Method}}</span> <code>{{.Path}}</code></h2>
<div>{{.Summary}} <span class="a">({{.Auth}})</span></div>
{{if .Params}}<ul>{{range .Params}}<li><code>{{.Name}}</code> ({{.In}}, {{.Kind}}): {{.Summary}}</li>{{end}}</ul>{{end}}
{{if .Request}}<div>Request: <code>{{.Request}}</code></div>{{end}}
<div>Answer: {{.Status}}{{if .Response}} <code>{{.Response}}</code>{{end}}</div>
</section>
{{end}}</body></html>
`))

// docsParam and docsRoute are a parameter and a route as the page shows them.
type (
	docsParam struct{ Name, In, Kind, Summary string }
	docsRoute struct {
		Method, Path, Summary, Auth string
		Params                      []docsParam
		Request, Response, Status   string
	}
)

var authNames = map[authKind]string{authNone: "no authentication", authUser: "signed in", authAdmin: "administrators"}

// docsPage renders the reference page from the route table.
func docsPage(routes []route) []byte {
	var list []docsRoute
	for _, rt := range routes {
		d := docsRoute{Method: rt.method, Path: rt.path, Summary: rt.summary, Auth: authNames[rt.auth], Request: typeName(rt.request), Response: typeName(rt.response),
			Status: http.StatusText(rt.status)}
		if rt.contentType != "" {
			d.Response = rt.contentType
		}
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			p := pathParams[m[1]]
			d.Params = append(d.Params, docsParam{p.name, "path", p.kind, p.summary})
		}
		for _, p := range rt.query {
			d.Params = append(d.Params, docsParam{p.name, "query", p.kind, p.summary})
		}
		list = append(list, d)
	}
	var b bytes.Buffer
	if err := docsTemplate.Execute(&b, struct {
		Style  template.CSS
		Routes []docsRoute
	}{docsStyle, list}); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// typeName is the schema name of v's type, or "" for nil.
func typeName(v any) string {
	if v == nil {
		return ""
	}
	return schemaName(reflect.TypeOf(v))
}

// serveDocs answers the reference page.
func serveDocs(w http.ResponseWriter, _ *http.Request) error {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", docsCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	_, page := describe()
	_, err := w.Write(page)
	return err
}
