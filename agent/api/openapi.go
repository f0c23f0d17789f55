package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"sync"
	"time"
)

// described holds the OpenAPI document and the reference page, made once
// from the route table of a zero Server.
var described struct {
	sync.Once
	openAPI, page []byte
}

// describe returns the OpenAPI document and the reference page.
func describe() (openAPI, page []byte) {
	described.Do(func() {
		routes := (&Server{}).routes()
		b, err := json.MarshalIndent(buildOpenAPI(routes), "", "  ")
		if err != nil {
			panic(err)
		}
		described.openAPI = append(b, '\n')
		described.page = docsPage(routes)
	})
	return described.openAPI, described.page
}

// OpenAPI returns the API's OpenAPI 3.1 document, generated from the route
// table; docs/openapi.json is a copy (go run ./cmd/mairust api openapi).
func OpenAPI() []byte {
	doc, _ := describe()
	return doc
}

// serveOpenAPI answers the OpenAPI document.
func serveOpenAPI(w http.ResponseWriter, _ *http.Request) error {
	w.Header().Set("Content-Type", "application/json")
	_, err := w.Write(OpenAPI())
	return err
}

// pathParam matches a {name} segment of a route path.
var pathParam = regexp.MustCompile(`\{(\w+)\}`)

// obj is a JSON object of the document.
type obj = map[string]any

// buildOpenAPI describes routes.
func buildOpenAPI(routes []route) obj {
	g := &schemas{defs: obj{}, types: map[string]reflect.Type{}}
	g.schema(reflect.TypeFor[Problem]())
	problemJSON := obj{"description": "an RFC 9457 problem", "content": obj{"application/problem+json": obj{"schema": ref("Problem")}}}
	paths := obj{}
	for _, rt := range routes {
		op := obj{
			"summary":     rt.summary,
			"operationId": operationID(rt),
			"responses":   obj{fmt.Sprint(rt.status): g.success(rt), "4XX": problemJSON, "5XX": problemJSON},
		}
		if rt.auth != authNone {
			op["security"] = []obj{{"bearerAuth": []string{}}}
		}
		var params []obj
		for _, m := range pathParam.FindAllStringSubmatch(rt.path, -1) {
			p, ok := pathParams[m[1]]
			if !ok {
				panic("api: path parameter {" + m[1] + "} is not in pathParams")
			}
			params = append(params, p.openAPI("path", true))
		}
		for _, p := range rt.query {
			params = append(params, p.openAPI("query", false))
		}
		if params != nil {
			op["parameters"] = params
		}
		if rt.request != nil {
			op["requestBody"] = obj{"required": true, "content": obj{"application/json": obj{"schema": g.schema(reflect.TypeOf(rt.request))}}}
		}
		item, _ := paths[rt.path].(obj)
		if item == nil {
			item = obj{}
			paths[rt.path] = item
		}
		item[strings.ToLower(rt.method)] = op
	}
	return obj{
		"openapi": "3.1.0",
		"info": obj{
			"title":       "MaiRust agent API",
			"version":     "1",
			"description": "The agent's REST API: sign-in, the owner's messages and folders, and the administrator's domains, users, aliases and logs. Errors are RFC 9457 problem JSON.",
		},
		"paths": paths,
		"components": obj{
			"schemas":         g.defs,
			"securitySchemes": obj{"bearerAuth": obj{"type": "http", "scheme": "bearer", "description": "an access JWT from /api/v1/auth/login or an API token (mrt_...)"}},
		},
	}
}

// operationID names a route: its method and path in camel case.
func operationID(rt route) string {
	var b strings.Builder
	b.WriteString(strings.ToLower(rt.method))
	for _, part := range strings.FieldsFunc(strings.TrimPrefix(rt.path, "/api/v1/"), func(r rune) bool { return !('a' <= r && r <= 'z' || '0' <= r && r <= '9') }) {
		b.WriteString(strings.ToUpper(part[:1]) + part[1:])
	}
	return b.String()
}

func (p param) openAPI(in string, required bool) obj {
	return obj{"name": p.name, "in": in, "required": required, "description": p.summary, "schema": obj{"type": p.kind}}
}

func ref(name string) obj { return obj{"$ref": "#/components/schemas/" + name} }

// success describes a route's success answer.
func (g *schemas) success(rt route) obj {
	resp := obj{"description": http.StatusText(rt.status)}
	switch {
	case rt.response != nil:
		resp["content"] = obj{"application/json": obj{"schema": g.schema(reflect.TypeOf(rt.response))}}
	case rt.contentType != "":
		resp["content"] = obj{rt.contentType: obj{}}
	}
	return resp
}

// schemas generates JSON Schemas of Go types as encoding/json writes them;
// named structs go to defs, by schemaName.
type schemas struct {
	defs  obj
	types map[string]reflect.Type
}

var timeType = reflect.TypeFor[time.Time]()

// schemaName is the component name of a struct type: its name, capitalized,
// without a JSON suffix.
func schemaName(t reflect.Type) string {
	n := strings.TrimSuffix(t.Name(), "JSON")
	return strings.ToUpper(n[:1]) + n[1:]
}

// schema returns the schema of t, a reference for a named struct. A pointer
// may be null; a field is required unless it is a pointer or omitempty.
func (g *schemas) schema(t reflect.Type) obj {
	switch t.Kind() {
	case reflect.Pointer:
		s := g.schema(t.Elem())
		if typ, ok := s["type"].(string); ok {
			s["type"] = []string{typ, "null"}
			return s
		}
		return obj{"anyOf": []obj{s, {"type": "null"}}}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return obj{"type": "integer"}
	case reflect.Int64, reflect.Uint64:
		return obj{"type": "integer", "format": "int64"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Slice, reflect.Array:
		return obj{"type": "array", "items": g.schema(t.Elem())}
	case reflect.Map:
		return obj{"type": "object", "additionalProperties": g.schema(t.Elem())}
	case reflect.Interface:
		return obj{}
	case reflect.Struct:
		if t == timeType {
			return obj{"type": "string", "format": "date-time"}
		}
		name := schemaName(t)
		if prev, ok := g.types[name]; ok {
			if prev != t {
				panic(fmt.Sprintf("api: %v and %v both make schema %s", prev, t, name))
			}
			return ref(name)
		}
		g.types[name] = t
		props, required := obj{}, []string{}
		g.fields(t, props, &required)
		g.defs[name] = obj{"type": "object", "properties": props, "required": required, "additionalProperties": false}
		return ref(name)
	}
	panic(fmt.Sprintf("api: no schema for %v", t))
}

// fields adds the JSON fields of struct t, embedded structs flattened.
func (g *schemas) fields(t reflect.Type, props obj, required *[]string) {
	for f := range t.Fields() {
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch {
		case name == "-":
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			g.fields(f.Type, props, required)
			continue
		case !f.IsExported():
			continue
		case name == "":
			name = f.Name
		}
		props[name] = g.schema(f.Type)
		if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
			*required = append(*required, name)
		}
	}
}
