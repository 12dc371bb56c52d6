-- flag.unleash: turn a feature flag on or off, or roll it out gradually, in
-- one environment of an Unleash server, through its admin API.  docs/flags.md
-- has the whole story.
--
--   GET    API/admin/projects/P/features/F                    enabled, strategies (with segments)
--   GET    .../features/F/environments/E/variants             the environment's variants
--   POST   .../features/F/environments/E/on  (and /off)       toggle the environment
--   POST   .../features/F/environments/E/strategies           add a strategy
--   PUT    .../features/F/environments/E/strategies/ID        change one
--   DELETE .../features/F/environments/E/strategies/ID        remove one
--   POST   .../features/F/environments/E/strategies/set-sort-order
--   GET    API/client/features/F  (client token)              what an application sees
--
-- run records the environment's whole state first (enabled, every strategy as
-- the admin API returns it, the environment's variants), changes it, then
-- polls the client API until an application sees the change.  undo puts the
-- recorded state back: strategies still there are updated in place (same id),
-- strategies gone are created again (the server gives them a new id), the
-- ones run added are deleted, the order and the enabled state restored; then
-- it reads the state back and fails unless everything but the ids of
-- re-created strategies is as recorded.
--
-- Unleash's admin API answers arrays such as `constraints: []`; Lua has one
-- empty table for [] and {}, so the bodies sent are put together from
-- zdm.json.encode'd parts, with the array fields written as arrays.

local function is_blank(s) return s == nil or s == "" end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

local enc = zdm.json.encode

-- a JSON array of the list `t` (nil or {} is []), each item through f
local function arr(t, f)
	local out = {}
	for i, v in ipairs(t or {}) do out[i] = (f or enc)(v) end
	return "[" .. table.concat(out, ",") .. "]"
end

-- a JSON object from `fields`, {key, json-text} pairs, in that order
local function obj(fields)
	local out = {}
	for i, kv in ipairs(fields) do out[i] = enc(kv[1]) .. ":" .. kv[2] end
	return "{" .. table.concat(out, ",") .. "}"
end

-- a constraint: every field as given, `values` always an array
local function constraint_json(c)
	local keys, fields = {}, {}
	for k in pairs(c) do if k ~= "values" then keys[#keys + 1] = k end end
	table.sort(keys)
	for _, k in ipairs(keys) do fields[#fields + 1] = {k, enc(c[k])} end
	fields[#fields + 1] = {"values", arr(c.values)}
	return obj(fields)
end

local function variant_json(v) return enc(v) end

-- what defines a strategy, without its id: the body of a create or an update
local function strategy_json(s, with_order)
	local fields = {
		{"name", enc(s.name)},
		{"title", s.title == nil and "null" or enc(s.title)},
		{"disabled", enc(s.disabled == true)},
		{"parameters", next(s.parameters or {}) and enc(s.parameters) or "{}"},
		{"constraints", arr(s.constraints, constraint_json)},
		{"segments", arr(s.segments)},
		{"variants", arr(s.variants, variant_json)},
	}
	if with_order and s.sortOrder ~= nil then fields[#fields + 1] = {"sortOrder", enc(s.sortOrder)} end
	return obj(fields)
end

-- one line for a strategy: flexibleRollout(rollout=10,stickiness=default,groupId=x; 1 constraint)
local function show_strategy(s)
	local keys, parts = {}, {}
	for k in pairs(s.parameters or {}) do keys[#keys + 1] = k end
	table.sort(keys)
	for _, k in ipairs(keys) do parts[#parts + 1] = k .. "=" .. tostring(s.parameters[k]) end
	local extra = {}
	local nc, ns = #(s.constraints or {}), #(s.segments or {})
	if nc > 0 then extra[#extra + 1] = nc .. (nc == 1 and " constraint" or " constraints") end
	if ns > 0 then extra[#extra + 1] = ns .. (ns == 1 and " segment" or " segments") end
	if s.disabled then extra[#extra + 1] = "disabled" end
	local more = #extra > 0 and ("; " .. table.concat(extra, ", ")) or ""
	return string.format("%s(%s%s)", s.name, table.concat(parts, ","), more)
end

local function show_state(st)
	local ss = {}
	for i, s in ipairs(st.strategies or {}) do ss[i] = show_strategy(s) end
	return string.format("%s, strategies [%s]", st.enabled and "on" or "off",
		#ss > 0 and table.concat(ss, ", ") or "none")
end

local function base(p) return (p.url:gsub("/+$", "")) end

local function group_id(p) return is_blank(p.group_id) and p.flag or p.group_id end

local function feature_url(p)
	return string.format("%s/api/admin/projects/%s/features/%s", base(p), p.project, p.flag)
end

local function env_url(p)
	return string.format("%s/environments/%s", feature_url(p), p.environment)
end

local function what(p)
	return string.format("flag '%s' (project %s, environment %s)", p.flag, p.project, p.environment)
end

-- Unleash's message for a failed request, and what to do about it
local function api_error(p, verb, r)
	local body = zdm.json.decode(r.body)
	local msg = type(body) == "table" and body.message or trim(r.body):sub(1, 300)
	local hint = ""
	if r.status == 401 then
		hint = " (the admin token was refused: check token)"
	elseif r.status == 403 then
		hint = " (the token may not change this flag: it needs an admin token, *:*. or one for the project)"
	elseif r.status == 404 then
		hint = string.format(" (does flag '%s' exist in project '%s', with environment '%s'?)",
			p.flag, p.project, p.environment)
	end
	return string.format("%s %s: HTTP %d: %s%s", verb, what(p), r.status, tostring(msg), hint)
end

-- one admin API request; the response, or nil, message
local function admin(p, method, url, body)
	local r, err = zdm.http{method = method, url = url, body = body, timeout = p.request_timeout,
		headers = {Authorization = p.token, Accept = "application/json",
			["Content-Type"] = body and "application/json" or nil}}
	if r == nil then
		return nil, string.format("%s %s: Unleash at %s did not answer: %s", method, what(p), base(p), err)
	end
	if r.status < 200 or r.status > 299 then return nil, api_error(p, method, r) end
	return r
end

-- the environment's state as the admin API gives it: {enabled, strategies, variants}
local function read_state(p)
	local r, err = admin(p, "GET", feature_url(p))
	if r == nil then return nil, err end
	local f = zdm.json.decode(r.body)
	if type(f) ~= "table" or type(f.environments) ~= "table" then
		return nil, string.format("GET %s: not a feature flag: %s", what(p), r.body:sub(1, 200))
	end
	local env
	for _, e in ipairs(f.environments) do if e.name == p.environment then env = e end end
	if env == nil then
		local names = {}
		for _, e in ipairs(f.environments) do names[#names + 1] = e.name end
		return nil, string.format("%s: flag '%s' has no environment '%s' (it has: %s)", what(p),
			p.flag, p.environment, table.concat(names, ", "))
	end
	local strategies = {}
	for i, s in ipairs(env.strategies or {}) do strategies[i] = s end
	table.sort(strategies, function(a, b)
		if (a.sortOrder or 0) ~= (b.sortOrder or 0) then return (a.sortOrder or 0) < (b.sortOrder or 0) end
		return tostring(a.id) < tostring(b.id)
	end)
	r, err = admin(p, "GET", env_url(p) .. "/variants")
	if r == nil then return nil, err end
	local v = zdm.json.decode(r.body)
	return {enabled = env.enabled == true, strategies = strategies,
		variants = type(v) == "table" and v.variants or {}}
end

local function toggle(p, on)
	local r, err = admin(p, "POST", env_url(p) .. (on and "/on" or "/off"))
	if r == nil then return nil, err end
	return true
end

-- the strategy `rollout` sets: the first flexibleRollout without constraints or segments
local function plain_rollout(st)
	for _, s in ipairs(st.strategies) do
		if s.name == "flexibleRollout" and #(s.constraints or {}) == 0 and #(s.segments or {}) == 0 then
			return s
		end
	end
end

local function rollout_strategy(p, old)
	local s = {}
	for k, v in pairs(old or {}) do s[k] = v end
	s.name = "flexibleRollout"
	s.disabled = false
	s.parameters = {rollout = tostring(p.percent), stickiness = p.stickiness, groupId = group_id(p)}
	return s
end

-- the state `run` leaves, for plan and check
local function wanted(p, st)
	local new = {enabled = st.enabled, strategies = {}}
	for i, s in ipairs(st.strategies) do new.strategies[i] = s end
	if p.action == "enable" then
		new.enabled = true
		if #new.strategies == 0 then
			new.strategies[1] = {name = "default strategy (added by Unleash)", parameters = {}}
		end
	elseif p.action == "disable" then
		new.enabled = false
	else
		new.enabled = true
		local old = plain_rollout(st)
		local ns = rollout_strategy(p, old)
		if old then
			for i, s in ipairs(new.strategies) do if s == old then new.strategies[i] = ns end end
		else
			new.strategies[#new.strategies + 1] = ns
		end
	end
	return new
end

local function want_text(p)
	if p.action == "enable" then return "on" end
	if p.action == "disable" then return "off" end
	return string.format("on, flexibleRollout %d%% (stickiness %s, groupId %s)", p.percent,
		p.stickiness, group_id(p))
end

-- does what the client API shows for the flag match the action?
local function client_sees(p, f)
	if p.action == "disable" then return f.enabled == false end
	if f.enabled ~= true then return false end
	if p.action == "enable" then return true end
	for _, s in ipairs(f.strategies or {}) do
		local q = s.parameters or {}
		if s.name == "flexibleRollout" and #(s.constraints or {}) == 0
			and tostring(q.rollout) == tostring(p.percent) and q.stickiness == p.stickiness
			and q.groupId == group_id(p) then
			return true
		end
	end
	return false
end

local function client_get(p)
	local url = string.format("%s/api/client/features/%s", base(p), p.flag)
	local r, err = zdm.http{url = url, timeout = p.request_timeout,
		headers = {Authorization = p.client_token, Accept = "application/json"}}
	if r == nil then
		return nil, string.format("GET %s through the client API: Unleash at %s did not answer: %s",
			what(p), base(p), err)
	end
	if r.status == 401 or r.status == 403 then
		return nil, string.format("GET %s through the client API: HTTP %d (the client token was refused: "
			.. "check client_token)", what(p), r.status)
	end
	if r.status == 404 then return false end	-- not visible (yet) to this token
	if r.status ~= 200 then
		return nil, string.format("GET %s through the client API: HTTP %d: %s", what(p), r.status,
			trim(r.body):sub(1, 200))
	end
	local f = zdm.json.decode(r.body)
	if type(f) ~= "table" then return false end
	return f
end

-- poll the client API, bounded by verify_timeout, until an application sees the change
local function verify(p)
	if is_blank(p.client_token) then
		local st, err = read_state(p)
		if st == nil then return nil, err end
		if not client_sees(p, st) then
			return nil, string.format("%s is %s after the change, not %s", what(p), show_state(st), want_text(p))
		end
		return "read back through the admin API (no client_token)"
	end
	local waited, last = 0, "nothing"
	while true do
		local f, err = client_get(p)
		if f == nil then return nil, err end
		if f and client_sees(p, f) then
			return string.format("seen through the client API after %d ms", waited)
		end
		if f then last = show_state(f) else last = "HTTP 404 (the client token does not see the flag)" end
		if waited >= p.verify_timeout then
			return nil, string.format("%s: the client API still shows %s %d ms after the change, not %s "
				.. "(is client_token for environment %s?)", what(p), last, waited, want_text(p), p.environment)
		end
		local nap = math.min(p.verify_interval, p.verify_timeout - waited)
		zdm.sleep(nap)
		waited = waited + nap
	end
end

-- put the environment back to `prior` (a read_state); nil, message on failure
local function restore(p, prior)
	local cur, err = read_state(p)
	if cur == nil then return nil, err end
	local ok
	if not prior.enabled and cur.enabled then
		ok, err = toggle(p, false)
		if not ok then return nil, err end
	end
	local by_id, keep, ids = {}, {}, {}
	for _, s in ipairs(cur.strategies) do by_id[s.id] = s end
	-- first what was there (updated in place, or created again), then remove
	-- what was not: the environment is never left without its strategies
	for i, s in ipairs(prior.strategies or {}) do
		local c = by_id[s.id]
		if c then
			keep[s.id] = true
			ids[i] = s.id
			if strategy_json(c) ~= strategy_json(s) then
				ok, err = admin(p, "PUT", env_url(p) .. "/strategies/" .. s.id, strategy_json(s, true))
				if not ok then return nil, err end
			end
		else
			local r
			r, err = admin(p, "POST", env_url(p) .. "/strategies", strategy_json(s, true))
			if r == nil then return nil, err end
			local made = zdm.json.decode(r.body)
			ids[i] = type(made) == "table" and made.id or nil
			keep[ids[i] or ""] = true
			zdm.log(string.format("%s: strategy %s was gone; created again as %s", what(p), tostring(s.id),
				tostring(ids[i])))
		end
	end
	for _, c in ipairs(cur.strategies) do
		if not keep[c.id] then
			ok, err = admin(p, "DELETE", env_url(p) .. "/strategies/" .. c.id)
			if not ok then return nil, err end
		end
	end
	local now
	now, err = read_state(p)
	if now == nil then return nil, err end
	local order, differs = {}, false
	for i, s in ipairs(prior.strategies or {}) do
		order[i] = string.format('{"id":%s,"sortOrder":%s}', enc(ids[i]), enc(s.sortOrder or 0))
		for _, n in ipairs(now.strategies) do
			if n.id == ids[i] and n.sortOrder ~= s.sortOrder then differs = true end
		end
	end
	if differs then
		ok, err = admin(p, "POST", env_url(p) .. "/strategies/set-sort-order", "[" .. table.concat(order, ",") .. "]")
		if not ok then return nil, err end
	end
	if arr(now.variants, variant_json) ~= arr(prior.variants, variant_json) then
		ok, err = admin(p, "PUT", env_url(p) .. "/variants", arr(prior.variants, variant_json))
		if not ok then return nil, err end
	end
	if prior.enabled and not now.enabled then
		ok, err = toggle(p, true)
		if not ok then return nil, err end
	end
	return true
end

-- everything but the ids: the strategies in order, enabled, the variants
local function fingerprint(st)
	local ss = {}
	for i, s in ipairs(st.strategies or {}) do ss[i] = strategy_json(s, true) end
	return string.format("enabled=%s strategies=[%s] variants=%s", tostring(st.enabled == true),
		table.concat(ss, ","), arr(st.variants, variant_json))
end

local NAME = "^[%w][%w._~-]*$"

return {
	description = "Turn a feature flag on or off, or roll it out to a percentage, on an Unleash server (admin API)",
	params = {
		{name = "url", type = "string", required = true,
		 doc = "Unleash's base URL, e.g. https://unleash.example.com (the API is below /api)"},
		{name = "flag", type = "string", required = true, doc = "the feature flag's name"},
		{name = "environment", type = "string", required = true, doc = "the environment to change, e.g. production"},
		{name = "action", type = "string", required = true, doc = "enable | disable | rollout"},
		{name = "project", type = "string", default = "default", doc = "the flag's project"},
		{name = "percent", type = "int", doc = "rollout: 0 to 100, the share of the stickiness key that gets the flag"},
		{name = "stickiness", type = "string", default = "default",
		 doc = "rollout: the context field that buckets users (default, userId, sessionId, random)"},
		{name = "group_id", type = "string", default = "",
		 doc = "rollout: groupId of the bucketing (\"\": the flag's name)"},
		{name = "token", type = "string", required = true,
		 doc = "admin API token, from secrets: ${{ secrets.NAME }}"},
		{name = "client_token", type = "string", default = "",
		 doc = "client (backend) API token for the environment, from secrets: the change is verified "
			.. "as an application sees it (\"\": read back through the admin API)"},
		{name = "verify_timeout", type = "duration", default = "30s",
		 doc = "how long the client API may take to show the change"},
		{name = "verify_interval", type = "duration", default = "250ms", doc = "between two client API polls"},
		{name = "request_timeout", type = "duration", default = "10s", doc = "for each API request"},
	},
	read_only = false,
	idempotent = true,	-- setting the same state again is harmless; undo_data comes from the snapshot

	validate = function(p)
		local problems = {}
		local function bad(param, msg) problems[#problems + 1] = {param = param, message = msg} end
		if not zdm.is_expr(p.url) and not (type(p.url) == "string" and p.url:match("^https?://[^/]")) then
			bad("url", "must be an http:// or https:// URL")
		end
		for _, k in ipairs({"flag", "project", "environment"}) do
			local v = p[k]
			if not zdm.is_expr(v) and not (type(v) == "string" and #v <= 100 and v:match(NAME)) then
				bad(k, "must be a name of letters, digits, '.', '_', '~' and '-'")
			end
		end
		local a = p.action
		if not zdm.is_expr(a) and a ~= "enable" and a ~= "disable" and a ~= "rollout" then
			bad("action", "must be enable, disable or rollout")
		end
		if a == "rollout" then
			if p.percent == nil then
				bad("action", "rollout needs percent: 0 to 100")
			elseif not zdm.is_expr(p.percent) and (math.type(p.percent) ~= "integer"
				or p.percent < 0 or p.percent > 100) then
				bad("percent", "must be from 0 to 100")
			end
		elseif not zdm.is_expr(a) and p.percent ~= nil then
			bad("percent", "is only for action: rollout")
		end
		if not zdm.from_secrets(p.token) or is_blank(p.token) then
			bad("token", "must come from secrets (token: ${{ secrets.NAME }}): a literal value "
				.. "would be written to the journal with the step's parameters")
		end
		if not zdm.from_secrets(p.client_token) then
			bad("client_token", "must come from secrets (client_token: ${{ secrets.NAME }}): a literal "
				.. "value would be written to the journal with the step's parameters")
		end
		if not zdm.is_expr(p.verify_interval) and p.verify_interval < 1 then
			bad("verify_interval", "must be at least 1ms")
		end
		return problems
	end,

	plan = function(p, planned)
		local key = string.format("flag.unleash %s %s/%s/%s", base(p), p.project, p.environment, p.flag)
		local now = planned[key]
		local new = want_text(p)
		planned[key] = new
		if now ~= nil then return string.format("%s: %s -> %s", what(p), now, new) end
		if zdm.is_expr(p.token) or not zdm.is_secret(p.token) then
			return string.format("%s: -> %s (now: not read: the token comes from secrets, resolved only "
				.. "at run time; --dry-run reads it)", what(p), new)
		end
		local st, err = read_state(p)
		if st == nil then return string.format("%s: -> %s (now: unknown, %s)", what(p), new, err) end
		return string.format("%s: %s -> %s", what(p), show_state(st), show_state(wanted(p, st)))
	end,

	-- --dry-run: the server answers, the admin token is accepted, the flag
	-- and its environment exist (and the client token, when given); nothing changes
	check = function(ctx, p)
		local st, err = read_state(p)
		if st == nil then return nil, err end
		if not is_blank(p.client_token) then
			local f
			f, err = client_get(p)
			if f == nil then return nil, err end
		end
		return string.format("%s: %s -> %s (nothing changed)", what(p), show_state(st),
			show_state(wanted(p, st)))
	end,

	snapshot = function(ctx, p)
		local st, err = read_state(p)
		if st == nil then return nil, err end
		return {project = p.project, environment = p.environment, flag = p.flag, enabled = st.enabled,
			strategies = st.strategies, variants = st.variants}
	end,

	run = function(ctx, p)
		local st, err = read_state(p)
		if st == nil then return nil, err end
		-- a rerun after a crash finds its own change: undo must go back to
		-- the state from before the first attempt
		local prior = ctx.prior or {project = p.project, environment = p.environment, flag = p.flag,
			enabled = st.enabled, strategies = st.strategies, variants = st.variants}
		local ok
		if p.action == "enable" then
			if not st.enabled then ok, err = toggle(p, true) else ok = true end
		elseif p.action == "disable" then
			if st.enabled then ok, err = toggle(p, false) else ok = true end
		else
			-- the strategy first, then the environment on: turning on an
			-- environment without strategies would add Unleash's default (100%)
			local old = plain_rollout(st)
			local body = strategy_json(rollout_strategy(p, old), old ~= nil)
			if old then
				if strategy_json(old) ~= strategy_json(rollout_strategy(p, old)) then
					ok, err = admin(p, "PUT", env_url(p) .. "/strategies/" .. old.id, body)
				else
					ok = true
				end
			else
				ok, err = admin(p, "POST", env_url(p) .. "/strategies", body)
			end
			if ok and not st.enabled then ok, err = toggle(p, true) end
		end
		if not ok then return nil, err end
		local seen
		seen, err = verify(p)
		if seen == nil then return nil, err end
		zdm.log(string.format("%s: %s -> %s; %s", what(p), show_state(prior), want_text(p), seen))
		return {
			outputs = {enabled = p.action ~= "disable", percent = p.action == "rollout" and p.percent or nil,
				previous_enabled = prior.enabled},
			undo_data = prior,
		}
	end,

	undo = function(ctx, p, u)
		if u == nil or type(u.strategies) ~= "table" then
			return nil, string.format("no undo_data was recorded for this step: check %s in Unleash "
				.. "and set it back by hand", what(p))
		end
		local ok, err = restore(p, u)
		if not ok then return nil, err end
		local now
		now, err = read_state(p)
		if now == nil then return nil, err end
		if fingerprint(now) ~= fingerprint(u) then
			return nil, string.format("%s is %s after the undo, not the recorded %s", what(p),
				show_state(now), show_state(u))
		end
		zdm.log(string.format("%s: back to %s", what(p), show_state(u)))
	end,
}
