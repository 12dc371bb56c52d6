-- db.postgres_sequences: copy sequence values from a source PostgreSQL to a
-- target at cut-over.  Logical replication carries rows, not sequences: a
-- target whose sequences still start at 1 would hand out ids the source
-- already used.  Each target sequence is set to the source's last value plus
-- `margin` (room for the writes that land on the source between this step
-- and the switch), with setval(seq, value, true): the next nextval() is
-- value + increment.
--
-- Every sequence is checked before any is set (it exists on the target).
-- snapshot() records the target's values first; undo puts them back
-- (a sequence never used before is reset to its start, is_called false).

local pg = zdm.lib("db._pg")		-- connect, credential checks

local function connect(which, conninfo, pw)
	local db, err = pg.connect(conninfo, {password = pw, application_name = "zdm db.postgres_sequences"})
	if not db then return nil, which .. ": " .. err end
	return db
end

local LIST = [[
	SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) AS ident,
	       schemaname || '.' || sequencename AS name, last_value, start_value, increment_by
	  FROM pg_sequences
	 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
	 ORDER BY 1]]

-- {name -> row} of the sequences on one side
local function read_all(db)
	local r, err = db:query(LIST)
	if not r then return nil, err end
	local out = {}
	for _, row in ipairs(r.rows) do out[row.name] = row end
	return out
end

-- the sequences this step handles on the source: the list given, or all
local function chosen(db, src_seqs, p)
	if #p.sequences == 0 then
		local names = {}
		for name in pairs(src_seqs) do names[#names + 1] = name end
		table.sort(names)
		return names
	end
	local out, missing = {}, {}
	for _, s in ipairs(p.sequences) do
		local r = db:query("SELECT n.nspname || '.' || c.relname AS name FROM pg_class c " ..
			"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1) AND c.relkind = 'S'", {s})
		if r and r.rows[1] then out[#out + 1] = r.rows[1].name else missing[#missing + 1] = s end
	end
	if #missing > 0 then return nil, "no such sequence on the source: " .. table.concat(missing, ", ") end
	return out
end

return {
	description = "Copy sequence values (+ margin) from a source PostgreSQL to a target at cut-over",
	params = {
		{name = "source", type = "string", required = true, doc = "libpq conninfo or URI of the source database"},
		{name = "target", type = "string", required = true, doc = "libpq conninfo or URI of the target database"},
		{name = "source_password", type = "string", default = "", doc = "from secrets"},
		{name = "target_password", type = "string", default = "", doc = "from secrets"},
		{name = "sequences", type = "list", default = {},
		 doc = "[schema.]name of each sequence; default: every sequence of the source database"},
		{name = "margin", type = "int", default = 1000,
		 doc = "added to each source value (ids the source may still hand out before the switch)"},
	},
	read_only = false,
	idempotent = true,

	validate = function(p)
		for _, k in ipairs({"source", "target"}) do
			if pg.has_password(p[k]) then
				return {param = k, message = "must not hold the password " ..
					"(params are journaled): give it as source_password/target_password from secrets"}
			end
		end
		for _, k in ipairs({"source_password", "target_password"}) do
			if not zdm.from_secrets(p[k]) then
				return {param = k, message = pg.secret_message(k)}
			end
		end
		if not zdm.is_expr(p.margin) and type(p.margin) == "number" and p.margin < 0 then
			return {param = "margin", message = "must be 0 or more"}
		end
	end,

	plan = function(p)
		local which = (type(p.sequences) == "table" and #p.sequences > 0) and table.concat(p.sequences, ", ")
			or "every sequence"
		return string.format("set %s on the target to the source's value + %s", which, tostring(p.margin))
	end,

	-- the target's values before the change, in undo's shape
	snapshot = function(ctx, p)
		local dst, err = connect("target", p.target, p.target_password)
		if not dst then return nil, err end
		local seqs
		seqs, err = read_all(dst)
		if not seqs then return nil, "target: " .. err end
		local out = {}
		for name, row in pairs(seqs) do
			out[#out + 1] = {name = name, ident = row.ident, last_value = row.last_value,
				start_value = row.start_value}
		end
		table.sort(out, function(a, b) return a.name < b.name end)
		return {sequences = out}
	end,

	-- --dry-run: both connections, the sequences on both sides, and the
	-- target user's right to setval them
	check = function(ctx, p)
		local src, err = connect("source", p.source, p.source_password)
		if not src then return nil, err end
		local dst
		dst, err = connect("target", p.target, p.target_password)
		if not dst then src:close() return nil, err end
		local function done(...) src:close() dst:close() return ... end
		local s_seqs, d_seqs
		s_seqs, err = read_all(src)
		if not s_seqs then return done(nil, "source: " .. err) end
		d_seqs, err = read_all(dst)
		if not d_seqs then return done(nil, "target: " .. err) end
		local names
		names, err = chosen(src, s_seqs, p)
		if not names then return done(nil, err) end
		local missing, denied = {}, {}
		for _, name in ipairs(names) do
			if not d_seqs[name] then
				missing[#missing + 1] = name
			else
				local r = dst:query("SELECT has_sequence_privilege($1, 'UPDATE') AS ok", {d_seqs[name].ident})
				if not r or r.rows[1].ok ~= "t" then denied[#denied + 1] = name end
			end
		end
		if #missing > 0 then
			return done(nil, "the target lacks sequence(s) " .. table.concat(missing, ", ") ..
				": create them first (db.postgres_sync copy_schema does)")
		end
		if #denied > 0 then
			return done(nil, "the target user may not setval sequence(s) " .. table.concat(denied, ", ") ..
				": GRANT UPDATE ON SEQUENCE ... to it")
		end
		return done(string.format("%d sequence(s) on both sides, setval allowed on the target", #names))
	end,

	run = function(ctx, p)
		local src, err = connect("source", p.source, p.source_password)
		if not src then return nil, err end
		local dst
		dst, err = connect("target", p.target, p.target_password)
		if not dst then return nil, err end
		local s_seqs, d_seqs
		s_seqs, err = read_all(src)
		if not s_seqs then return nil, "source: " .. err end
		d_seqs, err = read_all(dst)
		if not d_seqs then return nil, "target: " .. err end
		local names
		names, err = chosen(src, s_seqs, p)
		if not names then return nil, err end
		local missing = {}
		for _, name in ipairs(names) do
			if not d_seqs[name] then missing[#missing + 1] = name end
		end
		if #missing > 0 then
			return nil, "refused before setting anything: the target lacks sequence(s) " ..
				table.concat(missing, ", ") .. ": create them first (db.postgres_sync copy_schema does)"
		end
		-- setval is not transactional: every check is done above, before the first
		local set, values = 0, {}
		for _, name in ipairs(names) do
			local s = s_seqs[name]
			if s.last_value ~= nil then
				-- value + margin steps of the sequence's increment, in SQL (bigint)
				local r, e = dst:query("SELECT setval($1::regclass, $2::bigint + $3::bigint * $4::bigint, true) AS v",
					{d_seqs[name].ident, s.last_value, p.margin, s.increment_by})
				if not r then return nil, "target: setval " .. name .. ": " .. e end
				values[name] = r.rows[1].v
				set = set + 1
			end
		end
		zdm.log(string.format("set %d of %d sequence(s) on the target (margin %d)", set, #names, p.margin))
		src:close(); dst:close()
		local prior = ctx.prior
		if prior == nil then
			prior = {sequences = {}}
			for name, row in pairs(d_seqs) do
				prior.sequences[#prior.sequences + 1] = {name = name, ident = row.ident,
					last_value = row.last_value, start_value = row.start_value}
			end
		end
		-- undo only what this step set
		local keep = {}
		for _, e in ipairs(prior.sequences) do
			if values[e.name] then keep[#keep + 1] = e end
		end
		return {outputs = {sequences = set, values = values}, undo_data = {sequences = keep}}
	end,

	undo = function(ctx, p, u)
		if u == nil then
			return nil, "no undo_data was recorded for this step: check the target's sequences by hand"
		end
		local dst, err = connect("target", p.target, p.target_password)
		if not dst then return nil, err end
		for _, e in ipairs(u.sequences or {}) do
			local r, e2
			if e.last_value ~= nil then
				r, e2 = dst:query("SELECT setval($1::regclass, $2::bigint, true)", {e.ident, e.last_value})
			else
				r, e2 = dst:query("SELECT setval($1::regclass, $2::bigint, false)", {e.ident, e.start_value})
			end
			if not r then return nil, "target: setval " .. e.name .. ": " .. e2 end
		end
		dst:close()
		return nil
	end,
}
