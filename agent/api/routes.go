package api

import (
	"net/http"

	"github.com/mairust/mairust/agent/accounts"
	"github.com/mairust/mairust/agent/hooks"
	"github.com/mairust/mairust/internal/ratelimit"
)

// authKind is who may call a route.
type authKind int

const (
	authNone  authKind = iota // no credentials
	authUser                  // an access JWT or API token (authed)
	authAdmin                 // an administrator's (adminOnly)
)

// param is a query or path parameter of a route.
type param struct {
	name, kind, summary string // kind is the JSON Schema type
}

// route is one endpoint: the mux registers it and the OpenAPI document and
// the reference page describe it.
type route struct {
	method, path, summary string
	auth                  authKind
	query                 []param
	request               any    // zero value of the JSON body, or nil
	response              any    // zero value of the JSON success body, or nil
	status                int    // of success
	contentType           string // of a success body that is not JSON
	h                     func(http.ResponseWriter, *http.Request) error
}

// pathParams describe the {name} segments of route paths.
var pathParams = map[string]param{
	"id":      {"id", "integer", "the object's id"},
	"n":       {"n", "integer", "the attachment's index, from 0"},
	"plugin":  {"plugin", "string", "the plugin's id"},
	"account": {"account", "string", "the account's address"},
}

// Query parameters shared by several routes.
var (
	afterParam  = param{"after", "integer", "the last id of the previous page"}
	limitParam  = param{"limit", "integer", "the page size"}
	offsetParam = param{"offset", "integer", "how many entries to skip"}
)

// routes lists every endpoint. It only builds handlers (the rate limiters'
// wrappers included, which work on a nil *rateLimits until called), so it
// may be called on a zero Server to describe the API.
func (s *Server) routes() []route {
	return []route{
		{method: "POST", path: "/api/v1/auth/login", summary: "Sign in with address and password", request: loginRequest{}, response: tokenResponse{}, status: http.StatusOK, h: s.rate.clientIP(s.login)},
		{method: "POST", path: "/api/v1/auth/refresh", summary: "Swap a refresh token for a new token pair", request: refreshRequest{}, response: tokenResponse{}, status: http.StatusOK, h: s.rate.clientIP(s.refresh)},
		{method: "POST", path: "/api/v1/auth/logout", summary: "Revoke a refresh token", request: refreshRequest{}, status: http.StatusNoContent, h: s.logout},
		{method: "GET", path: "/api/v1/me", summary: "The signed-in user", auth: authUser, response: meResponse{}, status: http.StatusOK, h: s.me},
		{method: "POST", path: "/api/v1/tokens", summary: "Create an API token; the answer is the only time it is shown", auth: authUser, request: createTokenRequest{}, response: apiToken{}, status: http.StatusCreated, h: s.createToken},
		{method: "GET", path: "/api/v1/tokens", summary: "Your API tokens", auth: authUser, response: tokenList{}, status: http.StatusOK, h: s.listTokens},
		{method: "DELETE", path: "/api/v1/tokens/{id}", summary: "Revoke an API token", auth: authUser, status: http.StatusNoContent, h: s.revokeToken},

		// The owner's folders and messages. Another user's message answers
		// 404, like one that does not exist, so ids cannot be probed.
		{method: "GET", path: "/api/v1/folders", summary: "Your folders", auth: authUser, response: folderList{}, status: http.StatusOK, h: s.listFolders},
		{method: "GET", path: "/api/v1/messages", summary: "A page of a folder's messages, newest first", auth: authUser, query: []param{
			{"folder", "string", "the folder, INBOX by default"},
			limitParam,
			{"cursor", "string", "the previous page's next_cursor"},
		}, response: messagePage{}, status: http.StatusOK, h: s.listMessages},
		{method: "GET", path: "/api/v1/messages/{id}", summary: "A message's headers, sanitized bodies and attachment list", auth: authUser, query: []param{
			{"images", "string", "remote to keep remote image addresses in the HTML body"},
		}, response: messageView{}, status: http.StatusOK, h: s.getMessage},
		{method: "GET", path: "/api/v1/messages/{id}/raw", summary: "The message as received", auth: authUser, status: http.StatusOK, contentType: "message/rfc822",
			h: s.rate.endpoint("raw", ratelimit.Limit{PerMinute: 30, Burst: 10}, s.rawMessage)},
		{method: "GET", path: "/api/v1/messages/{id}/attachments/{n}", summary: "One attachment, decoded", auth: authUser, status: http.StatusOK, contentType: "*/*", h: s.getAttachment},
		{method: "DELETE", path: "/api/v1/messages/{id}", summary: "Delete a message", auth: authUser, status: http.StatusNoContent, h: s.deleteMessage},
		{method: "POST", path: "/api/v1/messages/{id}/move", summary: "Move a message to another of your folders", auth: authUser, request: moveRequest{}, response: messageJSON{}, status: http.StatusOK, h: s.moveMessage},

		// The domains, users, aliases and event log of the administrator's
		// own tenant. Another tenant's objects answer 404, as if they did not
		// exist.
		{method: "GET", path: "/api/v1/admin/domains", summary: "The tenant's domains, by id", auth: authAdmin, query: []param{afterParam, limitParam}, response: domainPage{}, status: http.StatusOK, h: s.listDomains},
		{method: "POST", path: "/api/v1/admin/domains", summary: "Add a domain", auth: authAdmin, request: createDomainRequest{}, response: accounts.Domain{}, status: http.StatusCreated, h: s.createDomain},
		{method: "PATCH", path: "/api/v1/admin/domains/{id}", summary: "Enable or disable a domain", auth: authAdmin, request: updateDomainRequest{}, response: accounts.Domain{}, status: http.StatusOK, h: s.updateDomain},
		{method: "DELETE", path: "/api/v1/admin/domains/{id}", summary: "Delete a domain without users", auth: authAdmin, status: http.StatusNoContent, h: s.deleteDomain},
		{method: "GET", path: "/api/v1/admin/users", summary: "The tenant's mail users, by id", auth: authAdmin, query: []param{
			{"domain", "string", "only the users of this domain"},
			afterParam, limitParam,
		}, response: userPage{}, status: http.StatusOK, h: s.listUsers},
		{method: "POST", path: "/api/v1/admin/users", summary: "Add a mail user", auth: authAdmin, request: accounts.NewUser{}, response: accounts.MailUser{}, status: http.StatusCreated, h: s.createUser},
		{method: "PATCH", path: "/api/v1/admin/users/{id}", summary: "Change a mail user; a new password ends its sessions", auth: authAdmin, request: accounts.UserChange{}, response: accounts.MailUser{}, status: http.StatusOK, h: s.updateUser},
		{method: "DELETE", path: "/api/v1/admin/users/{id}", summary: "Delete a mail user and all its mail", auth: authAdmin, status: http.StatusNoContent, h: s.deleteUser},
		{method: "GET", path: "/api/v1/admin/aliases", summary: "The tenant's aliases, by id", auth: authAdmin, query: []param{
			{"domain", "string", "only the aliases in this domain"},
			{"user", "string", "only the aliases of this user (its address or id)"},
			{"address", "string", "only the alias with this address"},
			afterParam, limitParam,
		}, response: aliasPage{}, status: http.StatusOK, h: s.listAliases},
		{method: "POST", path: "/api/v1/admin/aliases", summary: "Add an alias: an address delivering to a user, who may send from it", auth: authAdmin, request: createAliasRequest{}, response: accounts.Alias{}, status: http.StatusCreated, h: s.createAlias},
		{method: "DELETE", path: "/api/v1/admin/aliases/{id}", summary: "Delete an alias", auth: authAdmin, status: http.StatusNoContent, h: s.deleteAlias},
		{method: "GET", path: "/api/v1/admin/logs", summary: "The tenant's event log, newest first", auth: authAdmin, query: []param{
			limitParam, offsetParam,
		}, response: logPage{}, status: http.StatusOK, h: s.logs},

		// Sending. A message is queued durably before 202; the outbound
		// policy's refusals are problems carrying its text.
		{method: "POST", path: "/api/v1/send", summary: "Send a message from your address", auth: authUser, request: sendRequest{}, response: sendResponse{}, status: http.StatusAccepted,
			h: s.rate.endpoint("send", ratelimit.Limit{PerMinute: 30, Burst: 10}, s.send)},
		{method: "GET", path: "/api/v1/outbound/status", summary: "Your sending state (allowed, soft_limited or suspended)", auth: authUser, response: outboundStatus{}, status: http.StatusOK, h: s.myOutboundStatus},
		{method: "GET", path: "/api/v1/outbound/log", summary: "The delivery log of your mail, newest first", auth: authUser, query: []param{limitParam, offsetParam}, response: deliveryPage{}, status: http.StatusOK, h: s.myDeliveries},
		{method: "GET", path: "/api/v1/admin/outbound/accounts/{account}", summary: "The sending state of one of the tenant's accounts", auth: authAdmin, response: outboundStatus{}, status: http.StatusOK, h: s.accountStatus},
		{method: "POST", path: "/api/v1/admin/outbound/accounts/{account}/release", summary: "Lift an account's suspension, saying why", auth: authAdmin, request: releaseRequest{}, response: outboundStatus{}, status: http.StatusOK, h: s.releaseAccount},
		{method: "GET", path: "/api/v1/admin/outbound/log", summary: "The tenant's delivery log, newest first", auth: authAdmin, query: []param{limitParam, offsetParam}, response: deliveryPage{}, status: http.StatusOK, h: s.tenantDeliveries},

		// The agent's plugins (agent-wide, not per tenant).
		{method: "GET", path: "/api/v1/admin/plugins", summary: "The installed plugins with their circuit breakers", auth: authAdmin, response: pluginList{}, status: http.StatusOK, h: s.listPlugins},
		{method: "PATCH", path: "/api/v1/admin/plugins/{plugin}", summary: "Enable or disable a plugin", auth: authAdmin, request: pluginChange{}, response: hooks.PluginStatus{}, status: http.StatusOK, h: s.updatePlugin},
		{method: "GET", path: "/api/v1/admin/plugins/{plugin}/logs", summary: "The end of a plugin's log (what it wrote to stderr)", auth: authAdmin, query: []param{
			{"lines", "integer", "how many lines, 100 by default (1-1000)"},
		}, response: pluginLogs{}, status: http.StatusOK, h: s.pluginLogs},
		{method: "POST", path: "/api/v1/admin/plugins/{plugin}/breaker/reset", summary: "Close a plugin's circuit breaker (re-enable a plugin it took out)", auth: authAdmin, response: hooks.PluginStatus{}, status: http.StatusOK, h: s.resetBreaker},

		{method: "GET", path: "/api/v1/openapi.json", summary: "This API as an OpenAPI 3.1 document", status: http.StatusOK, contentType: "application/json", h: serveOpenAPI},
		{method: "GET", path: "/api/v1/docs", summary: "This API's reference page", status: http.StatusOK, contentType: "text/html", h: serveDocs},
	}
}

// wrap applies the route's authentication to its handler.
func (s *Server) wrap(rt route) http.HandlerFunc {
	switch rt.auth {
	case authUser:
		return s.authed(rt.h)
	case authAdmin:
		return s.adminOnly(rt.h)
	}
	return s.handle(rt.h)
}
