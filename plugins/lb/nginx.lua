-- lb.nginx: set the servers and weights of an nginx `upstream` block in an
-- included config file, check the whole configuration with `nginx -t`, and
-- reload.  docs/lb.md has the whole story.
--
--   1. read the file; replace the `server` statements of `upstream NAME {}`
--      (its other statements - keepalive, zone, least_conn - stay; the rest
--      of the file stays byte for byte), or add the block when it is absent;
--   2. write it atomically (zdm.file.write_atomic: readers see old or new);
--   3. `nginx -t -c CONF [-p PREFIX] [-e ERROR_LOG]`: on failure, write the
--      old bytes back (or remove a file that did not exist) and fail with
--      nginx's own message - nginx was never reloaded, traffic is untouched;
--   4. reload: with `pid_file`, HUP to the master and wait (bounded by
--      reload_timeout) until the master has a worker that was not there
--      before, i.e. the new configuration serves; without it,
--      `nginx -s reload` (asynchronous, not confirmed).
-- undo_data is the exact previous content of the file (or that it did not
-- exist); undo writes it back, checks with nginx -t and reloads the same way.

-- nginx's own weight range (ngx_http_upstream_module: weight=N, N >= 1);
-- weight 0 here means the server is written with `down`
local MAX_WEIGHT = 1000000

local function is_blank(s) return s == nil or s == "" end

-- find `upstream NAME {` outside comments; the index of `upstream`, of `{`
local function find_block(text, name)
	local init = 1
	while true do
		local s, e = text:find("upstream%s+" .. name:gsub("%p", "%%%0") .. "%s*{", init)
		if s == nil then return nil end
		local line_start = s
		while line_start > 1 and text:sub(line_start - 1, line_start - 1) ~= "\n" do
			line_start = line_start - 1
		end
		local before = text:sub(line_start, s - 1)
		local prev = s > 1 and text:sub(s - 1, s - 1) or ""
		if not before:find("#", 1, true) and (prev == "" or prev:match("[%s;}]")) then
			return s, e
		end
		init = e + 1
	end
end

-- the body between `{` (at open) and its matching `}`: the `}` index, or nil
local function match_brace(text, open)
	local depth, i, n = 0, open, #text
	while i <= n do
		local c = text:sub(i, i)
		if c == "#" then
			local nl = text:find("\n", i, true)
			i = nl or n
		elseif c == '"' or c == "'" then
			local j = i + 1
			while j <= n and text:sub(j, j) ~= c do
				if text:sub(j, j) == "\\" then j = j + 1 end
				j = j + 1
			end
			i = j
		elseif c == "{" then
			depth = depth + 1
		elseif c == "}" then
			depth = depth - 1
			if depth == 0 then return i end
		end
		i = i + 1
	end
	return nil
end

-- split a block body into items: {kind="stmt"|"comment", text=...}
local function statements(body)
	local items, cur, i, n = {}, {}, 1, #body
	local function flush()
		local s = table.concat(cur):gsub("^%s+", ""):gsub("%s+$", "")
		if s ~= "" then items[#items + 1] = {kind = "stmt", text = s} end
		cur = {}
	end
	while i <= n do
		local c = body:sub(i, i)
		if c == "#" then
			local nl = body:find("\n", i, true) or (n + 1)
			local pending = table.concat(cur):gsub("^%s+", "")
			if pending == "" then
				items[#items + 1] = {kind = "comment", text = body:sub(i, nl - 1)}
			else
				cur[#cur + 1] = " "	-- a comment inside a statement: drop it
			end
			i = nl
		elseif c == '"' or c == "'" then
			local j = i + 1
			while j <= n and body:sub(j, j) ~= c do
				if body:sub(j, j) == "\\" then j = j + 1 end
				j = j + 1
			end
			cur[#cur + 1] = body:sub(i, j)
			i = j
		elseif c == ";" then
			cur[#cur + 1] = ";"
			flush()
		else
			cur[#cur + 1] = c
		end
		i = i + 1
	end
	flush()
	return items
end

local function server_line(s)
	local w = math.tointeger(tonumber(s.weight == nil and 1 or s.weight))
	local line = "server " .. s.address
	if w == 0 then
		line = line .. " down"
	elseif w ~= 1 then
		line = line .. " weight=" .. w
	end
	if s.backup == true or s.backup == "true" then line = line .. " backup" end
	return line .. ";"
end

-- the servers `server` statements of the current block, for plan/outputs
local function current_servers(text, name)
	if text == nil then return nil end
	local s, e = find_block(text, name)
	if s == nil then return nil end
	local close = match_brace(text, e)
	if close == nil then return nil end
	local out = {}
	for _, it in ipairs(statements(text:sub(e + 1, close - 1))) do
		if it.kind == "stmt" and it.text:match("^server%s") then
			out[#out + 1] = it.text:gsub("^server%s+", ""):gsub(";$", "")
		end
	end
	return out
end

-- the new file content, or nil, message
local function render(text, p)
	local lines = {}
	for _, s in ipairs(p.servers) do lines[#lines + 1] = server_line(s) end
	local function block(kept)
		local out, placed = {"upstream " .. p.upstream .. " {"}, false
		for _, it in ipairs(kept or {}) do
			if it.kind == "servers" then
				for _, l in ipairs(lines) do out[#out + 1] = "    " .. l end
				placed = true
			else
				out[#out + 1] = "    " .. it.text
			end
		end
		if not placed then
			for _, l in ipairs(lines) do out[#out + 1] = "    " .. l end
		end
		out[#out + 1] = "}"
		return table.concat(out, "\n")
	end
	if text == nil or text:match("^%s*$") then
		return "# upstream " .. p.upstream .. ": servers set by zdm lb.nginx\n" .. block() .. "\n"
	end
	local s, e = find_block(text, p.upstream)
	if s == nil then
		local sep = text:sub(-1) == "\n" and "\n" or "\n\n"
		return text .. sep .. block() .. "\n"
	end
	local close = match_brace(text, e)
	if close == nil then
		return nil, string.format("%s: `upstream %s {` has no closing `}`", p.file, p.upstream)
	end
	local kept, placed = {}, false
	for _, it in ipairs(statements(text:sub(e + 1, close - 1))) do
		if it.kind == "stmt" and (it.text:match("^server%s") or it.text == "server;") then
			if not placed then kept[#kept + 1] = {kind = "servers"}; placed = true end
		else
			kept[#kept + 1] = it
		end
	end
	return text:sub(1, s - 1) .. block(kept) .. text:sub(close + 1)
end

local function nginx_args(p, ...)
	local a = {p.nginx}
	for _, x in ipairs({...}) do a[#a + 1] = x end
	a[#a + 1] = "-c"; a[#a + 1] = p.conf
	if not is_blank(p.prefix) then a[#a + 1] = "-p"; a[#a + 1] = p.prefix end
	if not is_blank(p.error_log) then a[#a + 1] = "-e"; a[#a + 1] = p.error_log end
	return a
end

local function nginx_test(p)
	local r, err = zdm.exec(nginx_args(p, "-t"), {timeout = p.reload_timeout})
	if r == nil then return nil, err end
	if r.code ~= 0 then
		local msg = (r.stderr .. r.stdout):gsub("%s+$", "")
		return nil, "nginx -t refused the configuration: " .. msg
	end
	return true
end

local function master_pid(p)
	local s, err = zdm.file.read(p.pid_file)
	if s == nil then return nil, string.format("reading nginx's pid file: %s", err) end
	local pid = s:match("^%s*(%d+)%s*$")
	if pid == nil then return nil, string.format("%s does not hold a pid: %q", p.pid_file, s) end
	pid = pid:gsub("^0+", "")
	if pid == "" or pid == "1" then return nil, string.format("%s holds pid %q, not an nginx master", p.pid_file, s) end
	return pid
end

-- the master's children (workers, cache processes), as a set of pid strings
local function children(pid)
	local s, err = zdm.file.read(string.format("/proc/%s/task/%s/children", pid, pid))
	if s == nil then return nil, err end
	local set = {}
	for c in s:gmatch("%d+") do set[c] = true end
	return set
end

local function reload(p)
	if is_blank(p.pid_file) then
		local r, err = zdm.exec(nginx_args(p, "-s", "reload"), {timeout = p.reload_timeout})
		if r == nil then return nil, err end
		if r.code ~= 0 then
			return nil, "nginx -s reload: " .. (r.stderr .. r.stdout):gsub("%s+$", "")
		end
		return "nginx -s reload sent (not confirmed: no pid_file)"
	end
	local pid, err = master_pid(p)
	if pid == nil then return nil, err end
	local before
	before, err = children(pid)
	if before == nil then
		return nil, string.format("nginx master %s (from %s) is not running: %s", pid, p.pid_file, err)
	end
	-- HUP with kill(2) from zdm itself (no process spawned): zdm.signal reads
	-- the pid file again and refuses a pid <= 1.  A master that changed in
	-- between (a binary upgrade) got the HUP but is not the one watched.
	local sent
	sent, err = zdm.signal(p.pid_file, "HUP")
	if sent == nil then return nil, "HUP to the nginx master: " .. err end
	if tostring(sent) ~= pid then
		return nil, string.format("nginx's pid file %s changed from %s to %d during the reload",
			p.pid_file, pid, sent)
	end
	-- nginx reloads asynchronously: the master reads the configuration,
	-- forks new workers, then tells the old ones to stop accepting (they
	-- close their listening sockets, retitle themselves "worker process is
	-- shutting down", finish their requests and exit).  The change serves
	-- all new connections once a new worker runs and every old worker has
	-- exited or is shutting down.
	local waited, step, new = 0, 10, nil
	while true do
		local now = children(pid)
		if now == nil then return nil, string.format("nginx master %s exited during the reload", pid) end
		for c in pairs(now) do
			if not before[c] then new = c end
		end
		if new then
			local old_serving = false
			for c in pairs(before) do
				local cmd = zdm.file.read(string.format("/proc/%s/cmdline", c))
				if cmd and cmd:find("worker process", 1, true) and not cmd:find("shutting down", 1, true) then
					old_serving = true
				end
			end
			if not old_serving then
				return string.format("reloaded: master %s started worker %s, old workers stopped accepting, after %d ms",
					pid, new, waited)
			end
		end
		if waited >= p.reload_timeout then break end
		zdm.sleep(step)
		waited = waited + step
		step = math.min(step * 2, 200)
	end
	if new then
		return nil, string.format("nginx master %s started worker %s, but an old worker still accepts "
			.. "connections %d ms after the reload", pid, new, p.reload_timeout)
	end
	return nil, string.format("nginx master %s started no new worker within %d ms of the reload: "
		.. "it kept the old configuration (see nginx's error log)", pid, p.reload_timeout)
end

-- put `content` (nil: no file) at path
local function restore(path, content)
	if content == nil then
		if zdm.file.exists(path) then return zdm.file.remove(path) end
		return true
	end
	return zdm.file.write_atomic(path, content)
end

-- the `include` statements of a config text, outside comments: list of
-- {s = start of the path, e = its end, path = the path as written}
local function includes(text)
	local out, init = {}, 1
	while true do
		local s, e, q, path = text:find("include%s+([\"']?)([^;%s\"']+)%1%s*;", init)
		if s == nil then return out end
		local line_start = s
		while line_start > 1 and text:sub(line_start - 1, line_start - 1) ~= "\n" do
			line_start = line_start - 1
		end
		local prev = s > 1 and text:sub(s - 1, s - 1) or ""
		if not text:sub(line_start, s - 1):find("#", 1, true) and (prev == "" or prev:match("[%s;{}]")) then
			local ps = text:find(path, s, true)
			out[#out + 1] = {s = ps, e = ps + #path - 1, path = path}
		end
		init = e + 1
	end
end

local function dirname(path)
	return path:match("^(.*)/[^/]*$") or "."
end

-- an include glob (`*`, `?`; not `[...]`) as an anchored Lua pattern, or nil
local function glob_pattern(g)
	if not g:find("[*?]") or g:find("[", 1, true) then return nil end
	local out = g:gsub("[%^%$%(%)%%%.%[%]%+%-]", "%%%0"):gsub("%*", "[^/]*"):gsub("%?", "[^/]")
	return "^" .. out .. "$"
end

-- the files nginx includes, in its order, from `nginx -T` (which also
-- tests the live configuration): a list of paths, or nil, message
local function included_files(p)
	local r, err = zdm.exec(nginx_args(p, "-T"), {timeout = p.reload_timeout})
	if r == nil then return nil, err end
	if r.code ~= 0 then
		return nil, "nginx -T refused the live configuration (before any change): " ..
			(r.stderr .. r.stdout):gsub("%s+$", "")
	end
	local out = {}
	for path in r.stdout:gmatch("\n# configuration file ([^\n]-):\n") do out[#out + 1] = path end
	return out
end

-- check(): the candidate upstream file, tested by `nginx -t` on a copy of
-- the main config whose include of FILE names the candidate instead.  Both
-- copies are dot files beside the main config (nginx resolves relative
-- includes from the main config's directory; `*` in an include glob does not
-- match dot files), removed afterwards; FILE and CONF are never written.
local function check_candidate(ctx, p)
	local kind = zdm.file.type(p.file)
	if kind ~= nil and kind ~= "file" then
		return nil, string.format("'%s' is a %s, not a regular file; the real run would refuse to replace it",
			p.file, kind)
	end
	local text, err
	if kind then
		text, err = zdm.file.read(p.file)
		if text == nil then return nil, err end
	end
	local new
	new, err = render(text, p)
	if new == nil then return nil, err end
	local conf
	conf, err = zdm.file.read(p.conf)
	if conf == nil then return nil, string.format("reading nginx's main config: %s", err) end
	local dir = dirname(p.conf)
	local tag = (ctx.run_id or "x") .. "-" .. (ctx.step_id or "x"):gsub("[^%w_.-]", "_")
	local cand = dir .. "/.zdm-check-" .. tag .. ".upstream"
	local hit, replace
	for _, inc in ipairs(includes(conf)) do
		local abs = inc.path:sub(1, 1) == "/" and inc.path or dir .. "/" .. inc.path
		if inc.path == p.file or abs == p.file then
			hit, replace = inc, cand
		elseif hit == nil then
			-- `include conf.d/*.conf;` that takes in FILE: the copy names each
			-- file the glob finds (as nginx -T lists them), the candidate for FILE
			local pat = glob_pattern(abs)
			local fabs = p.file:sub(1, 1) == "/" and p.file or dir .. "/" .. p.file
			if pat and fabs:match(pat) then
				local files
				files, err = included_files(p)
				if files == nil then return nil, err end
				local set, list = {[cand] = true}, {cand}
				for _, f in ipairs(files) do
					local fa = f:sub(1, 1) == "/" and f or dir .. "/" .. f
					if fa ~= fabs and fa:match(pat) and not set[fa] then
						set[fa] = true
						list[#list + 1] = fa
					end
				end
				-- glob(3) order: by name, the candidate where FILE sorts
				table.sort(list, function(a, b)
					return (a == cand and fabs or a) < (b == cand and fabs or b)
				end)
				hit, replace = inc, table.concat(list, ";\n    include ")
			end
		end
	end
	if hit == nil then
		-- FILE comes in through a glob or another included file: the live
		-- configuration is tested; the candidate only rendered
		local ok
		ok, err = nginx_test(p)
		if not ok then return nil, err .. " (the live configuration, before any change)" end
		return string.format("nginx -t accepts the live configuration; the new upstream %s rendered, "
			.. "but was not tested: %s includes %s neither by its path nor through a glob of its own", p.upstream, p.conf, p.file)
	end
	local copy = dir .. "/.zdm-check-" .. tag .. ".nginx.conf"
	local ok
	ok, err = zdm.file.write_atomic(cand, new)
	if not ok then return nil, string.format("writing the candidate for nginx -t: %s", err) end
	ok, err = zdm.file.write_atomic(copy, conf:sub(1, hit.s - 1) .. replace .. conf:sub(hit.e + 1))
	if not ok then
		zdm.file.remove(cand)
		return nil, string.format("writing the copy of %s for nginx -t: %s", p.conf, err)
	end
	local q = {}
	for k, v in pairs(p) do q[k] = v end
	q.conf = copy
	ok, err = nginx_test(q)
	zdm.file.remove(copy)
	zdm.file.remove(cand)
	if not ok then
		-- name the real files, not the copies
		err = err:gsub(copy:gsub("%p", "%%%0"), p.conf):gsub(cand:gsub("%p", "%%%0"), p.file .. " (as the step would write it)")
		return nil, err
	end
	return string.format("nginx -t accepts the configuration with the new upstream %s (tested on a copy)",
		p.upstream)
end

local function check_servers(v, problems)
	local function bad(msg) problems[#problems + 1] = {param = "servers", message = msg} end
	if zdm.is_expr(v) then return end
	if type(v) ~= "table" or #v == 0 then
		bad("give at least one server: - {address: HOST:PORT, weight: N}")
		return
	end
	for i, s in ipairs(v) do
		if type(s) ~= "table" then
			bad(string.format("server %d: give {address: HOST:PORT, weight: N, backup: bool}", i))
		else
			for k in pairs(s) do
				if k ~= "address" and k ~= "weight" and k ~= "backup" then
					bad(string.format("server %d: unknown field '%s' (address, weight, backup)", i, tostring(k)))
				end
			end
			local a = s.address
			if not zdm.is_expr(a) and (type(a) ~= "string" or a == "" or a:match("[%s;{}#]")) then
				bad(string.format("server %d: address must be HOST:PORT or unix:/path, without spaces or ;{}#", i))
			end
			local w = s.weight
			if w ~= nil and not zdm.is_expr(w) then
				local n = math.tointeger(tonumber(w))
				if n == nil or n < 0 or n > MAX_WEIGHT then
					bad(string.format("server %d: weight must be a whole number from 0 (down) to %d, got %s",
						i, MAX_WEIGHT, tostring(w)))
				end
			end
		end
	end
end

return {
	description = "Set the servers and weights of an nginx upstream, check with nginx -t, reload",
	params = {
		{name = "file", type = "path", required = true,
		 doc = "the included config file holding `upstream NAME { ... }`"},
		{name = "upstream", type = "string", required = true, doc = "the upstream's name"},
		{name = "servers", type = "list", required = true,
		 doc = "the upstream's servers: {address: HOST:PORT, weight: N (0 = down), backup: bool}"},
		{name = "conf", type = "path", required = true,
		 doc = "nginx's main config file (nginx -c), which includes `file`"},
		{name = "prefix", type = "path", default = "", doc = "nginx -p PREFIX (\"\": nginx's default)"},
		{name = "error_log", type = "path", default = "", doc = "nginx -e FILE for nginx -t and -s (\"\": nginx's default)"},
		{name = "nginx", type = "string", default = "nginx", doc = "the nginx binary"},
		{name = "pid_file", type = "path", default = "",
		 doc = "master's pid file: reload by HUP and confirm new workers (\"\": nginx -s reload)"},
		{name = "reload_timeout", type = "duration", default = "10s",
		 doc = "for nginx -t, and for the new workers to appear after the reload"},
	},
	read_only = false,
	idempotent = true,	-- writing the same upstream again and reloading is harmless

	validate = function(p)
		local problems = {}
		local function bad(param, msg) problems[#problems + 1] = {param = param, message = msg} end
		for _, name in ipairs({"file", "conf"}) do
			if not zdm.is_expr(p[name]) and is_blank(p[name]) then bad(name, "must be a non-empty path") end
		end
		local u = p.upstream
		if not zdm.is_expr(u) and (type(u) ~= "string" or not u:match("^[%w_.-]+$")) then
			bad("upstream", "must be an upstream name (letters, digits, _ . -)")
		end
		check_servers(p.servers, problems)
		return problems
	end,

	-- `planned` (keyed "lb.nginx FILE UPSTREAM"): what an earlier planned
	-- step of this plan leaves in the upstream, instead of the live file
	plan = function(p, planned)
		planned = planned or {}
		local key = "lb.nginx " .. p.file .. " " .. p.upstream
		local text = zdm.file.read(p.file)
		local now = current_servers(text, p.upstream)
		local new = {}
		for _, s in ipairs(p.servers) do new[#new + 1] = server_line(s):gsub("^server ", ""):gsub(";$", "") end
		if planned[key] ~= nil then
			text, now = "", planned[key]
		end
		planned[key] = new
		local was
		if text == nil then
			was = "no file yet"
		elseif now == nil then
			was = "no such upstream in the file yet"
		else
			was = "now: " .. (#now > 0 and table.concat(now, ", ") or "no servers")
		end
		return string.format("upstream %s in %s: %s (%s); then nginx -t -c %s and %s", p.upstream, p.file,
			table.concat(new, ", "), was, p.conf,
			is_blank(p.pid_file) and "nginx -s reload" or "HUP to the master in " .. p.pid_file)
	end,

	check = check_candidate,

	snapshot = function(ctx, p)
		local text = zdm.file.read(p.file)
		local kind = zdm.file.type(p.file)
		if kind ~= nil and kind ~= "file" then return nil end	-- run will refuse
		return {file = p.file, previous = text}	-- previous absent: no file before
	end,

	run = function(ctx, p)
		local kind = zdm.file.type(p.file)
		if kind ~= nil and kind ~= "file" then
			return nil, string.format("'%s' is a %s, not a regular file; refusing to replace it", p.file, kind)
		end
		local text = kind and zdm.file.read(p.file) or nil
		if kind and text == nil then
			local _, err = zdm.file.read(p.file)
			return nil, err
		end
		-- after a crash, the file may hold this step's own change: undo must
		-- bring back what was there before the first attempt
		local previous = text
		if ctx.prior then previous = ctx.prior.previous end
		local new, err = render(text, p)
		if new == nil then return nil, err end
		local was = current_servers(text, p.upstream) or {}

		local ok
		ok, err = zdm.file.write_atomic(p.file, new)
		if not ok then return nil, err end
		ok, err = nginx_test(p)
		if not ok then
			local back, berr = restore(p.file, text)
			if not back then err = err .. "; and putting the old file back failed: " .. berr end
			return nil, err
		end
		-- from here nginx may serve the new file: an undo must reload (the
		-- note survives a crash and reaches undo in ctx.notes)
		zdm.note("nginx.reload", {file = p.file})
		local how
		how, err = reload(p)
		if how == nil then return nil, err end
		zdm.log(string.format("upstream %s: %s (was %s); %s", p.upstream,
			table.concat(current_servers(new, p.upstream) or {}, ", "),
			#was > 0 and table.concat(was, ", ") or "none", how))
		return {
			outputs = {previous = was, servers = current_servers(new, p.upstream) or {}, reload = how},
			undo_data = {file = p.file, previous = previous, reloaded = true},
		}
	end,

	undo = function(ctx, p, u)
		if u == nil then
			return nil, "no undo_data was recorded for this step: restore " .. p.file .. " by hand and reload nginx"
		end
		local path = u.file or p.file
		-- nginx needs a reload only if it may have loaded another file: run
		-- got as far as its reload (undo_data from a run that succeeded, or
		-- its note for a step that failed or was left in doubt after it).  A
		-- switch that nginx -t refused, or that a crash stopped before the
		-- reload, is undone by the file alone: nginx is not touched.
		local reloaded = u.reloaded == true
		for _, n in ipairs(ctx.notes or {}) do
			if n.event == "nginx.reload" then reloaded = true end
		end
		local now = zdm.file.read(path)
		if now ~= u.previous then
			local ok, err = restore(path, u.previous)
			if not ok then return nil, err end
		end
		if not reloaded then
			zdm.log(string.format("%s is as it was; nginx was never reloaded with the change", path))
			return nil
		end
		local ok, err = nginx_test(p)
		if not ok then return nil, err .. " (the previous " .. path .. " is back in place; nginx was not reloaded)" end
		local how
		how, err = reload(p)
		if how == nil then return nil, err end
		zdm.log(string.format("%s restored; %s", path, how))
	end,
}
