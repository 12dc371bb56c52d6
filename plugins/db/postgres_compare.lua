-- db.postgres_compare: a reconciliation gate.  Compares a table (or every
-- table of a publication) between a source and a target PostgreSQL, chunk
-- by chunk, while the application may keep writing to the source; reads
-- only.
--
-- Chunks are fixed ranges of the primary key, `chunk_rows` rows each, their
-- bounds taken from the source when the step first runs and journaled
-- (`compare.chunks`), so a rerun checks the same chunks.  Each server
-- computes an order-independent checksum of a chunk (count(*) and
-- sum(hashtextextended(ROW(columns)::text, 0)), the columns named from the
-- source's catalog, in the same order on both sides): no row crosses the
-- network, and the server holds one aggregate per chunk.  Both sessions first
-- SET the same TimeZone, DateStyle, IntervalStyle, extra_float_digits,
-- bytea_output and lc_monetary (pg.SAME_TEXT), so equal values print as
-- equal text.
--
-- Under writes (the hot-chunk rule): a chunk is read on the source, then on
-- the target, then on the source again.  Two different source reads: the
-- chunk is hot, checked again later (up to `max_retries` rounds,
-- `retry_delay` apart); still hot then, the gate is inconclusive: the run
-- pauses (exit 4) for a person, never a pass.  A stable source that differs
-- from the target, when a subscription links them, may only be lag: zdm
-- takes the source's WAL insert position, waits (at most `lag_wait`) until
-- the subscription has applied up to it, and reads target and source again.
-- Equal then: verified.  Still different with the source unchanged: a
-- divergence, bisected (checksums of halves, then key lists under 1000 rows,
-- with the same read-wait-read rule per key) down to the differing keys; up
-- to `max_report` of them are journaled (`compare.chunk`) and named in the
-- failure.
--
-- Every finished chunk is journaled (`compare.chunk`): a rerun after a
-- crash, a signal or a pause skips the chunks already decided.

local pg = zdm.lib("db._pg")		-- connect, credential checks, lag, settings
local ms = pg.ms

local LEAF_ROWS = 1000		-- bisection: key lists below this many rows a side
local MAX_DEPTH = 64		-- bisection: halvings at most
local LAG_POLL = 50		-- ms between two looks at the subscription's position

local function connect(ctx, p, which)
	local db, err = pg.connect(p[which], {
		password = p[which .. "_password"],
		connect_timeout = p.connect_timeout,
		statement_timeout = p.statement_timeout,
		application_name = "zdm " .. ctx.step_id,
	})
	if not db then return nil, which .. ": " .. err end
	local ok, e = db:exec(pg.SAME_TEXT .. "; SET default_transaction_read_only = on")
	if not ok then
		db:close()
		return nil, which .. ": session settings: " .. tostring(e)
	end
	return db
end

local function q(db, sql, args)
	local r, err = db:query(sql, args or {})
	if not r then return nil, err end
	return r.rows
end

-- the tables to compare, as the source names them: {{ident=, name=}}
local function table_list(src, p)
	if p.publication then
		local rows, err = q(src, "SELECT count(*) AS n FROM pg_publication WHERE pubname = $1",
			{p.publication})
		if not rows then return nil, "source: " .. err end
		if rows[1].n == "0" then
			return nil, string.format("publication %s does not exist on the source", p.publication)
		end
		rows, err = q(src, "SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) AS ident " ..
			"FROM pg_publication_tables WHERE pubname = $1 ORDER BY schemaname, tablename", {p.publication})
		if not rows then return nil, "source: " .. err end
		if #rows == 0 then
			return nil, string.format("publication %s has no tables", p.publication)
		end
		local out = {}
		for _, r in ipairs(rows) do out[#out + 1] = r.ident end
		return out
	end
	return {p.table}
end

-- a table on one side: {ident, name, cols = {{name, q, type}}}, or nil, why
local function describe(db, spec, side)
	local rows, err = q(db, "SELECT c.relkind, quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS ident, " ..
		"n.nspname || '.' || c.relname AS name FROM pg_class c " ..
		"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1)", {spec})
	if not rows then return nil, side .. ": table " .. spec .. ": " .. err end
	if #rows == 0 then
		return nil, string.format("table %s does not exist on the %s", spec, side)
	end
	local t = rows[1]
	if t.relkind ~= "r" and t.relkind ~= "p" then
		return nil, string.format("%s is not a table on the %s", t.name, side)
	end
	rows, err = q(db, "SELECT attname AS name, quote_ident(attname) AS q, " ..
		"format_type(atttypid, atttypmod) AS type FROM pg_attribute " ..
		"WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum", {t.ident})
	if not rows then return nil, side .. ": " .. err end
	local key
	key, err = q(db, "SELECT a.attname AS name FROM pg_index i " ..
		"CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord) " ..
		"JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum " ..
		"WHERE i.indrelid = $1::regclass AND i.indisprimary ORDER BY k.ord", {t.ident})
	if not key then return nil, side .. ": " .. err end
	return {ident = t.ident, name = t.name, cols = rows, key_names = key}
end

-- the source's description, checked against the target's columns
local function resolve(src, dst, spec)
	local s, err = describe(src, spec, "source")
	if not s then return nil, err end
	if #s.key_names == 0 then
		return nil, string.format("table %s has no primary key on the source: " ..
			"db.postgres_compare cuts tables into primary-key ranges; add one " ..
			"(ALTER TABLE %s ADD PRIMARY KEY (...))", s.name, s.name)
	end
	local d
	d, err = describe(dst, s.ident, "target")
	if not d then return nil, err end
	local on_target = {}
	for _, c in ipairs(d.cols) do on_target[c.name] = true end
	local on_source = {}
	for _, c in ipairs(s.cols) do
		on_source[c.name] = true
		if not on_target[c.name] then
			return nil, string.format("column %s of %s is on the source but not on the target", c.name, s.name)
		end
	end
	for _, c in ipairs(d.cols) do
		if not on_source[c.name] then
			return nil, string.format("column %s of %s is on the target but not on the source", c.name, s.name)
		end
	end
	-- the SQL: columns named in the source's order, on both sides
	local types, qs = {}, {}
	for _, c in ipairs(s.cols) do types[c.name] = c.type; qs[c.name] = c.q end
	local key = {}
	for _, k in ipairs(s.key_names) do key[#key + 1] = {name = k.name, q = qs[k.name], type = types[k.name]} end
	local names = {}
	for _, c in ipairs(s.cols) do names[#names + 1] = c.q end
	local knames, ktext = {}, {}
	for i, k in ipairs(key) do
		knames[#knames + 1] = k.q
		ktext[#ktext + 1] = string.format("%s::text AS k%d", k.q, i)
	end
	s.key = key
	s.row = "ROW(" .. table.concat(names, ", ") .. ")::text"
	s.order = table.concat(knames, ", ")
	s.ktext = table.concat(ktext, ", ")
	return s
end

-- WHERE for lo <= key < hi (a bound is a list of texts, one per key
-- column; nil: open), and its parameters
local function range(t, lo, hi)
	local conds, args = {}, {}
	local function bound(b, op)
		local ph = {}
		for i, v in ipairs(b) do
			args[#args + 1] = v
			ph[#ph + 1] = string.format("$%d::%s", #args, t.key[i].type)
		end
		if #t.key == 1 then
			conds[#conds + 1] = string.format("%s %s %s", t.key[1].q, op, ph[1])
		else
			conds[#conds + 1] = string.format("(%s) %s (%s)", t.order, op, table.concat(ph, ", "))
		end
	end
	if lo then bound(lo, ">=") end
	if hi then bound(hi, "<") end
	if #conds == 0 then return "true", args end
	return table.concat(conds, " AND "), args
end

local function key_text(t, row)
	local parts = {}
	for i, k in ipairs(t.key) do parts[#parts + 1] = k.name .. "=" .. row["k" .. i] end
	return table.concat(parts, ",")
end

local function bound_text(t, b)
	if #t.key == 1 then return b[1] end
	return "(" .. table.concat(b, ",") .. ")"
end

local function chunk_text(t, c)
	local k = #t.key == 1 and t.key[1].name or "(" .. t.order .. ")"
	if c.lo and c.hi then
		return string.format("%s >= %s and < %s", k, bound_text(t, c.lo), bound_text(t, c.hi))
	elseif c.lo then
		return string.format("%s >= %s", k, bound_text(t, c.lo))
	elseif c.hi then
		return string.format("%s < %s", k, bound_text(t, c.hi))
	end
	return "all rows"
end

-- the chunk bounds from the source: the key of every chunk_rows-th row
local function bounds(src, t, chunk_rows)
	local ks = {}
	for i, k in ipairs(t.key) do ks[#ks + 1] = string.format("s.%s::text AS k%d", k.q, i) end
	local rows, err = q(src, string.format("SELECT %s FROM (SELECT %s, row_number() OVER (ORDER BY %s) " ..
		"AS zdm_rn FROM %s) s WHERE s.zdm_rn %% $1 = 1 AND s.zdm_rn > 1 ORDER BY %s",
		table.concat(ks, ", "), t.order, t.order, t.ident,
		(function() local o = {} for _, k in ipairs(t.key) do o[#o + 1] = "s." .. k.q end
			return table.concat(o, ", ") end)()), {tostring(chunk_rows)})
	if not rows then return nil, "source: " .. t.name .. ": chunk bounds: " .. err end
	local out = {}
	for _, r in ipairs(rows) do
		local b = {}
		for i = 1, #t.key do b[i] = r["k" .. i] end
		out[#out + 1] = b
	end
	return out
end

-- count and order-independent checksum of lo <= key < hi, computed by the
-- server: "n:h"
local function sig(db, t, lo, hi)
	local where, args = range(t, lo, hi)
	local rows, err = q(db, string.format("SELECT count(*) AS n, " ..
		"coalesce(sum(hashtextextended(%s, 0)), 0)::text AS h FROM %s WHERE %s",
		t.row, t.ident, where), args)
	if not rows then return nil, err end
	return rows[1].n .. ":" .. rows[1].h, tonumber(rows[1].n)
end

-- {key text -> row hash} and the keys in order, for a small range
local function key_list(db, t, lo, hi)
	local where, args = range(t, lo, hi)
	local rows, err = q(db, string.format("SELECT %s, hashtextextended(%s, 0)::text AS zdm_h " ..
		"FROM %s WHERE %s ORDER BY %s", t.ktext, t.row, t.ident, where, t.order), args)
	if not rows then return nil, err end
	local map, order = {}, {}
	for _, r in ipairs(rows) do
		local k = key_text(t, r)
		map[k] = r.zdm_h
		order[#order + 1] = k
	end
	return map, order
end

-- the key at `offset` rows into lo <= key < hi
local function split_key(db, t, lo, hi, offset)
	local where, args = range(t, lo, hi)
	args[#args + 1] = tostring(offset)
	local rows, err = q(db, string.format("SELECT %s FROM %s WHERE %s ORDER BY %s OFFSET $%d LIMIT 1",
		t.ktext, t.ident, where, t.order, #args), args)
	if not rows then return nil, err end
	if #rows == 0 then return nil, "no row at offset " .. offset end
	local b = {}
	for i = 1, #t.key do b[i] = rows[1]["k" .. i] end
	return b
end

-- wait until the subscription has applied what the source holds now
-- (bounded by lag_wait); true when it has, or when no subscription links
-- the two sides (nothing to wait for)
local function catch_up(S)
	if not S.sub then return true end
	local rows = q(S.src, "SELECT pg_current_wal_insert_lsn()::text AS lsn")
	if not rows then return false end
	S.lag_waits = S.lag_waits + 1
	return pg.wait_applied(S.src, S.dst, {slot = S.sub.slot, subid = S.sub.oid, lsn = rows[1].lsn,
		poll = LAG_POLL, polls = math.max(1, S.p.lag_wait // LAG_POLL + 1)})
end

-- the differing keys of a small range, by the same rule as a chunk: source
-- list, wait for the subscription, target list, source list again; a key
-- whose two source reads agree and whose target differs is reported
local function leaf(S, t, lo, hi, found)
	local s1, order = key_list(S.src, t, lo, hi)
	if not s1 then return nil, "source: " .. order end
	catch_up(S)
	local d, dorder = key_list(S.dst, t, lo, hi)
	if not d then return nil, "target: " .. dorder end
	local s2, err = key_list(S.src, t, lo, hi)
	if not s2 then return nil, "source: " .. err end
	local seen = {}
	local function judge(k)
		if seen[k] then return end
		seen[k] = true
		if s1[k] ~= s2[k] or d[k] == s1[k] then return end
		if S.budget <= 0 then
			found.more = true
			return
		end
		local kind = s1[k] == nil and "only on the target" or d[k] == nil and "missing on the target" or "differs"
		found[#found + 1] = {key = k, kind = kind}
		S.budget = S.budget - 1
	end
	-- both lists are in key order: merge them, so keys come out in order
	local i, j = 1, 1
	while i <= #order or j <= #dorder do
		local a, b = order[i], dorder[j]
		if a ~= nil and a == b then
			judge(a)
			i, j = i + 1, j + 1
		elseif a ~= nil and (b == nil or d[a] == nil) then
			judge(a)
			i = i + 1
		else
			judge(b)
			j = j + 1
		end
	end
	return true
end

-- halve lo <= key < hi (ns rows on the source, nt on the target) by key
-- until the parts are small enough for key lists
local function bisect(S, t, lo, hi, ns, nt, found, depth)
	if S.budget <= 0 then
		found.more = true
		return true
	end
	if math.max(ns, nt) <= LEAF_ROWS or depth >= MAX_DEPTH then
		return leaf(S, t, lo, hi, found)
	end
	local db = ns >= nt and S.src or S.dst
	local mid, err = split_key(db, t, lo, hi, math.max(ns, nt) // 2)
	if not mid then return nil, err end
	for _, part in ipairs({{lo, mid}, {mid, hi}}) do
		local a, an = sig(S.src, t, part[1], part[2])
		if not a then return nil, "source: " .. an end
		local b, bn = sig(S.dst, t, part[1], part[2])
		if not b then return nil, "target: " .. bn end
		if a ~= b then
			local ok, e = bisect(S, t, part[1], part[2], an, bn, found, depth + 1)
			if not ok then return nil, e end
		end
	end
	return true
end

-- One chunk: "verified", rows | "hot", why | "diverged", rows, keys |
-- nil, error
local function check_chunk(S, t, c)
	local s1, n = sig(S.src, t, c.lo, c.hi)
	if not s1 then return nil, "source: " .. t.name .. ": " .. n end
	local d, e = sig(S.dst, t, c.lo, c.hi)
	if not d then return nil, "target: " .. t.name .. ": " .. e end
	local s2
	s2, e = sig(S.src, t, c.lo, c.hi)
	if not s2 then return nil, "source: " .. t.name .. ": " .. e end
	if s1 ~= s2 then return "hot", "the source changed between two reads" end
	if d == s1 then return "verified", n end
	if S.sub then
		-- maybe only lag: once the subscription has applied what the
		-- source holds now, read the target, then the source again
		if not catch_up(S) then
			return "hot", string.format("subscription %s did not catch up within lag_wait (%s)",
				S.sub.name, ms(S.p.lag_wait))
		end
		local nt
		d, nt = sig(S.dst, t, c.lo, c.hi)
		if not d then return nil, "target: " .. t.name .. ": " .. nt end
		local s3
		s3, e = sig(S.src, t, c.lo, c.hi)
		if not s3 then return nil, "source: " .. t.name .. ": " .. e end
		if s3 ~= s2 then return "hot", "the source changed while the subscription caught up" end
		if d == s3 then return "verified", n end
	end
	local _, nt = sig(S.dst, t, c.lo, c.hi)
	local found = {}
	local ok, err = bisect(S, t, c.lo, c.hi, n, nt or 0, found, 0)
	if not ok then return nil, t.name .. ": " .. err end
	if #found == 0 and not found.more then
		return "hot", "the difference went away while it was bisected"
	end
	return "diverged", n, found
end

-- what earlier attempts left: bounds per table, decided chunks per table
local function earlier(ctx)
	local plans, done = {}, {}
	for _, note in ipairs(ctx.notes or {}) do
		local d = note.data
		if type(d) == "table" and d.table then
			if note.event == "compare.chunks" then
				plans[d.table] = d
			elseif note.event == "compare.chunk" then
				done[d.table] = done[d.table] or {}
				done[d.table][d.chunk] = d
			end
		end
	end
	return plans, done
end

-- the subscription on the target that links it to the source: `name`, or
-- the only one in the target's database; nil when there is none
local function find_subscription(dst, name)
	local rows, err
	if name ~= "" then
		rows, err = q(dst, "SELECT oid::text AS oid, subname AS name, subslotname AS slot FROM pg_subscription " ..
			"WHERE subname = $1", {name})
		if not rows then return nil, "target: " .. err end
		if #rows == 0 then
			return nil, string.format("subscription %s does not exist on the target", name)
		end
		return rows[1]
	end
	rows, err = q(dst, "SELECT oid::text AS oid, subname AS name, subslotname AS slot FROM pg_subscription " ..
		"WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY subname")
	if not rows then return nil, "target: " .. err end
	if #rows > 1 then
		local names = {}
		for _, r in ipairs(rows) do names[#names + 1] = r.name end
		return nil, string.format("the target database has %d subscriptions (%s): name the one " ..
			"that replicates from the source with subscription:", #rows, table.concat(names, ", "))
	end
	return rows[1] or false
end

local function plural(n, one, many)
	return string.format("%d %s", n, n == 1 and one or (many or one .. "s"))
end

return {
	description = "Compare a table, or a publication's tables, between two PostgreSQL servers by primary-key chunk checksums, under writes",
	params = {
		{name = "source", type = "string", required = true,
		 doc = "libpq connection string or URI of the source, without the password"},
		{name = "target", type = "string", required = true,
		 doc = "libpq connection string or URI of the target, without the password"},
		{name = "source_password", type = "string",
		 doc = "the source role's password: ${{ secrets.NAME }}"},
		{name = "target_password", type = "string",
		 doc = "the target role's password: ${{ secrets.NAME }}"},
		{name = "table", type = "string",
		 doc = "the table to compare (name or schema.name); or publication:"},
		{name = "publication", type = "string",
		 doc = "compare every table of this publication (on the source); or table:"},
		{name = "subscription", type = "string", default = "",
		 doc = "subscription on the target that replicates from the source (lag waits); default: the only one of the target database, if any"},
		{name = "chunk_rows", type = "int", default = 10000,
		 doc = "rows per chunk: chunks are primary-key ranges cut from the source when the step starts"},
		{name = "max_retries", type = "int", default = 5,
		 doc = "rounds a chunk that keeps changing (hot) is read again; still hot after them: the run pauses (exit 4)"},
		{name = "retry_delay", type = "duration", default = "1s",
		 doc = "wait before each round of hot chunks"},
		{name = "lag_wait", type = "duration", default = "10s",
		 doc = "longest wait for the subscription to apply what the source holds before a differing chunk is read again"},
		{name = "max_report", type = "int", default = 20,
		 doc = "differing keys found, journaled and named in the failure, at most"},
		{name = "max_lag_bytes", type = "int", default = 0,
		 doc = "wait before a chunk while the source's replication lag (pg_stat_replication) exceeds this many bytes; 0 = no throttle"},
		{name = "throttle_interval", type = "duration", default = "1s",
		 doc = "how often the lag is measured again while throttled"},
		{name = "statement_timeout", type = "duration", default = 0,
		 doc = "longest run of one statement (one chunk's checksum); 0 = no limit"},
		{name = "connect_timeout", type = "duration", default = "10s",
		 doc = "longest wait to connect"},
	},
	read_only = true,	-- reads only (sessions are default_transaction_read_only)
	idempotent = true,	-- a rerun skips the chunks already decided

	validate = function(p)
		local problems = {}
		pg.check_conninfo(problems, p, "source")
		pg.check_conninfo(problems, p, "target")
		pg.check_secret(problems, p, "source_password")
		pg.check_secret(problems, p, "target_password")
		if p.table == nil and p.publication == nil then
			problems[#problems + 1] = "give table: (one table) or publication: (its tables)"
		elseif p.table ~= nil and p.publication ~= nil then
			problems[#problems + 1] = {param = "publication",
				message = "give table: or publication:, not both"}
		end
		for _, name in ipairs({"table", "publication"}) do
			local v = p[name]
			if v ~= nil and not zdm.is_expr(v) and v:match("^%s*$") then
				problems[#problems + 1] = {param = name, message = "must not be empty"}
			end
		end
		local function within(name, min, max)
			local v = p[name]
			if type(v) == "number" and (v < min or v > max) then
				problems[#problems + 1] = {param = name,
					message = string.format("must be from %d to %d", min, max)}
			end
		end
		within("chunk_rows", 1, 100000000)
		within("max_retries", 0, 1000)
		within("retry_delay", 0, 3600000)
		within("lag_wait", 0, 3600000)
		within("max_report", 1, 10000)
		within("max_lag_bytes", 0, math.maxinteger)
		within("throttle_interval", 10, 3600000)
		within("statement_timeout", 0, 86400000)
		within("connect_timeout", 1000, 3600000)
		return problems
	end,

	plan = function(p)
		local what = p.table and ("table " .. p.table) or ("the tables of publication " .. p.publication)
		local text = string.format("compare %s between source and target in primary-key chunks of %d rows " ..
			"(count and checksum computed by each server); a chunk that changes while read is read again " ..
			"up to %d times, %s apart, then the run pauses; a difference fails the step naming up to %d keys",
			what, p.chunk_rows, p.max_retries, ms(p.retry_delay), p.max_report)
		if p.max_lag_bytes > 0 then
			text = text .. string.format("; waits while replication lag > %d bytes", p.max_lag_bytes)
		end
		return text
	end,

	run = function(ctx, p)
		local src, err = connect(ctx, p, "source")
		if not src then return nil, err end
		local dst
		dst, err = connect(ctx, p, "target")
		if not dst then src:close() return nil, err end
		local function fail(msg) src:close() dst:close() return nil, msg end

		local specs
		specs, err = table_list(src, p)
		if not specs then return fail(err) end
		local tables = {}
		for _, spec in ipairs(specs) do
			local t
			t, err = resolve(src, dst, spec)
			if not t then return fail(err) end
			tables[#tables + 1] = t
		end
		local sub
		sub, err = find_subscription(dst, p.subscription)
		if sub == nil then return fail(err) end
		if sub then
			zdm.log(string.format("subscription %s (slot %s) links the target to the source: " ..
				"a differing chunk is read again once it has applied what the source holds",
				sub.name, sub.slot or "none"))
		end

		-- the chunks: the first attempt's, else cut now and journaled
		local plans, done = earlier(ctx)
		local resumed, total = 0, 0
		for _, t in ipairs(tables) do
			local plan = plans[t.name]
			local keynames = {}
			for _, k in ipairs(t.key) do keynames[#keynames + 1] = k.name end
			if plan then
				if table.concat(plan.key or {}, ",") ~= table.concat(keynames, ",") then
					return fail(string.format("the primary key of %s changed since the chunks were cut " ..
						"(%s, now %s): start a new run", t.name, table.concat(plan.key or {}, ","),
						table.concat(keynames, ",")))
				end
				t.bounds = plan.bounds or {}
			else
				t.bounds, err = bounds(src, t, p.chunk_rows)
				if not t.bounds then return fail(err) end
				zdm.note("compare.chunks", {table = t.name, key = keynames, chunk_rows = p.chunk_rows,
					bounds = t.bounds})
			end
			t.chunks = {}
			for i = 1, #t.bounds + 1 do
				t.chunks[i] = {i = i, lo = t.bounds[i - 1], hi = t.bounds[i]}
			end
			t.done = done[t.name] or {}
			total = total + #t.chunks
		end

		local S = {src = src, dst = dst, p = p, sub = sub or nil, lag_waits = 0, budget = p.max_report}
		local rows, diverged, verified, throttle_state, throttled = 0, {}, 0, {}, 0
		for _, t in ipairs(tables) do
			for i, d in pairs(t.done) do
				resumed = resumed + 1
				if d.status == "diverged" then
					diverged[#diverged + 1] = {t = t, chunk = i, keys = d.keys or {}, more = d.more}
					S.budget = S.budget - #(d.keys or {})
				else
					verified = verified + 1
				end
				rows = rows + (d.rows or 0)
			end
		end
		if resumed > 0 then
			zdm.log(string.format("resuming: %s of %d decided by earlier attempts", plural(resumed, "chunk"), total))
		end

		-- one chunk: decide it, or keep it for the next round
		local function visit(t, c, round)
			local waited, e = pg.throttle(p, src, nil, throttle_state, "compare")
			if not waited then return nil, e end
			throttled = throttled + waited
			local verdict, a, b = check_chunk(S, t, c)
			if not verdict then return nil, a end
			if verdict == "hot" then
				c.why = a
				zdm.note("compare.hot", {table = t.name, chunk = c.i, round = round, why = a})
				return "hot"
			end
			local note = {table = t.name, chunk = c.i, status = verdict, rows = a}
			if verdict == "diverged" then
				note.keys, note.more = b, b.more or nil
				b.more = nil
				diverged[#diverged + 1] = {t = t, chunk = c.i, keys = b, more = note.more}
			else
				verified = verified + 1
			end
			zdm.note("compare.chunk", note)
			rows = rows + a
			zdm.progress(string.format("%s: chunk %d/%d %s", t.name, c.i, #t.chunks, verdict))
			return verdict
		end

		local hot = {}
		for _, t in ipairs(tables) do
			for _, c in ipairs(t.chunks) do
				if not t.done[c.i] then
					local v, e = visit(t, c, 0)
					if not v then return fail(e) end
					if v == "hot" then hot[#hot + 1] = {t = t, c = c} end
				end
			end
		end
		local rounds = 0
		while #hot > 0 and rounds < p.max_retries do
			rounds = rounds + 1
			zdm.log(string.format("%s changing on the source: round %d of %d in %s",
				plural(#hot, "chunk"), rounds, p.max_retries, ms(p.retry_delay)))
			zdm.sleep(p.retry_delay)
			local still = {}
			for _, h in ipairs(hot) do
				local v, e = visit(h.t, h.c, rounds)
				if not v then return fail(e) end
				if v == "hot" then still[#still + 1] = h end
			end
			hot = still
		end
		src:close()
		dst:close()

		local outputs = {
			tables = #tables, chunks = total, verified_chunks = verified,
			diverged_chunks = #diverged, hot_chunks = #hot, resumed_chunks = resumed,
			rows = rows, lag_waits = S.lag_waits, throttled_ms = throttled,
		}
		if #diverged > 0 then
			local by, order = {}, {}
			for _, dv in ipairs(diverged) do
				local name = dv.t.name
				if not by[name] then
					by[name] = {chunks = 0, keys = {}, more = false, t = dv.t}
					order[#order + 1] = name
				end
				local e = by[name]
				e.chunks = e.chunks + 1
				for _, k in ipairs(dv.keys) do e.keys[#e.keys + 1] = k.key .. " " .. k.kind end
				e.more = e.more or dv.more or false
			end
			local parts = {}
			for _, name in ipairs(order) do
				local e = by[name]
				local s = string.format("%s differs in %s of %d: %s", name, plural(e.chunks, "chunk"),
					#e.t.chunks, table.concat(e.keys, "; "))
				if e.more then
					s = s .. string.format("; more rows differ (max_report %d reached)", p.max_report)
				end
				parts[#parts + 1] = s
			end
			return nil, "source and target differ: " .. table.concat(parts, "; ")
		end
		if #hot > 0 then
			local list = {}
			for i, h in ipairs(hot) do
				if i > 5 then
					list[#list + 1] = string.format("and %d more", #hot - 5)
					break
				end
				list[#list + 1] = string.format("%s chunk %d (%s): %s", h.t.name, h.c.i,
					chunk_text(h.t, h.c), h.c.why)
			end
			return {outputs = outputs, inconclusive = string.format("inconclusive: %s of %d still " ..
				"changing after max_retries (%d): %s; %d verified, no difference found",
				plural(#hot, "chunk"), total, p.max_retries, table.concat(list, "; "), verified)}
		end
		return {outputs = outputs}
	end,
}
