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

local pg = zdm.lib("db._pg")		-- connect, credential checks, the sequence helpers

local function connect(which, conninfo, pw)
	local db, err = pg.connect(conninfo, {password = pw, application_name = "zdm db.postgres_sequences"})
	if not db then return nil, which .. ": " .. err end
	return db
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
		seqs, err = pg.read_sequences(dst)
		dst:close()
		if not seqs then return nil, "target: " .. err end
		return {sequences = pg.sequences_before(seqs)}
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
		s_seqs, err = pg.read_sequences(src)
		if not s_seqs then return done(nil, "source: " .. err) end
		d_seqs, err = pg.read_sequences(dst)
		if not d_seqs then return done(nil, "target: " .. err) end
		local names
		names, err = pg.choose_sequences(src, s_seqs, p.sequences)
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
		s_seqs, err = pg.read_sequences(src)
		if not s_seqs then return nil, "source: " .. err end
		d_seqs, err = pg.read_sequences(dst)
		if not d_seqs then return nil, "target: " .. err end
		local names
		names, err = pg.choose_sequences(src, s_seqs, p.sequences)
		if not names then return nil, err end
		local missing = pg.lacking_sequences(names, d_seqs)
		if #missing > 0 then
			return nil, "refused before setting anything: the target lacks sequence(s) " ..
				table.concat(missing, ", ") .. ": create them first (db.postgres_sync copy_schema does)"
		end
		-- setval is not transactional: every check is done above, before the first
		local set, values = pg.set_sequences(dst, names, s_seqs, d_seqs, p.margin)
		if not set then return nil, values end
		zdm.log(string.format("set %d of %d sequence(s) on the target (margin %d)", set, #names, p.margin))
		src:close(); dst:close()
		local prior = ctx.prior or {sequences = pg.sequences_before(d_seqs)}
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
		local ok
		ok, err = pg.restore_sequences(dst, u.sequences)
		dst:close()
		if not ok then return nil, err end
		return nil
	end,
}
