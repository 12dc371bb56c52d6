-- db.pgbouncer: hold, move and release a database's clients at PgBouncer,
-- through its admin console (dbname=pgbouncer, a user in admin_users).
--
--   action: pause     PAUSE db: wait for the transactions in flight (at most
--                     drain_timeout; past it RESUME db and fail).  Undo: RESUME.
--   action: resume    RESUME db.  Undo: none (a rollback never pauses clients
--                     again on its own; see docs/postgres.md).
--   action: switch    rewrite db's entry in the [databases] section of the
--                     config file (host, port, dbname; atomic: temp file +
--                     rename), RELOAD, verify with SHOW DATABASES.  Undo: the
--                     file's old bytes back, RELOAD, verify.
--   action: cutover   pause, read the source's WAL position, wait until the
--                     target's subscription has replayed up to it, copy the
--                     sequences, switch, resume: one step, the pause as short
--                     as it can be (its length is the output pause_ms).
--                     Undo: pause, switch back, resume.
--
-- The admin console speaks only the simple query protocol: every command
-- goes through db:query(sql, nil, {simple = true}).
--
-- A pause is journaled before PAUSE is sent (pgbouncer.pausing) and its end
-- after RESUME (pgbouncer.resumed).  A pause that never ended (zdm was
-- killed while clients waited) is ended by the next attempt of the step
-- (zdm resume reruns it: it is idempotent) or by its undo (zdm rollback).
-- RESUME of a database that is not paused is an error in PgBouncer
-- ("database X is not paused"): taken as done.

local pg = zdm.lib("db._pg")		-- conninfo/secret checks, connect, sequences, replay

local RESERVE_MS = 2000	-- kept before the step's deadline to resume clients

local ACTIONS = {pause = true, resume = true, switch = true, cutover = true}
-- params without a default that only some actions read
local ONLY_FOR = {
	config = {switch = true, cutover = true},
	host = {switch = true, cutover = true},
	source = {cutover = true},
	target = {cutover = true},
	subscription = {cutover = true},
}

-- ---- values ----------------------------------------------------------------

local function ms(v) return pg.ms(v) end

-- the key=value pairs of a libpq-style connection string as PgBouncer reads
-- a [databases] entry: keys of letters, digits and _, values bare or in
-- single quotes ('' is a quote).  Returns {{key, value, raw}, ...} or nil, why.
local function parse_pairs(v)
	local out, i = {}, 1
	while true do
		i = v:find("[^%s]", i)
		if i == nil then break end
		local start = i
		local key = v:match("^[%w_]+", i)
		if key == nil then
			return nil, string.format("cannot read %q", v:sub(i, i + 30))
		end
		i = v:find("[^%s]", i + #key)
		if i == nil or v:sub(i, i) ~= "=" then
			return nil, string.format("no '=' after %q", key)
		end
		i = v:find("[^%s]", i + 1) or (#v + 1)
		local value
		if v:sub(i, i) == "'" then
			local buf = {}
			i = i + 1
			while true do
				local c = v:sub(i, i)
				if c == "" then return nil, string.format("the value of %q has no closing quote", key) end
				if c == "'" then
					if v:sub(i + 1, i + 1) ~= "'" then i = i + 1 break end
					i = i + 1
				end
				buf[#buf + 1] = c
				i = i + 1
			end
			value = table.concat(buf)
		else
			local j = v:find("%s", i) or (#v + 1)
			value = v:sub(i, j - 1)
			i = j
		end
		out[#out + 1] = {key = key:lower(), value = value, raw = v:sub(start, i - 1)}
	end
	return out
end

local function quote_value(v)
	if v ~= "" and not v:find("[%s']") then return v end
	return "'" .. v:gsub("'", "''") .. "'"
end

local function pair_value(pairs_, key)
	for _, kv in ipairs(pairs_) do
		if kv.key == key then return kv.value end
	end
	return nil
end

-- the database a conninfo or URI names (validate: the admin console's)
local function conninfo_dbname(c)
	local path = c:match("^postgres[%w]*://[^/?]*/([^?]*)")
	if path ~= nil then return path ~= "" and path or nil end
	if c:match("^postgres[%w]*://") then return nil end
	local kv = parse_pairs(c)
	return kv and pair_value(kv, "dbname")
end

-- "host=H port=P dbname=D" of a SHOW DATABASES row or an entry
local function where(t)
	return string.format("host=%s port=%s dbname=%s", t.host ~= nil and t.host ~= "" and t.host or "(socket)",
		tostring(t.port or "?"), tostring(t.database or "?"))
end

-- ---- the config file -------------------------------------------------------

-- Find database `name`'s entry in the [databases] section(s) of `text`.
-- Returns {line, vstart, vend (the value's byte range), pairs}, or nil, why
-- (no such entry, several, unreadable); refuses a [databases] section that
-- holds a password (the file's bytes are journaled for the undo).
local function find_entry(text, name, path)
	local section, hits, includes = nil, {}, false
	local pos, n = 1, 0
	while pos <= #text do
		local e = text:find("\n", pos, true)
		local stop = e and e - 1 or #text
		local line = text:sub(pos, stop)
		if line:sub(-1) == "\r" then
			line = line:sub(1, -2)
			stop = stop - 1
		end
		n = n + 1
		local lead = line:find("[^%s]")
		local first = lead and line:sub(lead, lead) or ""
		if first == "[" then
			section = (line:match("^%s*%[%s*([^%]]-)%s*%]") or ""):lower()
		elseif line:match("^%s*%%include") then
			includes = true
		elseif section == "databases" and first ~= "" and first ~= ";" and first ~= "#" then
			local key, eq
			if first == '"' then
				key, eq = line:match('^%s*"([^"]*)"%s*()=')
			else
				key, eq = line:match("^%s*([^=]-)%s*()=")
			end
			if key ~= nil then
				local vs = line:find("[^%s]", eq + 1) or (#line + 1)
				local value = line:sub(vs):gsub("%s+$", "")
				local kv, why = parse_pairs(value)
				if kv and pair_value(kv, "password") ~= nil then
					return nil, string.format("%s line %d: the entry of database '%s' holds a password; zdm " ..
						"journals the file's old bytes for its undo, so it refuses a file with passwords " ..
						"in [databases] (keep them in auth_file)", path, n, key)
				end
				if key == name then
					if kv == nil then
						return nil, string.format("%s line %d: cannot read the entry of database '%s': %s",
							path, n, name, why)
					end
					hits[#hits + 1] = {line = n, vstart = pos + vs - 1, vend = pos + vs - 1 + #value - 1,
						pairs = kv}
				end
			end
		end
		pos = (e or #text) + 1
	end
	if #hits == 0 then
		return nil, string.format("%s has no entry for database '%s' in [databases]%s", path, name,
			includes and " (zdm does not follow %include: the entry must be in this file)" or "")
	end
	if #hits > 1 then
		local lines = {}
		for _, h in ipairs(hits) do lines[#lines + 1] = tostring(h.line) end
		return nil, string.format("%s has %d entries for database '%s' (lines %s): keep one", path, #hits,
			name, table.concat(lines, ", "))
	end
	return hits[1]
end

-- the new entry: host, port and dbname set, every other key kept as written
local function new_value(entry, host, port, dbname)
	local want = {host = host, port = tostring(port), dbname = dbname}
	local out, done = {}, {}
	for _, kv in ipairs(entry.pairs) do
		if want[kv.key] ~= nil and kv.key ~= "" then
			if not done[kv.key] then
				out[#out + 1] = kv.key .. "=" .. quote_value(want[kv.key])
				done[kv.key] = true
			end
		else
			out[#out + 1] = kv.raw
		end
	end
	for _, k in ipairs({"host", "port", "dbname"}) do
		if want[k] ~= nil and not done[k] then out[#out + 1] = k .. "=" .. quote_value(want[k]) end
	end
	return table.concat(out, " ")
end

-- What a switch does to the file: {old (bytes), new (bytes), entry, to =
-- {host, port, database}, line, value}, or nil, why.  `old` is the file as
-- it is (a rerun replaces it with the first attempt's, ctx.prior.old).
local function plan_switch(p, text)
	local entry, err = find_entry(text, p.database, p.config)
	if not entry then return nil, err end
	local dbname = p.dbname ~= "" and p.dbname or pair_value(entry.pairs, "dbname") or p.database
	local value = new_value(entry, p.host, p.port, p.dbname ~= "" and p.dbname or nil)
	local new = text:sub(1, entry.vstart - 1) .. value .. text:sub(entry.vend + 1)
	return {old = text, new = new, entry = entry, line = entry.line, value = value,
		to = {host = p.host, port = tostring(p.port), database = dbname}}
end

local function read_config(path)
	local text, err = zdm.file.read(path)
	if not text then return nil, string.format("config %s: %s", path, err) end
	return text
end

-- ---- the admin console -----------------------------------------------------

local function admin_connect(ctx, p)
	local db, err = zdm.pg.connect(p.admin, {
		password = p.admin_password ~= "" and p.admin_password or nil,
		connect_timeout = p.connect_timeout,
		application_name = "zdm " .. tostring(ctx.step_id),
	})
	if not db then
		local kv = parse_pairs(p.admin)
		local user = kv and pair_value(kv, "user") or p.admin:match("^postgres[%w]*://([^@/:]+)@")
		return nil, string.format("PgBouncer admin console%s: ", user and (" (user " .. user .. ")") or "") ..
			tostring(err) ..
			" (check admin, admin_password, and that the user is in PgBouncer's admin_users)"
	end
	return db
end

-- one admin command; `timeout` (ms) optional
local function admin(db, sql, timeout)
	return db:query(sql, nil, {simple = true, timeout = timeout})
end

-- SHOW DATABASES' row of `name`, or nil, message naming what PgBouncer has
local function show(db, name)
	local r, err = admin(db, "SHOW DATABASES")
	if not r then return nil, "SHOW DATABASES: " .. err end
	local names = {}
	for _, row in ipairs(r.rows) do
		if row.name == name then return row end
		if row.name ~= "pgbouncer" then names[#names + 1] = row.name end
	end
	table.sort(names)
	return nil, string.format("PgBouncer has no database '%s' (SHOW DATABASES lists: %s)", name,
		#names > 0 and table.concat(names, ", ") or "none")
end

-- PgBouncer's admin commands take a database name as an identifier
local function ident(name)
	if name:match("^[a-z0-9_]+$") then return name end
	return '"' .. name:gsub('"', '""') .. '"'
end

-- deadline-aware bound for a wait: at most `want` ms, and never past the
-- step's deadline less the reserve needed to resume
local function bounded(ctx, want)
	if ctx.deadline == nil then return want end
	local left = ctx.deadline - RESERVE_MS - zdm.now()
	if left < 1 then left = 1 end
	return math.min(want, left)
end

-- the databases an earlier attempt paused without a recorded resume
local function stale_pauses(ctx)
	local paused, order = {}, {}
	for _, n in ipairs(ctx.notes or {}) do
		local d = type(n.data) == "table" and n.data.database or nil
		if d ~= nil and n.event == "pgbouncer.pausing" then
			if paused[d] == nil then order[#order + 1] = d end
			paused[d] = true
		elseif d ~= nil and n.event == "pgbouncer.resumed" then
			paused[d] = false
		end
	end
	local out = {}
	for _, d in ipairs(order) do
		if paused[d] then out[#out + 1] = d end
	end
	return out
end

-- RESUME `name` (on `db`, or a fresh connection when it is nil); a database
-- that is not paused counts as resumed.  Journals pgbouncer.resumed.
-- Returns true, was_paused, or nil, message.
local function resume(ctx, p, db, name, why)
	local own = false
	if db == nil then
		local err
		db, err = admin_connect(ctx, p)
		if not db then return nil, err end
		own = true
	end
	local r, err = admin(db, "RESUME " .. ident(name))
	if own then db:close() end
	local was = true
	if not r then
		if not tostring(err):find("is not paused", 1, true) then
			return nil, string.format("RESUME %s: %s: its clients may still be paused: run RESUME %s " ..
				"on PgBouncer's admin console", name, err, name)
		end
		was = false
	end
	zdm.note("pgbouncer.resumed", {database = name, was_paused = was, why = why})
	return true, was
end

-- end the pauses an earlier attempt of this step left (zdm was killed
-- while clients waited)
local function recover(ctx, p)
	for _, d in ipairs(stale_pauses(ctx)) do
		local ok, err = resume(ctx, p, nil, d, "an earlier attempt left it paused")
		if not ok then return nil, err end
		zdm.log(string.format("resumed %s: an earlier attempt of this step had paused it " ..
			"and never resumed it", d))
	end
	return true
end

-- PAUSE `name` on `db`, bounded by drain_timeout: past it (or any error),
-- RESUME and fail.  Returns drain ms, or nil, message (the clients are
-- resumed then, unless the message says otherwise).
local function pause(ctx, p, db, name)
	local limit = bounded(ctx, p.drain_timeout)
	zdm.note("pgbouncer.pausing", {database = name, drain_timeout_ms = limit})
	local t0 = zdm.now()
	local r, err = admin(db, "PAUSE " .. ident(name), limit)
	local took = zdm.now() - t0
	if r then
		zdm.note("pgbouncer.paused", {database = name, drain_ms = took})
		return took
	end
	local why
	if tostring(err):find("^timed out") then
		why = string.format("PAUSE %s did not complete within drain_timeout %s: a transaction through " ..
			"PgBouncer stayed open (see SHOW SERVERS, or pg_stat_activity on the server)", name, ms(limit))
	else
		why = string.format("PAUSE %s: %s", name, err)
	end
	-- the timed-out connection is closed; RESUME on a new one
	local ok, rerr = resume(ctx, p, nil, name, "pause failed")
	if not ok then return nil, why .. "; and then " .. rerr end
	return nil, why .. "; resumed " .. name
end

-- RELOAD, then SHOW DATABASES must show `want` ({host, port, database})
local function reload_and_verify(db, p, want)
	local r, err = admin(db, "RELOAD")
	if not r then return nil, "RELOAD: " .. err end
	local row
	row, err = show(db, p.database)
	if not row then return nil, "after RELOAD: " .. err end
	if (row.host or "") ~= want.host or row.port ~= tostring(want.port) or row.database ~= want.database then
		return nil, string.format("after RELOAD PgBouncer shows %s at %s, not %s: is %s the file this " ..
			"PgBouncer reads?", p.database, where(row), where(want), p.config)
	end
	return true
end

-- write `bytes` to the config file atomically unless it holds them already;
-- returns true, written
local function write_config(path, bytes)
	local cur = zdm.file.read(path)
	if cur == bytes then return true, false end
	local ok, err = zdm.file.write_atomic(path, bytes)
	if not ok then return nil, string.format("writing %s: %s", path, err) end
	return true, true
end

-- the switch: new bytes, RELOAD, verify; on failure the old bytes go back
-- (and RELOAD).  Returns true, or nil, message.
local function do_switch(db, p, sw)
	local ok, err = write_config(p.config, sw.new)
	if not ok then return nil, err end
	ok, err = reload_and_verify(db, p, sw.to)
	if ok then return true end
	local back, berr = write_config(p.config, sw.old)
	if back then
		admin(db, "RELOAD")	-- whether or not written: PgBouncer may have read the new one
		return nil, err .. "; the old config is back (RELOADed)"
	end
	return nil, err .. "; and putting the old config back failed: " .. berr
end

-- ---- the source and the target (cutover) ----------------------------------

local function db_connect(ctx, which, conninfo, pw, p)
	local db, err = pg.connect(conninfo, {password = pw, connect_timeout = p.connect_timeout,
		application_name = "zdm " .. tostring(ctx.step_id)})
	if not db then return nil, which .. ": " .. err end
	return db
end

-- everything the cutover needs before the pause: connections, the
-- subscription and its slot, the sequences.  Returns a table, or nil, why.
local function cutover_prepare(ctx, p)
	local c = {}
	local err
	c.src, err = db_connect(ctx, "source", p.source, p.source_password, p)
	if not c.src then return nil, err end
	c.dst, err = db_connect(ctx, "target", p.target, p.target_password, p)
	if not c.dst then c.src:close() return nil, err end
	local function fail(msg) c.src:close() c.dst:close() return nil, msg end
	local r
	r, err = c.dst:query("SELECT oid, subslotname, subenabled FROM pg_subscription WHERE subname = $1 " ..
		"AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())", {p.subscription})
	if not r then return fail("target: " .. err) end
	local sub = r.rows[1]
	if sub == nil then
		return fail(string.format("the target has no subscription '%s' in its database (the one " ..
			"db.postgres_sync made: steps.<id>.outputs.subscription)", p.subscription))
	end
	if sub.subenabled ~= "t" then
		return fail(string.format("subscription '%s' on the target is disabled: it replicates nothing",
			p.subscription))
	end
	if sub.subslotname == nil then
		return fail(string.format("subscription '%s' on the target has no replication slot", p.subscription))
	end
	c.subid, c.slot = sub.oid, sub.subslotname
	r, err = c.src:query("SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = $1", {c.slot})
	if not r then return fail("source: " .. err) end
	if r.rows[1].n == "0" then
		return fail(string.format("the source has no replication slot '%s' (subscription '%s' on the " ..
			"target): is source the server it replicates from?", c.slot, p.subscription))
	end
	if p.copy_sequences then
		local s_seqs, d_seqs
		s_seqs, err = pg.read_sequences(c.src)
		if not s_seqs then return fail("source: " .. err) end
		d_seqs, err = pg.read_sequences(c.dst)
		if not d_seqs then return fail("target: " .. err) end
		c.seq_names, err = pg.choose_sequences(c.src, s_seqs, p.sequences)
		if not c.seq_names then return fail(err) end
		local missing = pg.lacking_sequences(c.seq_names, d_seqs)
		if #missing > 0 then
			return fail("the target lacks sequence(s) " .. table.concat(missing, ", ") ..
				": create them first (db.postgres_sync copy_schema does)")
		end
	end
	c.close = function() c.src:close() c.dst:close() end
	return c
end

-- wait until the subscription has applied the source's WAL up to `lsn`
local function catch_up(ctx, p, c, lsn)
	local limit = bounded(ctx, p.catchup_timeout)
	local t0 = zdm.now()
	while true do
		local ok, err = pg.applied(c.src, c.dst, c.slot, c.subid, lsn)
		if ok == nil then return nil, err end
		if ok then return zdm.now() - t0 end
		if zdm.now() - t0 >= limit then
			return nil, string.format("subscription '%s' did not replay the source up to %s within " ..
				"catchup_timeout %s", p.subscription, lsn, ms(limit))
		end
		zdm.sleep(10)
	end
end

-- ---- the step --------------------------------------------------------------

local function check_action(p)
	return ACTIONS[p.action] and p.action or nil
end

return {
	description = "Pause, resume or switch a database at PgBouncer (admin console), or cut over to a replicated target",
	params = {
		{name = "action", type = "string", required = true,
		 doc = "pause | resume | switch | cutover"},
		{name = "admin", type = "string", required = true,
		 doc = "libpq conninfo or URI of PgBouncer's admin console: dbname=pgbouncer, a user in admin_users"},
		{name = "admin_password", type = "string", default = "",
		 doc = "the admin user's password: ${{ secrets.NAME }}"},
		{name = "database", type = "string", required = true,
		 doc = "the database's name in PgBouncer ([databases], SHOW DATABASES)"},
		{name = "drain_timeout", type = "duration", default = "10s",
		 doc = "pause, cutover: longest wait for in-flight transactions; past it RESUME and fail"},
		{name = "config", type = "path",
		 doc = "switch, cutover: the PgBouncer config file holding the database's [databases] entry"},
		{name = "host", type = "string",
		 doc = "switch, cutover: the new server's host, as PgBouncer reaches it"},
		{name = "port", type = "int", default = 5432,
		 doc = "switch, cutover: the new server's port"},
		{name = "dbname", type = "string", default = "",
		 doc = "switch, cutover: the new server's database; default: the entry's dbname as it is"},
		{name = "source", type = "string",
		 doc = "cutover: libpq conninfo or URI of the source database (zdm reads its WAL position)"},
		{name = "target", type = "string",
		 doc = "cutover: libpq conninfo or URI of the target database, where the subscription is"},
		{name = "source_password", type = "string", default = "", doc = "cutover: from secrets"},
		{name = "target_password", type = "string", default = "", doc = "cutover: from secrets"},
		{name = "subscription", type = "string",
		 doc = "cutover: the target's subscription from the source (db.postgres_sync's outputs.subscription)"},
		{name = "catchup_timeout", type = "duration", default = "10s",
		 doc = "cutover: longest wait, paused, for the subscription to replay the source's last write"},
		{name = "copy_sequences", type = "bool", default = true,
		 doc = "cutover: set the target's sequences to the source's values + margin while paused"},
		{name = "sequences", type = "list", default = {},
		 doc = "cutover: [schema.]name of each sequence; default: every sequence of the source database"},
		{name = "margin", type = "int", default = 1000,
		 doc = "cutover: added to each source sequence value (steps of its increment)"},
		{name = "connect_timeout", type = "duration", default = "10s",
		 doc = "longest wait to connect to PgBouncer or a server"},
	},
	read_only = false,
	idempotent = true,	-- a rerun ends its earlier attempt's pause first

	validate = function(p)
		local problems = {}
		local function bad(name, message) problems[#problems + 1] = {param = name, message = message} end
		local action = p.action
		if not zdm.is_expr(action) and not ACTIONS[action] then
			bad("action", "must be pause, resume, switch or cutover")
			action = nil
		elseif zdm.is_expr(action) then
			action = nil
		end
		pg.check_conninfo(problems, p, "admin")
		if type(p.admin) == "string" and not zdm.is_expr(p.admin) and not pg.has_password(p.admin) and
			not p.admin:match("^%s*$") and conninfo_dbname(p.admin) ~= "pgbouncer" then
			bad("admin", "must name PgBouncer's admin console: dbname=pgbouncer")
		end
		pg.check_secret(problems, p, "admin_password")
		if type(p.database) == "string" and not zdm.is_expr(p.database) then
			if p.database == "" or p.database:find("[%c]") then
				bad("database", "must be the database's name in PgBouncer")
			elseif p.database == "pgbouncer" then
				bad("database", "'pgbouncer' is the admin console, not a database zdm can pause or switch")
			end
		end
		if action ~= nil then
			for name, actions in pairs(ONLY_FOR) do
				if p[name] ~= nil and not actions[action] then
					local list = {}
					for a in pairs(actions) do list[#list + 1] = a end
					table.sort(list)
					bad(name, string.format("is only read by action %s, not %s", table.concat(list, " and "),
						action))
				end
			end
			if action == "switch" or action == "cutover" then
				if p.config == nil or p.config == "" then
					bad("config", "action " .. action .. " needs the PgBouncer config file to rewrite")
				end
				if p.host == nil or p.host == "" then
					bad("host", "action " .. action .. " needs the new server's host")
				end
			end
			if action == "cutover" then
				for _, k in ipairs({"source", "target", "subscription"}) do
					if p[k] == nil or p[k] == "" then bad(k, "action cutover needs it") end
				end
			end
		end
		if type(p.port) == "number" and (p.port < 1 or p.port > 65535) then
			bad("port", "must be from 1 to 65535")
		end
		if type(p.dbname) == "string" and not zdm.is_expr(p.dbname) and p.dbname:find("[%c]") then
			bad("dbname", "must be a database name")
		end
		pg.check_conninfo(problems, p, "source")
		pg.check_conninfo(problems, p, "target")
		pg.check_secret(problems, p, "source_password")
		pg.check_secret(problems, p, "target_password")
		if type(p.subscription) == "string" and not zdm.is_expr(p.subscription) and p.subscription ~= "" and
			not p.subscription:match("^[a-z_][a-z0-9_$]*$") then
			bad("subscription", "must be a lowercase SQL name ([a-z_][a-z0-9_]*)")
		end
		local function range(name, lo, hi)
			local v = p[name]
			if type(v) == "number" and (v < lo or v > hi) then
				bad(name, string.format("must be from %s to %s", ms(lo), ms(hi)))
			end
		end
		range("drain_timeout", 1, 3600000)
		range("catchup_timeout", 1, 3600000)
		range("connect_timeout", 1000, 3600000)
		if type(p.margin) == "number" and p.margin < 0 then bad("margin", "must be 0 or more") end
		return problems
	end,

	plan = function(p)
		local a, d = tostring(p.action), tostring(p.database)
		local at = string.format("PgBouncer (%s)", tostring(p.admin))
		if a == "pause" then
			return string.format("PAUSE %s at %s: wait at most %s for its transactions in flight, else " ..
				"RESUME and fail; its clients wait until a resume step (or the rollback) RESUMEs it; " ..
				"undo: RESUME %s", d, at, ms(p.drain_timeout), d)
		elseif a == "resume" then
			return string.format("RESUME %s at %s; undo: none (a rollback does not pause its clients again)",
				d, at)
		end
		local to = string.format("host=%s port=%s%s", tostring(p.host), tostring(p.port),
			p.dbname ~= "" and (" dbname=" .. tostring(p.dbname)) or "")
		local now = ""
		if type(p.config) == "string" and not zdm.is_expr(p.config) then
			local text = zdm.file.read(p.config)
			local entry = text and find_entry(text, p.database, p.config)
			if entry then
				now = string.format(" (line %d, now: %s)", entry.line,
					text:sub(entry.vstart, entry.vend))
			end
		end
		local switch = string.format("rewrite %s's entry in [databases] of %s to %s%s, RELOAD, verify " ..
			"with SHOW DATABASES", d, tostring(p.config), to, now)
		if a == "switch" then
			return string.format("%s at %s; undo: the file's old bytes back, RELOAD, verify", switch, at)
		end
		return string.format("cut over %s at %s: PAUSE (drain at most %s), read the source's WAL " ..
			"position, wait until subscription %s on the target has replayed it (at most %s), %s, %s, " ..
			"RESUME; the pause's length is output as pause_ms; undo: PAUSE, the old config back, " ..
			"RELOAD, RESUME", d, at, ms(p.drain_timeout), tostring(p.subscription), ms(p.catchup_timeout),
			p.copy_sequences and string.format("set the target's sequences to the source's + %s",
				tostring(p.margin)) or "no sequences", switch)
	end,

	-- what run replaces, in undo's shape: the database, and for switch and
	-- cutover the config file's bytes and where PgBouncer points it now
	snapshot = function(ctx, p)
		if p.action == "resume" then return nil end
		if p.action == "pause" then return {action = p.action, database = p.database} end
		local text, err = read_config(p.config)
		if not text then return nil, err end
		local entry
		entry, err = find_entry(text, p.database, p.config)
		if not entry then return nil, err end
		local db
		db, err = admin_connect(ctx, p)
		if not db then return nil, err end
		local row
		row, err = show(db, p.database)
		db:close()
		if not row then return nil, err end
		return {action = p.action, database = p.database, config = p.config, old = text,
			from = {host = row.host or "", port = row.port, database = row.database}}
	end,

	-- --dry-run: the admin console answers with these credentials and has
	-- the database; the config entry; for cutover the servers, the
	-- subscription and its slot, the sequences
	check = function(ctx, p)
		local db, err = admin_connect(ctx, p)
		if not db then return nil, err end
		local row
		row, err = show(db, p.database)
		db:close()
		if not row then return nil, err end
		local said = {string.format("PgBouncer has %s at %s%s", p.database, where(row),
			row.paused == "1" and " (paused now)" or "")}
		if p.action == "switch" or p.action == "cutover" then
			local text
			text, err = read_config(p.config)
			if not text then return nil, err end
			local sw
			sw, err = plan_switch(p, text)
			if not sw then return nil, err end
			said[#said + 1] = string.format("%s line %d would become: %s = %s", p.config, sw.line,
				p.database, sw.value)
		end
		if p.action == "cutover" then
			local c
			c, err = cutover_prepare(ctx, p)
			if not c then return nil, err end
			c.close()
			said[#said + 1] = string.format("subscription %s (slot %s) replicates from the source%s",
				p.subscription, c.slot, c.seq_names and string.format("; %d sequence(s) on both sides",
					#c.seq_names) or "")
		end
		return table.concat(said, "; ")
	end,

	run = function(ctx, p)
		local ok, err = recover(ctx, p)
		if not ok then return nil, err end
		local action = check_action(p)

		-- everything that can be checked is checked before anything changes
		local db
		db, err = admin_connect(ctx, p)
		if not db then return nil, err end
		local row
		row, err = show(db, p.database)
		if not row then return nil, err end

		if action == "resume" then
			local was
			ok, was = resume(ctx, p, db, p.database, "resume step")
			if not ok then return nil, was end
			zdm.log(was and ("resumed " .. p.database) or (p.database .. " was not paused"))
			return {outputs = {was_paused = was}}
		end

		-- a pause this step did not make is someone else's: its RESUME would end it
		if row.paused == "1" and (action == "pause" or action == "cutover") then
			return nil, string.format("%s is already paused in PgBouncer, not by this step: find out who " ..
				"paused it (RESUME %s ends it)", p.database, p.database)
		end

		if action == "pause" then
			local drain
			drain, err = pause(ctx, p, db, p.database)
			if not drain then return nil, err end
			zdm.log(string.format("paused %s (drained in %d ms)", p.database, drain))
			return {outputs = {drain_ms = drain}, undo_data = {action = "pause", database = p.database}}
		end

		-- switch and cutover: the config's entry and what it becomes
		local text
		text, err = read_config(p.config)
		if not text then return nil, err end
		local sw
		sw, err = plan_switch(p, text)
		if not sw then return nil, err end
		local prior = ctx.prior or {}
		-- a rerun: what must come back is the file before the first attempt
		local old = prior.old or text
		sw.old = old
		local from = prior.from or {host = row.host or "", port = row.port, database = row.database}
		local undo_data = {action = action, database = p.database, config = p.config, old = old, from = from}
		local outputs = {host = sw.to.host, port = sw.to.port, dbname = sw.to.database,
			previous = where(from)}

		if action == "switch" then
			ok, err = do_switch(db, p, sw)
			if not ok then return nil, err end
			zdm.note("pgbouncer.switched", {database = p.database, to = sw.to, from = from})
			zdm.log(string.format("%s: %s -> %s", p.database, where(from), where(sw.to)))
			return {outputs = outputs, undo_data = undo_data}
		end

		-- cutover: prepare everything, then the shortest pause
		local c
		c, err = cutover_prepare(ctx, p)
		if not c then return nil, err end
		local need = p.drain_timeout + p.catchup_timeout + RESERVE_MS
		if ctx.deadline ~= nil and zdm.now() + need > ctx.deadline then
			c.close()
			return nil, string.format("refused before pausing: the step's timeout leaves %s, and the pause " ..
				"may need drain_timeout %s + catchup_timeout %s + %s to resume: raise the step's timeout",
				ms(math.max(ctx.deadline - zdm.now(), 0)), ms(p.drain_timeout), ms(p.catchup_timeout),
				ms(RESERVE_MS))
		end

		local t0 = zdm.now()
		local drain
		drain, err = pause(ctx, p, db, p.database)
		if not drain then c.close() return nil, err end

		-- paused: every failure from here resumes the clients before it returns
		local function abort(msg)
			local back, written = write_config(p.config, old)
			if not back then
				msg = msg .. "; putting the old config back failed: " .. written
			elseif written then
				admin(db, "RELOAD")	-- PgBouncer must read the old one again
			end
			local r_ok, rerr = resume(ctx, p, nil, p.database, "cutover failed")
			c.close()
			if not r_ok then return nil, msg .. "; " .. rerr end
			return nil, msg .. "; resumed " .. p.database .. " (at " .. where(from) .. ")"
		end

		local r
		r, err = c.src:query("SELECT pg_current_wal_lsn()::text AS lsn")
		if not r then return abort("source: reading the WAL position: " .. err) end
		local lsn = r.rows[1].lsn
		local caught
		caught, err = catch_up(ctx, p, c, lsn)
		if not caught then return abort(err) end
		zdm.note("pgbouncer.caught_up", {database = p.database, lsn = lsn, waited_ms = caught})

		local set, values = 0, {}
		if p.copy_sequences then
			local s_seqs, d_seqs
			s_seqs, err = pg.read_sequences(c.src)
			if not s_seqs then return abort("source: " .. err) end
			d_seqs, err = pg.read_sequences(c.dst)
			if not d_seqs then return abort("target: " .. err) end
			set, values = pg.set_sequences(c.dst, c.seq_names, s_seqs, d_seqs, p.margin, {never_back = true})
			if not set then return abort(values) end
		end

		ok, err = do_switch(db, p, sw)
		if not ok then return abort(err) end
		zdm.note("pgbouncer.switched", {database = p.database, to = sw.to, from = from})

		ok, err = admin(db, "RESUME " .. ident(p.database))
		if not ok then
			-- the config names the target now: resume there
			local r_ok, rerr = resume(ctx, p, nil, p.database, "cutover")
			if not r_ok then c.close() return nil, "RESUME: " .. tostring(err) .. "; " .. rerr end
		else
			zdm.note("pgbouncer.resumed", {database = p.database, was_paused = true, why = "cutover"})
		end
		local paused = zdm.now() - t0
		c.close()
		db:close()
		zdm.log(string.format("%s: %s -> %s; clients paused %d ms (drain %d ms, catch-up %d ms to %s, " ..
			"%d sequence(s))", p.database, where(from), where(sw.to), paused, drain, caught, lsn, set))
		outputs.pause_ms = paused
		outputs.drain_ms = drain
		outputs.catchup_ms = caught
		outputs.lsn = lsn
		outputs.sequences = set
		outputs.sequence_values = values
		return {outputs = outputs, undo_data = undo_data}
	end,

	undo = function(ctx, p, u)
		local action = (u and u.action) or p.action
		if action == "resume" then
			return {nothing_to_undo = "RESUME is not undone: a rollback does not pause clients again " ..
				"(give the step an undo: with action: pause to hold them while later undos run)"}
		end
		if u == nil then
			if action == "pause" then u = {database = p.database} else
				return nil, "no undo_data was recorded for this step: check PgBouncer's config file " ..
					"and SHOW DATABASES by hand, and RESUME " .. tostring(p.database) .. " if it is paused"
			end
		end
		local name = u.database or p.database
		if action == "pause" then
			-- the step's own notes say whether its pause is still on: never
			-- sent (a check failed), or already ended by the step (drain_timeout)
			local on = false
			for _, d in ipairs(stale_pauses(ctx)) do
				if d == name then on = true end
			end
			if not on then
				return {nothing_to_undo = "the step left no pause of " .. name .. " (it never paused " ..
					"it, or resumed it itself)"}
			end
			local ok, was = resume(ctx, p, nil, name, "undo")
			if not ok then return nil, was end
			zdm.log(was and ("resumed " .. name) or (name .. " was not paused any more"))
			return nil
		end

		-- switch and cutover: back to the old bytes and where PgBouncer pointed
		local db, err = admin_connect(ctx, p)
		if not db then return nil, err end
		local row
		row, err = show(db, name)
		if not row then return nil, err end
		local cur = zdm.file.read(u.config)
		local same = (row.host or "") == u.from.host and row.port == tostring(u.from.port) and
			row.database == u.from.database
		if cur == u.old and same then
			-- the switch never happened (or was undone): end a pause this
			-- step left (zdm was killed while paused), nothing else
			local was = false
			for _, d in ipairs(stale_pauses(ctx)) do
				if d == name then
					local ok
					ok, was = resume(ctx, p, db, name, "undo")
					if not ok then return nil, was end
				end
			end
			return {nothing_to_undo = string.format("PgBouncer already points %s at %s%s", name,
				where(u.from), was and "; resumed it (the step had paused it)" or "")}
		end
		local paused = false
		if action == "cutover" then
			local drain
			drain, err = pause(ctx, p, db, name)
			if not drain then return nil, "undo: " .. err end
			paused = true
			-- the pause's connection may have been replaced: use a fresh one
		end
		local ok, written = write_config(u.config, u.old)
		if ok then
			ok, err = reload_and_verify(db, {database = name, config = u.config}, u.from)
		else
			err = written
		end
		if paused then
			local r_ok, rerr = resume(ctx, p, db, name, "undo")
			if not r_ok then
				return nil, (ok and "" or (err .. "; ")) .. rerr
			end
		end
		if not ok then return nil, err end
		zdm.log(string.format("%s points at %s again%s", name, where(u.from),
			written and "" or " (the file held the old bytes already; RELOADed)"))
		db:close()
		return nil
	end,
}
