-- lb.haproxy: set the weight and admin state of servers in an HAProxy backend
-- through the runtime API (the `stats socket` of haproxy's global section),
-- one command per connection (HAProxy's non-interactive mode), over
-- zdm.socket.  docs/lb.md has the whole story.
--
-- Before it changes anything it reads `show servers state BACKEND` and keeps
-- the weight (srv_uweight) and admin state of each named server; undo puts
-- exactly those back.  Changes that add capacity go first (weights that rise,
-- then servers made ready), changes that take it away last (weights that
-- fall, then drain and maint), so a shift never passes through a moment with
-- less capacity than before and after.  After the commands it reads the state
-- again and fails unless every server is where it was asked to be.

local STATES = {ready = true, drain = true, maint = true}
local MAX_WEIGHT = 256		-- HAProxy's range for `set server ... weight`

-- srv_admin_state bits (HAProxy include/haproxy/server-t.h, SRV_ADMF_*)
-- Only the forced flags are what `set server ... state` sets and clears; the
-- others (inherited from a tracked server, from DNS resolution, or the
-- configuration's `disabled` marker that stays after `state ready`) are not
-- ours to restore.
local ADMF_FMAINT = 0x01	-- forced maintenance (`set server ... state maint`)
local ADMF_FDRAIN = 0x08	-- forced drain (`set server ... state drain`)

local function sock_hint(addr)
	local path = addr:match("^unix:(.*)$") or (addr:sub(1, 1) == "/" and addr) or nil
	if path then
		return string.format("is `stats socket %s level admin` in haproxy's global section, "
			.. "and is haproxy running?", path)
	end
	return string.format("is `stats socket ipv4@%s level admin` in haproxy's global section, "
		.. "and is haproxy running?", addr)
end

-- one runtime API command; its reply, or nil, message
local function command(p, cmd, read_only)
	local reply, err = zdm.socket(p.socket, cmd .. "\n", {timeout = p.request_timeout, read_only = read_only})
	if reply == nil then
		return nil, string.format("HAProxy runtime API %s: %s; %s", p.socket, err, sock_hint(p.socket))
	end
	return reply
end

local function trim(s)
	return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- `show servers state BACKEND` -> {name = {weight=, state=, admin=, op=}}, or nil, message
local function read_state(p, read_only)
	local reply, err = command(p, "show servers state " .. p.backend, read_only)
	if reply == nil then return nil, err end
	local cols, servers = nil, {}
	for line in reply:gmatch("[^\n]+") do
		if line:sub(1, 2) == "# " then
			cols = {}
			local i = 0
			for name in line:sub(3):gmatch("%S+") do
				i = i + 1
				cols[name] = i
			end
		elseif cols and line:match("^%d") then
			local f = {}
			for v in line:gmatch("%S+") do f[#f + 1] = v end
			if f[cols.be_name] == p.backend then
				local admin = tonumber(f[cols.srv_admin_state]) or 0
				local state = "ready"
				if admin & ADMF_FMAINT ~= 0 then
					state = "maint"
				elseif admin & ADMF_FDRAIN ~= 0 then
					state = "drain"
				end
				servers[f[cols.srv_name]] = {
					weight = tonumber(f[cols.srv_uweight]),
					state = state,
					admin = admin,
					op = tonumber(f[cols.srv_op_state]),
				}
			end
		end
	end
	if cols == nil or cols.srv_uweight == nil or cols.srv_admin_state == nil then
		local t = trim(reply)
		if t == "" or t == "1" then
			-- HAProxy answers a bare version line for a backend without servers
			return nil, string.format("backend '%s' has no servers (show servers state: %q)", p.backend, t)
		end
		return nil, string.format("show servers state %s: %s", p.backend, t)
	end
	return servers
end

local function sorted_keys(t)
	local k = {}
	for name in pairs(t) do k[#k + 1] = name end
	table.sort(k)
	return k
end

-- the servers the step names, each {weight=, state=} (absent: unchanged)
local function wanted(p)
	local w = {}
	for _, name in ipairs(sorted_keys(p.servers)) do
		local v = p.servers[name]
		w[name] = {weight = v.weight ~= nil and math.tointeger(tonumber(v.weight)) or nil, state = v.state}
	end
	return w
end

-- the named servers' current {weight, state}, or nil, message naming the missing one
local function pick(p, all, names)
	local out = {}
	for _, name in ipairs(names) do
		local s = all[name]
		if s == nil then
			local have = sorted_keys(all)
			return nil, string.format("no server '%s' in backend '%s' (it has: %s)", name, p.backend,
				#have > 0 and table.concat(have, ", ") or "none")
		end
		out[name] = {weight = s.weight, state = s.state}
	end
	return out
end

-- the commands that take `cur` to `want`, capacity added first, taken away last
local function commands(p, cur, want)
	local up_w, ready, down_w, down_s = {}, {}, {}, {}
	for _, name in ipairs(sorted_keys(want)) do
		local c, w = cur[name], want[name]
		local target = p.backend .. "/" .. name
		if w.weight ~= nil and w.weight ~= c.weight then
			local cmd = string.format("set server %s weight %d", target, w.weight)
			if w.weight > c.weight then up_w[#up_w + 1] = cmd else down_w[#down_w + 1] = cmd end
		end
		if w.state ~= nil and w.state ~= c.state then
			local cmd = string.format("set server %s state %s", target, w.state)
			if w.state == "ready" then ready[#ready + 1] = cmd else down_s[#down_s + 1] = cmd end
		end
	end
	local all = {}
	for _, list in ipairs({up_w, ready, down_w, down_s}) do
		for _, cmd in ipairs(list) do all[#all + 1] = cmd end
	end
	return all
end

local function describe(name, c, w)
	local parts = {}
	if w.weight ~= nil then
		parts[#parts + 1] = c and string.format("weight %s -> %d", tostring(c.weight), w.weight)
			or string.format("weight %d", w.weight)
	end
	if w.state ~= nil then
		parts[#parts + 1] = c and string.format("state %s -> %s", c.state, w.state)
			or string.format("state %s", w.state)
	end
	return name .. ": " .. table.concat(parts, ", ")
end

-- send the commands, then read back and check every server is where it should be
local function apply(p, want)
	local all, err = read_state(p)
	if all == nil then return nil, err end
	local cur
	cur, err = pick(p, all, sorted_keys(want))
	if cur == nil then return nil, err end
	local sent = {}
	for _, cmd in ipairs(commands(p, cur, want)) do
		local reply
		reply, err = command(p, cmd)
		if reply == nil then return nil, err end
		reply = trim(reply)
		if reply ~= "" then
			if reply:match("[Pp]ermission denied") then
				reply = reply .. " (the stats socket needs `level admin`)"
			end
			return nil, string.format("%s: %s", cmd, reply)
		end
		sent[#sent + 1] = cmd
		zdm.log(cmd)
	end
	all, err = read_state(p)
	if all == nil then return nil, "reading back after the change: " .. err end
	for _, name in ipairs(sorted_keys(want)) do
		local s, w = all[name], want[name]
		if s == nil or (w.weight ~= nil and s.weight ~= w.weight) or (w.state ~= nil and s.state ~= w.state) then
			return nil, string.format("%s/%s is %s after the change, not %s", p.backend, name,
				s and string.format("weight %s state %s", tostring(s.weight), s.state) or "gone",
				describe(name, nil, w))
		end
	end
	return cur, sent
end

local function check_socket(v)
	if type(v) ~= "string" or v == "" then return "must be a unix socket path or HOST:PORT" end
	if v:match("^unix:/") or v:sub(1, 1) == "/" then return nil end
	if v:match("^%[[%x:.]+%]:%d+$") or v:match("^[%w.-]+:%d+$") then return nil end
	return string.format("'%s' is neither a unix socket (unix:/path or /path) nor HOST:PORT", v)
end

return {
	description = "Set weights and states (ready/drain/maint) of HAProxy servers via the runtime API",
	params = {
		{name = "socket", type = "string", required = true,
		 doc = "runtime API: unix socket (/path or unix:/path) or HOST:PORT, at level admin"},
		{name = "backend", type = "string", required = true, doc = "the backend holding the servers"},
		{name = "servers", type = "map", required = true,
		 doc = "server name -> {weight: 0-256, state: ready|drain|maint}; what is absent stays"},
		{name = "request_timeout", type = "duration", default = "5s",
		 doc = "for each runtime API command (connect, send, reply)"},
	},
	-- earlier names, accepted with a warning (zdm-runbook(5) NAMES)
	renamed = {command_timeout = "request_timeout"},
	read_only = false,
	idempotent = true,	-- setting the same weights and states again is harmless

	validate = function(p)
		local problems = {}
		local function bad(param, msg) problems[#problems + 1] = {param = param, message = msg} end
		if not zdm.is_expr(p.socket) then
			local m = check_socket(p.socket)
			if m then bad("socket", m) end
		end
		if not zdm.is_expr(p.backend) and (type(p.backend) ~= "string" or p.backend == ""
				or p.backend:match("[%s/;]")) then
			bad("backend", "must be a backend name (no spaces, '/' or ';')")
		end
		if type(p.servers) == "table" then
			local n = 0
			for name, v in pairs(p.servers) do
				n = n + 1
				if name:match("[%s/;]") or name == "" then
					bad("servers", string.format("'%s' is not a server name (no spaces, '/' or ';')", name))
				elseif type(v) ~= "table" then
					bad("servers", string.format("%s: give {weight: N, state: ready|drain|maint}", name))
				else
					local any = false
					for k, x in pairs(v) do
						any = true
						if k == "weight" then
							local w = tonumber(x)
							if not zdm.is_expr(x) and (w == nil or math.tointeger(w) == nil
									or w < 0 or w > MAX_WEIGHT) then
								bad("servers", string.format("%s: weight must be a whole number from 0 to %d, got %s",
									name, MAX_WEIGHT, tostring(x)))
							end
						elseif k == "state" then
							if not zdm.is_expr(x) and not STATES[x] then
								bad("servers", string.format("%s: state must be ready, drain or maint, got %s",
									name, tostring(x)))
							end
						else
							bad("servers", string.format("%s: unknown field '%s' (weight, state)", name, tostring(k)))
						end
					end
					if not any then
						bad("servers", string.format("%s: give a weight, a state or both", name))
					end
				end
			end
			if n == 0 then bad("servers", "name at least one server") end
		end
		return problems
	end,

	-- reads the live state (a read-only runtime API query) to say old -> new;
	-- a server an earlier planned step sets is described from that plan
	-- (`planned`, keyed "lb.haproxy SOCKET BACKEND/SERVER")
	plan = function(p, planned)
		planned = planned or {}
		local want = wanted(p)
		local names = sorted_keys(want)
		local function key(name) return "lb.haproxy " .. p.socket .. " " .. p.backend .. "/" .. name end
		local cur, err = {}, nil
		local need_live = false
		for _, name in ipairs(names) do
			if planned[key(name)] == nil then need_live = true end
		end
		if need_live then
			local all
			all, err = read_state(p, true)
			if all then cur, err = pick(p, all, names) end
			cur = cur or {}
		end
		local lines = {}
		for _, name in ipairs(names) do
			local c = planned[key(name)] or cur[name]
			lines[#lines + 1] = describe(name, c, want[name])
			local after = {weight = want[name].weight, state = want[name].state}
			if c then
				if after.weight == nil then after.weight = c.weight end
				if after.state == nil then after.state = c.state end
			end
			planned[key(name)] = after
		end
		local s = string.format("backend %s via %s: %s", p.backend, p.socket, table.concat(lines, "; "))
		if err ~= nil then s = s .. " (now: unknown, " .. err .. ")" end
		return s
	end,

	-- --dry-run: the backend and every named server exist, and the socket is
	-- at level admin (a read-only query and `show cli level`; nothing is set)
	check = function(ctx, p)
		local want = wanted(p)
		local all, err = read_state(p, true)
		if all == nil then return nil, err end
		local cur
		cur, err = pick(p, all, sorted_keys(want))
		if cur == nil then return nil, err end
		local level = command(p, "show cli level", true)
		level = level and trim(level) or ""
		if level == "user" or level == "operator" then
			return nil, string.format("the runtime API %s is at level %s: `set server` needs `level admin`",
				p.socket, level)
		end
		return string.format("backend %s has %s; the runtime API answers%s", p.backend,
			table.concat(sorted_keys(want), ", "), level == "admin" and " at level admin" or "")
	end,

	snapshot = function(ctx, p)
		local all, err = read_state(p)
		if all == nil then return nil, err end
		local cur
		cur, err = pick(p, all, sorted_keys(p.servers))
		if cur == nil then return nil, err end
		return {socket = p.socket, backend = p.backend, servers = cur}
	end,

	run = function(ctx, p)
		local want = wanted(p)
		local cur, sent = apply(p, want)
		if cur == nil then return nil, sent end
		-- a rerun after a crash finds its own first attempt's change: what
		-- undo must put back is what was there before that
		local before = (ctx.prior and ctx.prior.servers) or cur
		local now = {}
		for name, c in pairs(before) do
			now[name] = {weight = want[name].weight or cur[name].weight, state = want[name].state or cur[name].state}
			zdm.log(describe(name, c, want[name]))
		end
		return {
			outputs = {previous = before, servers = now, commands = #sent},
			undo_data = {socket = p.socket, backend = p.backend, servers = before},
		}
	end,

	undo = function(ctx, p, u)
		if u == nil or type(u.servers) ~= "table" then
			return nil, "no undo_data was recorded for this step: check the weights and states "
				.. "with `show servers state " .. p.backend .. "` and set them by hand"
		end
		local q = {socket = u.socket or p.socket, backend = u.backend or p.backend, request_timeout = p.request_timeout}
		local cur, sent = apply(q, u.servers)
		if cur == nil then return nil, sent end
	end,
}
