-- db.postgres_sync: replicate tables from a source PostgreSQL to a target by
-- logical replication (a publication on the source, a subscription on the
-- target), wait until every table is synchronised and the replication lag is
-- under max_lag_bytes, then verify parity (row counts, or an ordered hash of
-- each table with verify: checksum).
--
-- Everything it checks is checked before it creates anything: wal_level =
-- logical on the source, the source user may replicate, the target user may
-- create a subscription, every table exists and has a primary key or a
-- replica identity, the target has the tables (or copy_schema: true copies
-- them with pg_dump --schema-only) and they are empty.
--
-- What it creates is named after the step (zdm_<step id>, or the names given)
-- and recorded: snapshot() records which of those names existed before the
-- step, so undo drops exactly what this step created (subscription, its
-- replication slot, the publication) and nothing else, even after a crash.
--
-- The source password goes into the subscription's CONNECTION (PostgreSQL
-- stores it in pg_subscription on the target); zdm never writes it out.

local pg = zdm.lib("db._pg")		-- connect, credential checks

local function quote_conn_value(v)
	return "'" .. v:gsub("\\", "\\\\"):gsub("'", "\\'") .. "'"
end

local function urlencode(s)
	return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- the publisher's conninfo for the subscription, with the password added
local function with_password(conninfo, pw)
	if pw == nil or pw == "" then return conninfo end
	if conninfo:match("^postgres") then
		local sep = conninfo:find("?", 1, true) and "&" or "?"
		return conninfo .. sep .. "password=" .. urlencode(pw)
	end
	return conninfo .. " password=" .. quote_conn_value(pw)
end

-- the step's object names: given, or zdm_<target database>_<step id>.
-- Subscriptions and replication slots are per cluster, not per database,
-- hence the database in the default.
local function names(ctx, p, dst)
	local base = p.subscription
	if base == "" then
		local r = dst:query("SELECT current_database() AS d")
		local db = r and r.rows[1].d or "db"
		base = ("zdm_" .. db .. "_" .. tostring(ctx.step_id)):lower():gsub("[^a-z0-9_]", "_"):sub(1, 63)
	end
	return {
		publication = p.publication ~= "" and p.publication or base,
		subscription = base,
		slot = base,
	}
end

local function fmt_bytes(n)
	n = tonumber(n) or 0
	if n < 1024 then return string.format("%d B", n) end
	if n < 1024 * 1024 then return string.format("%.0f kB", n / 1024) end
	return string.format("%.1f MB", n / 1048576)
end

-- lock_timeout: our DDL must never queue in front of the application's
-- writes for long
local function connect(which, conninfo, pw, p)
	local db, err = pg.connect(conninfo, {password = pw, application_name = "zdm db.postgres_sync",
		lock_timeout = p.lock_timeout})
	if not db then return nil, which .. ": " .. err end
	return db
end

local function q1(db, sql, args)
	local r, err = db:query(sql, args or {})
	if not r then return nil, err end
	return r.rows[1] or {}, nil, r
end

-- which of the step's objects exist now
local function existing(src, dst, n)
	local out = {}
	local r, err = q1(src, "SELECT count(*) AS n FROM pg_publication WHERE pubname = $1", {n.publication})
	if not r then return nil, "source: " .. err end
	out.publication = r.n ~= "0"
	r, err = q1(src, "SELECT count(*) AS n FROM pg_replication_slots WHERE slot_name = $1", {n.slot})
	if not r then return nil, "source: " .. err end
	out.slot = r.n ~= "0"
	r, err = q1(dst, "SELECT count(*) AS n FROM pg_subscription WHERE subname = $1", {n.subscription})
	if not r then return nil, "target: " .. err end
	out.subscription = r.n ~= "0"
	return out
end

-- resolve the tables on the source: {name=, ident=, oid=, order=}
local function source_tables(src, p)
	local out, problems, seen = {}, {}, {}
	for _, t in ipairs(p.tables) do
		local r, err = q1(src, [[
			SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident,
			       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident,
			       (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY k.ord)
			          FROM pg_index i
			          CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
			          JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
			         WHERE i.indrelid = c.oid AND i.indisprimary) AS pk,
			       (SELECT count(*) FROM pg_index i
			         WHERE i.indrelid = c.oid AND i.indisreplident) AS ri_index
			  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
			 WHERE c.oid = to_regclass($1)]], {t})
		if not r then return nil, "source: " .. err end
		if r.oid == nil then
			problems[#problems + 1] = string.format("table %s does not exist on the source", t)
		elseif r.relkind ~= "r" and r.relkind ~= "p" then
			problems[#problems + 1] = string.format("%s is not a table on the source", t)
		elseif seen[r.oid] then
			-- listed twice (maybe spelt two ways): once is enough
		else
			seen[r.oid] = true
			local ident = r.ident
			local ok = (r.relreplident == "d" and r.pk ~= nil) or r.relreplident == "f" or
				(r.relreplident == "i" and r.ri_index ~= "0")
			if not ok then
				problems[#problems + 1] = string.format(
					"table %s has no primary key or replica identity: add a primary key, or run " ..
					"ALTER TABLE %s REPLICA IDENTITY FULL on the source", ident, ident)
			end
			out[#out + 1] = {name = r.nspname .. "." .. r.relname, ident = ident,
				order = r.pk or "t::text"}
		end
	end
	if #problems > 0 then return nil, table.concat(problems, "; ") end
	return out
end

local function fail_checks(what)
	return nil, "refused before creating anything: " .. what
end

-- every check that can be made before anything is created
local function preflight(src, dst, p)
	local r, err = q1(src, "SELECT current_setting('wal_level') AS w, " ..
		"(SELECT rolsuper OR rolreplication FROM pg_roles WHERE rolname = current_user) AS repl, " ..
		"current_user AS u")
	if not r then return nil, "source: " .. err end
	if r.w ~= "logical" then
		return fail_checks(string.format("the source has wal_level = %s; logical replication " ..
			"needs wal_level = logical (set it in postgresql.conf and restart the source server)", r.w))
	end
	if r.repl ~= "t" then
		return fail_checks(string.format("source user %s has no replication privilege: " ..
			"ALTER ROLE %s REPLICATION (or use a superuser)", r.u, r.u))
	end
	r, err = q1(dst, "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) OR " ..
		"EXISTS (SELECT 1 FROM pg_roles g WHERE g.rolname = 'pg_create_subscription' " ..
		"AND pg_has_role(current_user, g.oid, 'member')) AS ok, current_user AS u")
	if not r then return nil, "target: " .. err end
	if r.ok ~= "t" then
		return fail_checks(string.format("target user %s may not create a subscription " ..
			"(PostgreSQL 15 needs a superuser; 16+ pg_create_subscription)", r.u))
	end
	return true
end

-- tables missing on the target, and tables there that already hold rows
local function target_state(dst, tables)
	local missing, nonempty = {}, {}
	for _, t in ipairs(tables) do
		local r, err = q1(dst, "SELECT to_regclass($1) IS NOT NULL AS ok", {t.ident})
		if not r then return nil, nil, "target: " .. err end
		if r.ok ~= "t" then
			missing[#missing + 1] = t
		else
			local c, e = q1(dst, "SELECT EXISTS (SELECT 1 FROM " .. t.ident .. ") AS rows")
			if not c then return nil, nil, "target: " .. e end
			if c.rows == "t" then nonempty[#nonempty + 1] = t.name end
		end
	end
	return missing, nonempty
end

local function copy_schema(p, missing)
	local argv = {p.pg_dump, "--schema-only", "--no-owner", "--no-privileges",
		"--no-publications", "--no-subscriptions", "-d", p.source}
	for _, t in ipairs(missing) do argv[#argv + 1] = "--table=" .. t.ident end
	local env = {PGPASSWORD = p.source_password ~= "" and p.source_password or nil,
		PGCONNECT_TIMEOUT = "10"}
	local r, err = zdm.exec(argv, {env = env, cap = 16 * 1048576})
	if not r then return nil, "copy_schema: " .. err end
	if r.code ~= 0 then return nil, "copy_schema: pg_dump failed: " .. r.stderr end
	local penv = {PGPASSWORD = p.target_password ~= "" and p.target_password or nil,
		PGCONNECT_TIMEOUT = "10"}
	r, err = zdm.exec({p.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", p.target},
		{env = penv, stdin = r.stdout})
	if not r then return nil, "copy_schema: " .. err end
	if r.code ~= 0 then return nil, "copy_schema: psql on the target failed: " .. r.stderr end
	zdm.log(string.format("copied the schema of %d table(s) with pg_dump --schema-only", #missing))
	return true
end

-- bytes between the source's WAL end and what the subscription confirmed
local function slot_lag(src, slot)
	local r, err = q1(src, "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint AS lag, " ..
		"confirmed_flush_lsn AS lsn FROM pg_replication_slots WHERE slot_name = $1", {slot})
	if not r then return nil, "source: " .. err end
	if r.lag == nil then return nil, nil end
	return tonumber(r.lag)
end

local function sync_state(dst, sub)
	local r, err = dst:query("SELECT r.srsubstate AS s, count(*) AS n FROM pg_subscription_rel r " ..
		"JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = $1 GROUP BY 1", {sub})
	if not r then return nil, "target: " .. err end
	local total, ready = 0, 0
	for _, row in ipairs(r.rows) do
		total = total + tonumber(row.n)
		if row.s == "r" then ready = ready + tonumber(row.n) end
	end
	local e = q1(dst, "SELECT coalesce(sum(st.apply_error_count + st.sync_error_count), 0) AS errors " ..
		"FROM pg_stat_subscription_stats st WHERE st.subname = $1", {sub})
	return ready, total, e and tonumber(e.errors) or 0
end

-- the server's clock (the sandbox has none), ms
local function server_ms(db)
	local r = q1(db, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms")
	return r and tonumber(r.ms) or 0
end

local function measure(db, tables, checksum)
	local out = {}
	local ok, err = db:exec("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
	if not ok then return nil, err end
	for _, t in ipairs(tables) do
		local sql = "SELECT count(*) AS n FROM " .. t.ident
		if checksum then
			sql = "SELECT count(*) AS n, md5(coalesce(string_agg(md5(t::text), '' ORDER BY " ..
				t.order .. "), '')) AS h FROM " .. t.ident .. " t"
		end
		local r, e = q1(db, sql)
		if not r then db:exec("ROLLBACK"); return nil, e end
		out[t.name] = {n = tonumber(r.n), h = r.h}
	end
	db:exec("COMMIT")
	return out
end

-- parity: the target, once it has applied everything the source had when its
-- side was measured, holds the same rows.  While the application writes the
-- two sides move; measure again until they agree or verify_timeout passes.
local function verify(src, dst, p, n, tables)
	local checksum = p.verify == "checksum"
	local stop = nil
	local last = ""
	local rounds = 0
	while true do
		rounds = rounds + 1
		local s, err = measure(src, tables, checksum)
		if not s then return nil, "verify on the source: " .. err end
		local at = q1(src, "SELECT pg_current_wal_lsn() AS lsn")
		-- wait until the target has applied everything up to that position:
		-- its replication origin has applied a commit past it (writes flow),
		-- or the slot's confirmed position passed it (idle: keepalive replies)
		-- (bounded; the step's deadline stops it anyway)
		pg.wait_applied(src, dst, {slot = n.slot, subid = n.subid, lsn = at.lsn,
			poll = math.min(p.interval, 20), polls = 3000})
		local d
		d, err = measure(dst, tables, checksum)
		if not d then return nil, "verify on the target: " .. err end
		local diffs, rows = {}, 0
		for _, t in ipairs(tables) do
			local a, b = s[t.name], d[t.name]
			rows = rows + a.n
			if a.n ~= b.n then
				diffs[#diffs + 1] = string.format("%s: %d rows on the source, %d on the target", t.name, a.n, b.n)
			elseif checksum and a.h ~= b.h then
				diffs[#diffs + 1] = string.format("%s: %d rows on both sides but their checksums differ", t.name, a.n)
			end
		end
		if #diffs == 0 then return rows, rounds end
		last = table.concat(diffs, "; ")
		zdm.progress("verifying: " .. last)
		local now = server_ms(src)
		stop = stop or (now + p.verify_timeout)
		if now >= stop then
			return nil, string.format("parity not reached within %d ms: %s", p.verify_timeout, last)
		end
		zdm.sleep(p.interval)
	end
end

local function drop_all(ctx, p, u)
	local n = {publication = u.publication, subscription = u.subscription, slot = u.slot}
	local existed = u.existed or {}
	local dropped = {}
	local dst, err = connect("target", p.target, p.target_password, p)
	if not dst then return nil, err end
	if not existed.subscription then
		local r
		r, err = q1(dst, "SELECT oid FROM pg_subscription WHERE subname = $1", {n.subscription})
		if not r then return nil, "target: " .. err end
		if r.oid then
			local s = dst:quote_ident(n.subscription)
			for _, sql in ipairs({"ALTER SUBSCRIPTION " .. s .. " DISABLE",
				"ALTER SUBSCRIPTION " .. s .. " SET (slot_name = NONE)",
				"DROP SUBSCRIPTION " .. s}) do
				local ok, e = dst:exec(sql)
				if not ok then return nil, "target: " .. sql .. ": " .. e end
			end
			u.subid = u.subid or r.oid
			dropped[#dropped + 1] = "subscription " .. n.subscription
		end
	end
	dst:close()
	local src
	src, err = connect("source", p.source, p.source_password, p)
	if not src then return nil, err end
	-- the subscription's slot, and any table-sync slot it left (pg_<subid>_sync_...)
	local pattern = u.subid and ("pg_" .. u.subid .. "_sync_%") or "-"
	local left = nil
	for _ = 1, 100 do	-- a walsender ends within a few seconds of DISABLE: 10 s at most
		local r
		r, err = src:query("SELECT slot_name, active_pid FROM pg_replication_slots " ..
			"WHERE (slot_name = $1 AND NOT $2::bool) OR slot_name LIKE $3",
			{n.slot, existed.slot and "true" or "false", pattern})
		if not r then return nil, "source: " .. err end
		left = nil
		for _, row in ipairs(r.rows) do
			if row.active_pid then
				-- the walsender of the subscription just disabled is ending
				left = string.format("replication slot %s is still in use (pid %s)", row.slot_name, row.active_pid)
			else
				local ok, e, st = src:query("SELECT pg_drop_replication_slot($1)", {row.slot_name})
				if ok then
					dropped[#dropped + 1] = "slot " .. row.slot_name
				elseif st == "55006" then
					left = "replication slot " .. row.slot_name .. " is still in use"
				elseif st ~= "42704" then
					return nil, "source: dropping slot " .. row.slot_name .. ": " .. e
				end
			end
		end
		if left == nil then break end
		zdm.sleep(100)
	end
	if left ~= nil then
		return nil, "source: " .. left .. " after 10 s: stop its user " ..
			"(SELECT pg_terminate_backend(pid)) and run the rollback again"
	end
	if not existed.publication then
		local r
		r, err = q1(src, "SELECT count(*) AS n FROM pg_publication WHERE pubname = $1", {n.publication})
		if not r then return nil, "source: " .. err end
		if r.n ~= "0" then
			local ok, e = src:exec("DROP PUBLICATION " .. src:quote_ident(n.publication))
			if not ok then return nil, "source: " .. e end
			dropped[#dropped + 1] = "publication " .. n.publication
		end
	end
	src:close()
	zdm.log(#dropped > 0 and ("dropped " .. table.concat(dropped, ", ")) or "nothing of this step's was left to drop")
	return nil
end

return {
	description = "Replicate tables to another PostgreSQL by logical replication, wait for sync and lag, verify parity",
	params = {
		{name = "source", type = "string", required = true,
		 doc = "libpq conninfo or URI of the source database (no password: use source_password)"},
		{name = "target", type = "string", required = true,
		 doc = "libpq conninfo or URI of the target database"},
		{name = "source_password", type = "string", default = "", doc = "from secrets"},
		{name = "target_password", type = "string", default = "", doc = "from secrets"},
		{name = "tables", type = "list", required = true,
		 doc = "tables to replicate: [schema.]name, as to_regclass reads them"},
		{name = "publisher", type = "string", default = "",
		 doc = "conninfo the TARGET server uses to reach the source (default: source)"},
		{name = "publication", type = "string", default = "", doc = "default: the subscription's name"},
		{name = "subscription", type = "string", default = "",
		 doc = "default zdm_<target database>_<step id>; also the replication slot's name"},
		{name = "copy_schema", type = "bool", default = false,
		 doc = "create missing tables on the target with pg_dump --schema-only | psql"},
		{name = "max_lag_bytes", type = "int", default = 1048576,
		 doc = "wait until the slot's confirmed position is this close to the source's WAL end (bytes)"},
		{name = "verify", type = "string", default = "count", doc = "count | checksum | none"},
		{name = "verify_timeout", type = "duration", default = "60s",
		 doc = "how long parity may take to agree while the application writes"},
		{name = "interval", type = "duration", default = "200ms", doc = "between two looks at sync state and lag"},
		{name = "lock_timeout", type = "duration", default = "5s",
		 doc = "lock_timeout of zdm's sessions: its DDL never blocks the application longer"},
		{name = "pg_dump", type = "string", default = "pg_dump", doc = "for copy_schema"},
		{name = "psql", type = "string", default = "psql", doc = "for copy_schema"},
	},
	-- earlier names, accepted with a warning (zdm-runbook(5) NAMES)
	renamed = {poll_interval = "interval"},
	read_only = false,
	idempotent = true,

	validate = function(p)
		local problems = {}
		for _, k in ipairs({"source", "target", "publisher"}) do
			if pg.has_password(p[k]) then
				problems[#problems + 1] = {param = k, message = "must not hold the password " ..
					"(params are journaled): give it as source_password/target_password from secrets"}
			end
		end
		for _, k in ipairs({"source_password", "target_password"}) do
			if not zdm.from_secrets(p[k]) then
				problems[#problems + 1] = {param = k, message = pg.secret_message(k)}
			end
		end
		if not zdm.is_expr(p.tables) then
			if type(p.tables) ~= "table" or #p.tables == 0 then
				problems[#problems + 1] = {param = "tables", message = "must list at least one table"}
			else
				for i, t in ipairs(p.tables) do
					if type(t) ~= "string" or t == "" then
						problems[#problems + 1] = {param = "tables",
							message = string.format("entry %d must be a table name", i)}
					end
				end
			end
		end
		if not zdm.is_expr(p.verify) and p.verify ~= "count" and p.verify ~= "checksum" and p.verify ~= "none" then
			problems[#problems + 1] = {param = "verify", message = "must be count, checksum or none"}
		end
		if not zdm.is_expr(p.max_lag_bytes) and type(p.max_lag_bytes) == "number" and p.max_lag_bytes < 0 then
			problems[#problems + 1] = {param = "max_lag_bytes", message = "must be 0 or more"}
		end
		for _, k in ipairs({"publication", "subscription"}) do
			local v = p[k]
			if not zdm.is_expr(v) and v ~= "" and not v:match("^[a-z_][a-z0-9_]*$") then
				problems[#problems + 1] = {param = k, message = "must be a lowercase SQL name ([a-z_][a-z0-9_]*)"}
			end
			if not zdm.is_expr(v) and #v > 63 then
				problems[#problems + 1] = {param = k, message = "must be at most 63 bytes"}
			end
		end
		return problems
	end,

	plan = function(p)
		local t = type(p.tables) == "table" and table.concat(p.tables, ", ") or tostring(p.tables)
		return string.format("replicate %s by logical replication (copy_schema %s), wait until synced " ..
			"and lag <= %s bytes, verify %s", t, tostring(p.copy_schema), tostring(p.max_lag_bytes), p.verify)
	end,

	snapshot = function(ctx, p)
		local src, err = connect("source", p.source, p.source_password, p)
		if not src then return nil, err end
		local dst
		dst, err = connect("target", p.target, p.target_password, p)
		if not dst then return nil, err end
		local n = names(ctx, p, dst)
		local ex
		ex, err = existing(src, dst, n)
		if not ex then return nil, err end
		src:close(); dst:close()
		n.existed = ex
		return n
	end,

	-- --dry-run: every check run() makes before it creates anything
	check = function(ctx, p)
		local src, err = connect("source", p.source, p.source_password, p)
		if not src then return nil, err end
		local dst
		dst, err = connect("target", p.target, p.target_password, p)
		if not dst then src:close() return nil, err end
		local function done(...) src:close() dst:close() return ... end
		local n = names(ctx, p, dst)
		local now
		now, err = existing(src, dst, n)
		if not now then return done(nil, err) end
		for _, k in ipairs({"publication", "subscription", "slot"}) do
			if now[k] then
				return done(nil, string.format("%s %s already exists: the run would refuse it (drop it, "
					.. "or give this step another %s name)", k == "slot" and "replication slot" or k, n[k],
					k == "publication" and "publication" or "subscription"))
			end
		end
		local ok
		ok, err = preflight(src, dst, p)
		if not ok then return done(nil, err) end
		local tables
		tables, err = source_tables(src, p)
		if not tables then return done(nil, err) end
		local missing, nonempty
		missing, nonempty, err = target_state(dst, tables)
		if not missing then return done(nil, err) end
		if #nonempty > 0 then
			return done(nil, "target table(s) " .. table.concat(nonempty, ", ") ..
				" already hold rows; the initial copy needs them empty")
		end
		if #missing > 0 and not p.copy_schema then
			local m = {}
			for _, t in ipairs(missing) do m[#m + 1] = t.name end
			return done(nil, "the target lacks table(s) " .. table.concat(m, ", ") ..
				": create the schema there first, or set copy_schema: true")
		end
		return done(string.format("%d table(s) on the source, wal_level logical, the users' privileges; "
			.. "publication %s and subscription %s are free%s", #tables, n.publication, n.subscription,
			#missing > 0 and string.format("; %d table(s) to create (copy_schema)", #missing) or ""))
	end,

	run = function(ctx, p)
		local src, err = connect("source", p.source, p.source_password, p)
		if not src then return nil, err end
		local t0 = server_ms(src)
		local dst
		dst, err = connect("target", p.target, p.target_password, p)
		if not dst then return nil, err end
		local n = ctx.prior or names(ctx, p, dst)
		n = {publication = n.publication, subscription = n.subscription, slot = n.slot}
		local now
		now, err = existing(src, dst, n)
		if not now then return nil, err end
		-- what existed before this step's first attempt: ours if it did not
		local before = (ctx.prior and ctx.prior.existed) or now
		local undo_data = {publication = n.publication, subscription = n.subscription,
			slot = n.slot, existed = before}
		for _, k in ipairs({"publication", "subscription", "slot"}) do
			if before[k] then
				return nil, string.format("refused before creating anything: %s %s already exists " ..
					"(it was not made by this step): drop it, or give this step another %s name",
					k == "slot" and "replication slot" or k, n[k],
					k == "publication" and "publication" or "subscription")
			end
		end
		local ok
		ok, err = preflight(src, dst, p)
		if not ok then return nil, err end
		local tables
		tables, err = source_tables(src, p)
		if not tables then
			return nil, err:match("^source: ") and err or ("refused before creating anything: " .. err)
		end
		if not now.subscription then
			local missing, nonempty
			missing, nonempty, err = target_state(dst, tables)
			if not missing then return nil, err end
			if #nonempty > 0 then
				return fail_checks("target table(s) " .. table.concat(nonempty, ", ") ..
					" already hold rows; the initial copy needs them empty")
			end
			if #missing > 0 then
				if not p.copy_schema then
					local m = {}
					for _, t in ipairs(missing) do m[#m + 1] = t.name end
					return fail_checks("the target lacks table(s) " .. table.concat(m, ", ") ..
						": create the schema there first, or set copy_schema: true")
				end
				ok, err = copy_schema(p, missing)
				if not ok then return nil, err end
			end
		end

		-- create, recording each object as soon as it exists
		if not now.publication then
			local list = {}
			for _, t in ipairs(tables) do list[#list + 1] = t.ident end
			ok, err = src:exec("CREATE PUBLICATION " .. src:quote_ident(n.publication) ..
				" FOR TABLE " .. table.concat(list, ", "))
			if not ok then return nil, "source: CREATE PUBLICATION: " .. err end
			zdm.note("pg_sync.created", {publication = n.publication})
		end
		if not now.subscription then
			local conn = with_password(p.publisher ~= "" and p.publisher or p.source, p.source_password)
			-- the statement carries the source password: keep it out of the
			-- target's server log (log_statement, and the STATEMENT line
			-- log_min_error_statement adds to an error); superuser-only
			-- settings, and the target user is one on PostgreSQL 15
			ok, err = dst:exec("SET log_statement = 'none'; SET log_min_error_statement = 'panic'")
			if not ok then return nil, "target: keeping the password out of the server log: " .. err end
			ok, err = dst:exec("CREATE SUBSCRIPTION " .. dst:quote_ident(n.subscription) ..
				" CONNECTION " .. dst:quote_literal(conn) ..
				" PUBLICATION " .. dst:quote_ident(n.publication) ..
				" WITH (slot_name = " .. dst:quote_literal(n.slot) .. ", copy_data = true)")
			if not ok then return nil, "target: CREATE SUBSCRIPTION: " .. err end
			zdm.note("pg_sync.created", {subscription = n.subscription, slot = n.slot})
		end
		local sub = q1(dst, "SELECT oid FROM pg_subscription WHERE subname = $1", {n.subscription})
		undo_data.subid = sub and sub.oid
		n.subid = undo_data.subid

		-- wait: every table ready (pg_subscription_rel all 'r') and lag small
		local lag, ready, total, errors
		local errors_seen = 0
		while true do
			ready, total, errors = sync_state(dst, n.subscription)
			if not ready then return nil, total end
			if errors > errors_seen then
				zdm.log(string.format("the subscription's workers report %d error(s): see the target server's log", errors))
				errors_seen = errors
			end
			lag, err = slot_lag(src, n.slot)
			if err then return nil, err end
			zdm.progress(string.format("%d/%d tables ready, lag %s%s", ready, total,
				lag and fmt_bytes(lag) or "?", errors > 0 and string.format(", %d worker errors (see the target's log)", errors) or ""))
			if total > 0 and ready == total and lag ~= nil and lag <= p.max_lag_bytes then break end
			zdm.sleep(p.interval)
		end
		zdm.log(string.format("%d/%d tables synchronised, lag %s", ready, total, fmt_bytes(lag)))

		local rows, rounds = nil, 0
		if p.verify ~= "none" then
			rows, rounds = verify(src, dst, p, n, tables)
			if not rows then return nil, rounds end
			zdm.log(string.format("parity verified (%s): %d rows in %d table(s)%s", p.verify, rows, #tables,
				rounds > 1 and string.format(", after %d rounds", rounds) or ""))
		end
		lag = slot_lag(src, n.slot) or lag
		local names_out = {}
		for _, t in ipairs(tables) do names_out[#names_out + 1] = t.name end
		return {
			outputs = {tables = names_out, rows = rows or -1, lag = lag,
				duration = server_ms(src) - t0,
				publication = n.publication, subscription = n.subscription, slot = n.slot},
			undo_data = undo_data,
		}
	end,

	undo = function(ctx, p, u)
		if u == nil then
			return nil, "no undo_data was recorded for this step: drop its subscription " ..
				"(target), replication slot and publication (source) by hand if they exist"
		end
		return drop_all(ctx, p, u)
	end,
}
