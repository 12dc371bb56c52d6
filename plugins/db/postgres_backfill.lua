-- db.postgres_backfill: fill a column of a big table in batches, resumably.
--
-- One `UPDATE table SET <set> WHERE key BETWEEN $1 AND $2 [AND (<where>)]`
-- per batch of `batch_size` rows taken in key order, each batch its own
-- transaction: row locks are held for one batch only, the WAL a replica
-- must replay comes in small pieces, and autovacuum can keep up.  After each
-- commit the batch is journaled (`backfill.batch` {from, to, rows}), so a
-- rerun after a crash, a signal or a failed attempt (`zdm resume`, the step's
-- `retries`) starts after the last noted batch instead of from the start.
-- A crash between a batch's COMMIT and its note makes the rerun do that one
-- batch again: `set` must give the same result when run twice (it does when
-- it computes the new column from other columns, as a backfill does).
--
-- Throttling (gh-ost style): with `max_lag_bytes`, the replication lag is
-- measured before every batch and the backfill waits while it is above the
-- limit: on `replica_conninfo` (a streaming standby) as the distance from
-- the source's pg_current_wal_lsn() to the standby's pg_last_wal_replay_lsn();
-- without it, on the source, as the largest distance to what a connected
-- replica has replayed (pg_stat_replication, flush_lsn for clients such as
-- pg_receivewal that replay nothing).
--
-- Bounded: the run reads max(key) once, at its start, and journals it
-- (`backfill.bound`) before the first batch; batches stop at that key, and a
-- rerun keeps the first attempt's bound.  Rows the application inserts
-- meanwhile (above the bound) cannot keep the backfill running forever:
-- they are the application's job (it writes the new column too: dual write)
-- or a second pass's.  The output above_bound counts them at the end.
--
-- Every statement runs under `lock_timeout` (default 500 ms): a batch that
-- waits longer for a row lock held by the application gives up, rolls back
-- and is retried after a backoff (`backfill.lock_timeout` notes), as
-- db.postgres_sql does for DDL.

local pg = zdm.lib("db._pg")		-- connect, lock_timeout retries, checks
local ms = pg.ms

local INTEGER_TYPES = {smallint = true, integer = true, bigint = true}

-- plain (unquoted) identifiers only: they go into the SQL text as they are
local function check_ident(problems, p, name, dotted)
	local v = p[name]
	if v == nil or zdm.is_expr(v) then return end
	local id = "[%a_][%w_$]*"
	local ok = v:match("^" .. id .. "$") or (dotted and v:match("^" .. id .. "%." .. id .. "$"))
	if not ok then
		problems[#problems + 1] = {param = name, message = string.format(
			"'%s' is not a plain %s name (letters, digits, _ and $%s; quoted names are not supported)",
			v, dotted and "table" or "column", dotted and ", optionally schema.table" or "")}
	end
end

local function connect(ctx, conninfo, p, which)
	local db, err, what = pg.connect(conninfo, pg.step_options(ctx, p))
	if not db then
		if what == "connecting" then what = "connecting to the " .. which end
		return nil, what .. ": " .. err
	end
	return db
end

-- the database's clock in ms (the sandbox has none)
local function clock(db)
	local r = db:query("SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms")
	return r and tonumber(r.rows[1].ms) or nil
end

-- Runs `body(db)` in a transaction, retried on a lock timeout.  `what`
-- names the notes ("backfill" -> backfill.lock_timeout).  Returns body's
-- value, or nil, message.
local function in_transaction(p, db, what, batch, body)
	local timeouts = 0
	while true do
		local ok, err, state = db:exec("BEGIN")
		if not ok then return nil, "BEGIN: " .. tostring(err) end
		local res
		res, err, state = body(db)
		if res then
			ok, err, state = db:exec("COMMIT")
			if ok then return res end
		end
		db:exec("ROLLBACK")
		if state ~= pg.LOCK_NOT_AVAILABLE then return nil, tostring(err) end
		timeouts = timeouts + 1
		local again, msg = pg.lock_retry(p, timeouts, err, {
			what = "batch " .. batch, holder = "a transaction holds locks on these rows",
			event = what .. ".lock_timeout", data = {batch = batch},
			log = string.format("batch %d: no lock", batch),
		})
		if not again then return nil, msg end
	end
end

-- The batch loop shared by run (set, where) and undo (undo_set, undo_where).
-- `cursor`: the last key done (nil: from the start); `upper`: the last key
-- to do (fixed when the step started; nil: the table was empty, nothing to
-- do); `event`: the note of a finished batch.  Returns {batches, rows,
-- throttled_ms, last}, or nil, msg.
local function batches(ctx, p, db, replica, set, where, cursor, upper, event, first_batch)
	local k, t = p.key, p.table
	local filter = where and (" AND (" .. where .. ")") or ""
	local out = {batches = 0, rows = 0, throttled_ms = 0}
	if upper == nil then return out end
	-- the next batch: up to batch_size keys after the cursor, up to the bound
	local bounds_from_start = string.format("SELECT min(%s)::text AS lo, max(%s)::text AS hi, " ..
		"count(*) AS n FROM (SELECT %s FROM %s WHERE %s <= $2%s ORDER BY %s LIMIT $1) b",
		k, k, k, t, k, filter, k)
	local bounds_after = string.format("SELECT min(%s)::text AS lo, max(%s)::text AS hi, " ..
		"count(*) AS n FROM (SELECT %s FROM %s WHERE %s > $2 AND %s <= $3%s ORDER BY %s LIMIT $1) b",
		k, k, k, t, k, k, filter, k)
	local update = string.format("UPDATE %s SET %s WHERE %s BETWEEN $1 AND $2%s", t, set, k, filter)
	local state = {}
	local n = first_batch
	while true do
		local waited, err = pg.throttle(p, db, replica, state, "backfill")
		if not waited then return nil, err end
		out.throttled_ms = out.throttled_ms + waited
		local done
		local res, msg = in_transaction(p, db, event:match("^[^.]+"), n, function(c)
			local r, e, st
			if cursor == nil then
				r, e, st = c:query(bounds_from_start, {tostring(p.batch_size), upper})
			else
				r, e, st = c:query(bounds_after, {tostring(p.batch_size), cursor, upper})
			end
			if not r then return nil, "finding batch " .. n .. ": " .. e, st end
			local b = r.rows[1]
			if tonumber(b.n) == 0 then
				done = true
				return {rows = 0}
			end
			local u
			u, e, st = c:query(update, {b.lo, b.hi})
			if not u then
				return nil, string.format("batch %d (%s %s..%s): %s", n, k, b.lo, b.hi, e), st
			end
			return {from = b.lo, to = b.hi, rows = u.affected, keys = tonumber(b.n)}
		end)
		if not res then return nil, msg end
		if done then break end
		-- committed: journal it before anything else, so a rerun skips it
		zdm.note(event, {batch = n, from = res.from, to = res.to, rows = res.rows})
		out.batches = out.batches + 1
		out.rows = out.rows + res.rows
		out.last = res.to
		cursor = res.to
		zdm.progress(string.format("batch %d: %s up to %s, %d rows in all", n, k, res.to, out.rows))
		n = n + 1
		if res.keys < p.batch_size then break end	-- that was the last one
		if p.pause > 0 then zdm.sleep(p.pause) end
	end
	return out
end

local function open(ctx, p)
	local db, err = connect(ctx, p.conninfo, p, "database")
	if not db then return nil, err end
	local replica
	if p.max_lag_bytes > 0 and p.replica_conninfo then
		replica, err = connect(ctx, p.replica_conninfo, p, "replica")
		if not replica then db:close() return nil, err end
	end
	-- the key must be an integer column of the table
	local r, e = db:query("SELECT format_type(atttypid, NULL) AS type FROM pg_attribute " ..
		"WHERE attrelid = $1::regclass AND attname = $2 AND attnum > 0 AND NOT attisdropped",
		{p.table, p.key})
	local problem
	if not r then
		problem = string.format("table '%s': %s", p.table, e)
	elseif #r.rows == 0 then
		problem = string.format("table '%s' has no column '%s'", p.table, p.key)
	elseif not INTEGER_TYPES[r.rows[1].type] then
		problem = string.format("key '%s' is %s: it must be an integer column " ..
			"(smallint, integer or bigint), the table's primary key", p.key, r.rows[1].type)
	end
	if problem then
		db:close()
		if replica then replica:close() end
		return nil, problem, "check"
	end
	return db, replica
end

local function close(db, replica)
	db:close()
	if replica then replica:close() end
end

-- The upper key bound: the one an earlier attempt noted as `event`, else
-- max(key) now, noted (on disk before the first batch).  Returns the bound
-- (text; nil when the table is empty), or nil, message, "error".
local function upper_bound(ctx, p, db, event)
	for _, note in ipairs(ctx.notes or {}) do
		if note.event == event and type(note.data) == "table" then
			return note.data.upper, nil, nil, true
		end
	end
	local r, err = db:query(string.format("SELECT max(%s)::text AS hi FROM %s", p.key, p.table))
	if not r then return nil, string.format("reading max(%s) of %s: %s", p.key, p.table, err), "error" end
	local hi = r.rows[1].hi
	zdm.note(event, {upper = hi})
	return hi
end

-- rows above the bound that the batches left (inserted since the bound was
-- read); nil when it cannot tell
local function above_bound(p, db, upper, where)
	local filter = where and (" AND (" .. where .. ")") or ""
	local r
	if upper == nil then
		r = db:query(string.format("SELECT count(*) AS n FROM %s WHERE true%s", p.table, filter))
	else
		r = db:query(string.format("SELECT count(*) AS n FROM %s WHERE %s > $1%s", p.table, p.key, filter),
			{upper})
	end
	return r and tonumber(r.rows[1].n) or nil
end

-- what earlier attempts finished: the last noted batch of `event`
local function resume_point(ctx, event)
	local cursor, batches, rows, last = nil, 0, 0, 0
	for _, note in ipairs(ctx.notes or {}) do
		if note.event == event and type(note.data) == "table" then
			cursor = note.data.to
			batches = batches + 1
			rows = rows + (note.data.rows or 0)
			last = note.data.batch or last
		end
	end
	return cursor, batches, rows, last
end

return {
	description = "Fill a column in batches by primary key, one transaction each, resumable, throttled by replication lag",
	params = {
		{name = "conninfo", type = "string", required = true,
		 doc = "libpq connection string or URI of the source (primary), without the password"},
		{name = "password", type = "string",
		 doc = "the role's password (source and replica): ${{ secrets.NAME }}"},
		{name = "table", type = "string", required = true,
		 doc = "table to update: name or schema.name"},
		{name = "key", type = "string", required = true,
		 doc = "integer primary key column the batches follow"},
		{name = "set", type = "string", required = true,
		 doc = "the SET list: \"email_lower = lower(email)\""},
		{name = "where", type = "string",
		 doc = "extra predicate: only rows matching it are updated (and counted in batches)"},
		{name = "batch_size", type = "int", default = 1000,
		 doc = "rows per batch (per transaction)"},
		{name = "pause", type = "duration", default = 0,
		 doc = "sleep between two batches"},
		{name = "max_lag_bytes", type = "int", default = 0,
		 doc = "wait before a batch while replication lag exceeds this many bytes; 0 = no throttle"},
		{name = "replica_conninfo", type = "string",
		 doc = "standby to measure the lag on; default: pg_stat_replication on the source"},
		{name = "throttle_interval", type = "duration", default = "1s",
		 doc = "how often the lag is measured again while throttled"},
		{name = "undo_set", type = "string",
		 doc = "SET list that puts the column back (\"email_lower = NULL\"); without it undo leaves the rows"},
		{name = "undo_where", type = "string",
		 doc = "predicate for the undo's batches (default: every row)"},
		{name = "lock_timeout", type = "duration", default = "500ms",
		 doc = "longest wait for a lock before a batch rolls back and is retried; 0 = no limit"},
		{name = "lock_retries", type = "int", default = 20,
		 doc = "retries of one batch after lock timeouts before the step fails"},
		{name = "lock_retry_delay", type = "duration", default = "1s",
		 doc = "wait before the first retry; doubles each retry (with jitter)"},
		{name = "lock_retry_max_delay", type = "duration", default = "1m",
		 doc = "longest wait between two retries"},
		{name = "statement_timeout", type = "duration", default = 0,
		 doc = "longest run of one statement; 0 = no limit"},
		{name = "connect_timeout", type = "duration", default = "10s",
		 doc = "longest wait to connect"},
	},
	read_only = false,
	idempotent = true,	-- a rerun resumes after the last noted batch

	validate = function(p)
		local problems = {}
		pg.check_conninfo(problems, p, "conninfo")
		pg.check_conninfo(problems, p, "replica_conninfo")
		pg.check_secret(problems, p, "password")
		check_ident(problems, p, "table", true)
		check_ident(problems, p, "key", false)
		for _, name in ipairs({"set", "where", "undo_set", "undo_where"}) do
			local v = p[name]
			if v ~= nil and not zdm.is_expr(v) and v:match("^%s*$") then
				problems[#problems + 1] = {param = name, message = "must not be empty"}
			end
		end
		if p.undo_where ~= nil and p.undo_set == nil then
			problems[#problems + 1] = {param = "undo_where", message = "needs undo_set"}
		end
		local function range(name, min, max)
			local v = p[name]
			if type(v) == "number" and (v < min or v > max) then
				problems[#problems + 1] = {param = name,
					message = string.format("must be from %d to %d", min, max)}
			end
		end
		range("batch_size", 1, 10000000)
		range("max_lag_bytes", 0, math.maxinteger)
		range("lock_retries", 0, 1000)
		range("lock_timeout", 0, 3600000)
		range("lock_retry_delay", 1, 3600000)
		range("lock_retry_max_delay", 1, 3600000)
		range("throttle_interval", 10, 3600000)
		range("pause", 0, 3600000)
		range("statement_timeout", 0, 86400000)
		range("connect_timeout", 1000, 3600000)
		if p.replica_conninfo ~= nil and p.max_lag_bytes == 0 then
			problems[#problems + 1] = {param = "replica_conninfo",
				message = "is only used with max_lag_bytes (the lag limit): set it too"}
		end
		return problems
	end,

	-- without undo_set a rollback leaves the updated rows as they are
	can_undo = function(p) return p.undo_set ~= nil end,

	plan = function(p)
		local text = string.format("UPDATE %s SET %s WHERE %s BETWEEN <from> AND <to>%s, " ..
			"in batches of %d rows by %s, one transaction each (lock_timeout %s)",
			p.table, p.set, p.key, p.where and (" AND (" .. p.where .. ")") or "",
			p.batch_size, p.key, ms(p.lock_timeout))
		if p.pause > 0 then text = text .. ", " .. ms(p.pause) .. " between batches" end
		if p.max_lag_bytes > 0 then
			text = text .. string.format("; waits while replication lag > %d bytes (%s)",
				p.max_lag_bytes, p.replica_conninfo and "measured on replica_conninfo"
					or "pg_stat_replication on the source")
		end
		if p.undo_set then
			return text .. string.format("; undo: SET %s%s in the same batches", p.undo_set,
				p.undo_where and (" WHERE " .. p.undo_where) or "")
		end
		return text .. "; no undo_set: a rollback leaves the updated rows as they are"
	end,

	-- a failed or interrupted backfill may have committed batches: record
	-- the undo before the first one, so a rollback undoes those too
	snapshot = function(ctx, p)
		if p.undo_set == nil then return nil end
		return {undo_set = p.undo_set, undo_where = p.undo_where}
	end,

	-- --dry-run: the connections, the table and its key, and the privileges
	-- the batches need (read-only: no batch runs)
	check = function(ctx, p)
		local db, replica, what = open(ctx, p)
		if not db then return nil, replica end
		local r, e = db:query("SELECT has_table_privilege($1, 'SELECT') AS s, " ..
			"has_table_privilege($1, 'UPDATE') AS u, current_user AS who", {p.table})
		close(db, replica)
		if not r then return nil, string.format("table '%s': %s", p.table, e) end
		local row = r.rows[1]
		if row.s ~= "t" or row.u ~= "t" then
			return nil, string.format("user %s lacks %s on table %s: GRANT SELECT, UPDATE ON %s TO %s",
				row.who, row.s ~= "t" and "SELECT" or "UPDATE", p.table, p.table, row.who)
		end
		return string.format("table %s with integer key %s, SELECT and UPDATE granted to %s%s",
			p.table, p.key, row.who, replica and "; the replica answers" or "")
	end,

	run = function(ctx, p)
		local cursor, before_batches, before_rows, last_batch = resume_point(ctx, "backfill.batch")
		if cursor then
			zdm.log(string.format("resuming after %s %s: %d batches (%d rows) done by earlier attempts",
				p.key, cursor, before_batches, before_rows))
		end
		local db, replica = open(ctx, p)
		if not db then return nil, replica end
		local t0 = clock(db)
		-- the last key this backfill does, fixed at its start
		local upper, uerr, failed, kept = upper_bound(ctx, p, db, "backfill.bound")
		if failed then close(db, replica) return nil, uerr end
		if not kept then
			zdm.log(upper and string.format("up to %s %s (max(%s) now; rows inserted from here on are " ..
				"the application's to fill)", p.key, upper, p.key) or "the table is empty: nothing to fill")
		end
		local out, err = batches(ctx, p, db, replica, p.set, p.where, cursor, upper,
			"backfill.batch", last_batch + 1)
		local t1 = clock(db)
		local above = out and above_bound(p, db, upper, p.where)
		close(db, replica)
		if not out then return nil, err end
		if above and above > 0 then
			zdm.log(string.format("%d row(s) above %s %s were inserted during the backfill and not " ..
				"filled: the application's dual write, or a second pass, must cover them",
				above, p.key, tostring(upper)))
		end
		local undo_data = nil
		if p.undo_set then undo_data = {undo_set = p.undo_set, undo_where = p.undo_where} end
		return {
			outputs = {
				batches = before_batches + out.batches,
				rows = before_rows + out.rows,
				resumed_batches = before_batches,
				throttled_ms = out.throttled_ms,
				duration_ms = (t0 and t1) and (t1 - t0) or nil,
				upper_bound = upper,
				above_bound = above,
			},
			undo_data = undo_data,
		}
	end,

	undo = function(ctx, p, u)
		local set, where
		if u ~= nil and u.undo_set ~= nil then
			set, where = u.undo_set, u.undo_where
		elseif p.undo_set ~= nil then
			set, where = p.undo_set, p.undo_where
		else
			return {left_in_place = "no undo_set: the updated rows are left as they are"}
		end
		local cursor, _, _, last_batch = resume_point(ctx, "backfill.undo_batch")
		local db, replica, why = open(ctx, p)
		if not db then
			-- run makes the same check before its first batch: when it fails
			-- and no batch was noted, run changed nothing
			if why == "check" and resume_point(ctx, "backfill.batch") == nil then
				return {nothing_to_undo = replica .. " (so no batch ran)"}
			end
			return nil, replica
		end
		-- the rows run changed: up to run's bound; without one (a journal
		-- from before bounds), max(key) when the undo starts
		local upper, failed, kept
		for _, note in ipairs(ctx.notes or {}) do
			if note.event == "backfill.bound" and type(note.data) == "table" and not kept then
				upper, kept = note.data.upper, true
			end
		end
		if not kept then
			local uerr
			upper, uerr, failed = upper_bound(ctx, p, db, "backfill.undo_bound")
			if failed then close(db, replica) return nil, uerr end
		end
		local out, err = batches(ctx, p, db, replica, set, where, cursor, upper,
			"backfill.undo_batch", last_batch + 1)
		close(db, replica)
		if not out then return nil, err end
		return nil
	end,
}
