-- lb.kubernetes: blue-green for a Kubernetes Service: patch its selector
-- (spec.selector) so it points at the green pods, through the API server.
-- docs/lb.md has the whole story.
--
--   GET   API/api/v1/namespaces/NS/services/NAME          read the selector
--   PATCH the same path, Content-Type application/merge-patch+json:
--         {"metadata":{"resourceVersion":"RV"},"spec":{"selector":{...}}}
--         with null for each key of the old selector the new one lacks (a
--         merge patch deletes a key only with null), and the resourceVersion
--         read by the GET, so a Service changed in between is a 409 Conflict,
--         not a silent overwrite.
-- undo patches the selector recorded before the change back the same way.
-- check (--dry-run) GETs the Service: reachable, token accepted, it exists.
--
-- In a pod the defaults are the in-cluster ones: API https://kubernetes.default.svc,
-- the service account's token, CA bundle and namespace files.  Outside, give
-- api, ca_file, namespace and token (from `secrets:`: a literal token would
-- be journaled with the parameters, so validate refuses it).

local SA = "/var/run/secrets/kubernetes.io/serviceaccount/"

local function is_blank(s) return s == nil or s == "" end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local function sorted_keys(t)
	local k = {}
	for name in pairs(t or {}) do k[#k + 1] = name end
	table.sort(k)
	return k
end

local function show(sel)
	local parts = {}
	for _, k in ipairs(sorted_keys(sel)) do parts[#parts + 1] = k .. "=" .. tostring(sel[k]) end
	return "{" .. table.concat(parts, ",") .. "}"
end

local function same(a, b)
	for k, v in pairs(a or {}) do if (b or {})[k] ~= v then return false end end
	for k in pairs(b or {}) do if (a or {})[k] == nil then return false end end
	return true
end

-- the connection settings: {url, bearer, ca_file, timeout} or nil, message
local function endpoint(p)
	local ns = p.namespace
	if is_blank(ns) then
		local s = zdm.file.read(SA .. "namespace")
		ns = s and trim(s) or "default"
	end
	local token = p.token
	if is_blank(token) then
		local s, err = zdm.file.read(p.token_file)
		if s == nil then
			return nil, string.format("no token: the token parameter is empty and %s cannot be read (%s); "
				.. "give token: ${{ secrets.NAME }}", p.token_file, err)
		end
		token = trim(s)
	end
	local ca = p.ca_file
	if ca == SA .. "ca.crt" and not zdm.file.exists(ca) then ca = nil end	-- not in a pod: system CAs
	if ca == "" then ca = nil end
	local api = p.api:gsub("/+$", "")
	return {
		url = string.format("%s/api/v1/namespaces/%s/services/%s", api, ns, p.service),
		what = string.format("Service %s/%s", ns, p.service),
		bearer = token, ca_file = ca, timeout = p.request_timeout,
	}
end

-- the API server's message for a failed request
local function api_error(e, verb, r)
	local body = zdm.json.decode(r.body)
	local msg = type(body) == "table" and body.message or trim(r.body):sub(1, 300)
	local hint = ""
	if r.status == 401 then
		hint = " (the token was refused: check token / token_file)"
	elseif r.status == 403 then
		hint = " (the service account needs get and patch on services in this namespace)"
	elseif r.status == 409 then
		hint = " (the Service changed while zdm was switching it: run the step again)"
	end
	return string.format("%s %s: HTTP %d: %s%s", verb, e.what, r.status, msg, hint)
end

-- GET the Service; its object, or nil, message
local function get(e)
	local r, err = zdm.http{url = e.url, bearer = e.bearer, ca_file = e.ca_file,
		headers = {Accept = "application/json"}, timeout = e.timeout}
	if r == nil then return nil, string.format("GET %s: %s", e.what, err) end
	if r.status ~= 200 then return nil, api_error(e, "GET", r) end
	local svc, jerr = zdm.json.decode(r.body)
	if type(svc) ~= "table" or type(svc.spec) ~= "table" then
		return nil, string.format("GET %s: not a Service object: %s", e.what, jerr or r.body:sub(1, 200))
	end
	return svc
end

-- PATCH the selector from `old` to `new` (merge patch; null removes a key)
local function patch(e, rv, old, new)
	local parts = {}
	for _, k in ipairs(sorted_keys(new)) do
		parts[#parts + 1] = zdm.json.encode(k) .. ":" .. zdm.json.encode(tostring(new[k]))
	end
	for _, k in ipairs(sorted_keys(old)) do
		if new[k] == nil then parts[#parts + 1] = zdm.json.encode(k) .. ":null" end
	end
	local body = string.format('{"metadata":{"resourceVersion":%s},"spec":{"selector":{%s}}}',
		zdm.json.encode(rv), table.concat(parts, ","))
	local r, err = zdm.http{method = "PATCH", url = e.url, bearer = e.bearer, ca_file = e.ca_file,
		headers = {["Content-Type"] = "application/merge-patch+json", Accept = "application/json"},
		body = body, timeout = e.timeout}
	if r == nil then return nil, string.format("PATCH %s: %s", e.what, err) end
	if r.status ~= 200 then return nil, api_error(e, "PATCH", r) end
	local svc = zdm.json.decode(r.body)
	local got = type(svc) == "table" and type(svc.spec) == "table" and svc.spec.selector or nil
	if not same(got, new) then
		return nil, string.format("PATCH %s: the selector is %s after the patch, not %s", e.what,
			show(got), show(new))
	end
	return svc
end

-- take the Service's selector to `want`; the selector it had, or nil, message
local function switch(p, want)
	local e, err = endpoint(p)
	if e == nil then return nil, err end
	local svc
	svc, err = get(e)
	if svc == nil then return nil, err end
	local old = svc.spec.selector or {}
	if same(old, want) then return old, e end
	local ok
	ok, err = patch(e, svc.metadata and svc.metadata.resourceVersion, old, want)
	if ok == nil then return nil, err end
	return old, e
end

local function strings(sel)
	local out = {}
	for k, v in pairs(sel or {}) do out[k] = tostring(v) end
	return out
end

return {
	description = "Point a Kubernetes Service's selector at other pods (blue-green), via the API server",
	params = {
		{name = "service", type = "string", required = true, doc = "the Service's name"},
		{name = "selector", type = "map", required = true,
		 doc = "the whole new spec.selector, label: value (keys it lacks are removed)"},
		{name = "namespace", type = "string", default = "",
		 doc = "\"\": the pod's namespace (service account file), else default"},
		{name = "api", type = "string", default = "https://kubernetes.default.svc",
		 doc = "API server URL (in a pod: the default)"},
		{name = "token", type = "string", default = "",
		 doc = "bearer token, from secrets: ${{ secrets.NAME }} (\"\": token_file)"},
		{name = "token_file", type = "path", default = SA .. "token",
		 doc = "read the token from this file when token is empty"},
		{name = "ca_file", type = "path", default = SA .. "ca.crt",
		 doc = "PEM CA bundle to verify the API server (\"\": the system's)"},
		{name = "request_timeout", type = "duration", default = "10s", doc = "for each API request"},
	},
	read_only = false,
	idempotent = true,	-- patching the same selector again is harmless

	validate = function(p)
		local problems = {}
		local function bad(param, msg) problems[#problems + 1] = {param = param, message = msg} end
		-- an RFC 1123 name: lower case alphanumerics, '-' and '.', alphanumeric at both ends
		local function dns(s)
			return type(s) == "string" and #s <= 253 and s:match("^[a-z0-9][a-z0-9.-]*$") ~= nil
				and s:match("[a-z0-9]$") ~= nil
		end
		if not zdm.is_expr(p.service) and not dns(p.service) then
			bad("service", "must be a Service name (lower case letters, digits, '-' and '.')")
		end
		if not zdm.is_expr(p.namespace) and p.namespace ~= "" and not dns(p.namespace) then
			bad("namespace", "must be a namespace name (lower case letters, digits and '-')")
		end
		if not zdm.is_expr(p.selector) then
			if type(p.selector) ~= "table" or next(p.selector) == nil then
				bad("selector", "give at least one label: value (an empty selector would select nothing)")
			else
				for k, v in pairs(p.selector) do
					if type(v) == "table" or (not zdm.is_expr(v) and tostring(v) == "") then
						bad("selector", string.format("%s: the value must be a non-empty string", k))
					end
				end
			end
		end
		if not zdm.is_expr(p.api) and not (type(p.api) == "string" and p.api:match("^https?://[^/]")) then
			bad("api", "must be an http:// or https:// URL")
		end
		-- ${{ secrets.NAME }} in the static calls, a secret's value at run time
		if not zdm.from_secrets(p.token) then
			bad("token", "must come from secrets (token: ${{ secrets.NAME }}): a literal value "
				.. "would be written to the journal with the step's parameters")
		end
		return problems
	end,

	plan = function(p)
		local want = strings(p.selector)
		if zdm.is_expr(p.token) then
			return string.format("Service %s/%s: selector -> %s (now: not read: the token comes from "
				.. "secrets, resolved only at run time)", is_blank(p.namespace) and "(pod's namespace)"
				or p.namespace, p.service, show(want))
		end
		local e, err = endpoint(p)
		local svc
		if e then svc, err = get(e) end
		local what = e and e.what or ("Service " .. p.service)
		if svc == nil then
			return string.format("%s: selector -> %s (now: unknown, %s)", what, show(want), err)
		end
		return string.format("%s: selector %s -> %s", what, show(svc.spec.selector or {}), show(want))
	end,

	-- --dry-run: the API server answers, the CA and the token are accepted and
	-- the Service exists (a GET); the PATCH itself is not tried
	check = function(ctx, p)
		local e, err = endpoint(p)
		if e == nil then return nil, err end
		local svc
		svc, err = get(e)
		if svc == nil then return nil, err end
		return string.format("%s answers to the token; selector now %s (the patch is not tried)",
			e.what, show(svc.spec.selector or {}))
	end,

	snapshot = function(ctx, p)
		local e, err = endpoint(p)
		if e == nil then return nil, err end
		local svc
		svc, err = get(e)
		if svc == nil then return nil, err end
		return {service = p.service, namespace = p.namespace, selector = svc.spec.selector or {}}
	end,

	run = function(ctx, p)
		local want = strings(p.selector)
		local old, e = switch(p, want)
		if old == nil then return nil, e end
		-- a rerun after a crash finds its own change: undo must go back to
		-- the selector from before the first attempt
		if ctx.prior and ctx.prior.selector then old = ctx.prior.selector end
		zdm.log(string.format("%s: selector %s -> %s", e.what, show(old), show(want)))
		return {
			outputs = {previous = old, selector = want},
			undo_data = {service = p.service, namespace = p.namespace, selector = old},
		}
	end,

	undo = function(ctx, p, u)
		if u == nil or type(u.selector) ~= "table" then
			return nil, "no undo_data was recorded for this step: check the Service's selector "
				.. "(kubectl get service " .. p.service .. " -o yaml) and set it by hand"
		end
		local old, e = switch(p, strings(u.selector))
		if old == nil then return nil, e end
		zdm.log(string.format("%s: selector %s -> %s", e.what, show(old), show(u.selector)))
	end,
}
