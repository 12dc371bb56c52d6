-- db._pg: what the db.* PostgreSQL plugins share.  A plugin library, not a
-- step type (its file name starts with '_'): a plugin loads it at its top
-- level with `local pg = zdm.lib("db._pg")` (docs/plugins.md, "zdm.lib").
--
--   pg.LOCK_NOT_AVAILABLE          SQLSTATE 55P03: lock_timeout expired
--   pg.secret_message(name)        the message for a credential not from secrets
--   pg.check_secret(problems, p, name)
--   pg.has_password(v)             a conninfo or URI that holds a password
--   pg.check_conninfo(problems, p, name)
--   pg.ms(v)                       "500ms", "2s", "1m", "none" for a duration in ms
--   pg.connect(conninfo, o)        connect, then SET lock_timeout
--   pg.step_options(ctx, p)        pg.connect's options from the usual params
--   pg.backoff(p, n)               the wait before lock-timeout retry n
--   pg.lock_retry(p, n, err, o)    after lock timeout n: give up, or note and wait
--   pg.lag_bytes(db, replica)      replication lag in bytes (and replicas seen)
--   pg.throttle(p, db, replica, state, area)
--                                  wait while the lag is above p.max_lag_bytes
--   pg.applied(src, dst, slot, subid, lsn)
--                                  has the subscription applied up to lsn?
--   pg.wait_applied(src, dst, o)   wait (bounded) until it has
--   pg.SAME_TEXT                   session settings that make row text alike
--
-- Sequences at cut-over (db.postgres_sequences, db.pgbouncer's cutover):
--   pg.read_sequences(db)          {name -> row} of a database's sequences
--   pg.choose_sequences(db, seqs, list)   the names a step handles
--   pg.lacking_sequences(names, d_seqs)   those the target lacks
--   pg.set_sequences(dst, names, s_seqs, d_seqs, margin, o)   setval each
--   pg.sequences_before(d_seqs, names)    the target's values, in undo's shape
--   pg.restore_sequences(dst, list)       setval them back

local M = {}

M.LOCK_NOT_AVAILABLE = "55P03"

-- for a credential that zdm.from_secrets() refuses
local SECRET_MSG = "must come from secrets (NAME: ${{ secrets.NAME }}): " ..
	"zdm writes params to the journal and only secrets are kept out of it"

function M.secret_message(name)
	return (SECRET_MSG:gsub("NAME:", name .. ":", 1))
end

-- p[name] (a password) must be a ${{ secrets.* }} value, or absent
function M.check_secret(problems, p, name)
	if not zdm.from_secrets(p[name]) then
		problems[#problems + 1] = {param = name, message = M.secret_message(name)}
	end
end

-- a conninfo ("password=...") or URI ("scheme://user:pw@host") that holds a
-- password: params are journaled, so it would be too
function M.has_password(v)
	return type(v) == "string" and not zdm.is_expr(v) and
		(v:lower():find("password%s*=") ~= nil or v:find("^%a[%w+.-]*://[^/@]*:[^/@]*@") ~= nil)
end

function M.check_conninfo(problems, p, name)
	local c = p[name]
	if c == nil or zdm.is_expr(c) then return end
	if c:match("^%s*$") then
		problems[#problems + 1] = {param = name, message = "must be a libpq connection string"}
	elseif M.has_password(c) then
		problems[#problems + 1] = {param = name,
			message = "must not hold a password (it would be journaled): give it as " ..
				"`password: ${{ secrets.NAME }}`"}
	end
end

function M.ms(v)
	if v == 0 then return "none" end
	if v % 60000 == 0 and v >= 60000 then return string.format("%dm", v // 60000) end
	if v % 1000 == 0 and v >= 1000 then return string.format("%ds", v // 1000) end
	return string.format("%dms", v)
end

-- zdm.pg.connect with o = {password ("" or nil: none), connect_timeout (ms),
-- statement_timeout (ms, 0 or nil: none), application_name, lock_timeout
-- (ms, SET for the whole session; nil: the server's)}.  Returns the
-- connection, or nil, message, what failed: "connecting" or "setting
-- lock_timeout" (the connection is closed then).
function M.connect(conninfo, o)
	local st = o.statement_timeout
	local db, err = zdm.pg.connect(conninfo, {
		password = o.password ~= "" and o.password or nil,
		connect_timeout = o.connect_timeout,
		statement_timeout = st ~= nil and st > 0 and st or nil,
		application_name = o.application_name,
	})
	if not db then return nil, tostring(err), "connecting" end
	if o.lock_timeout ~= nil then
		-- every statement of the session gives up on a lock it cannot get
		-- within lock_timeout, instead of queueing the application behind it
		local ok, e = db:exec(string.format("SET lock_timeout = %d", o.lock_timeout))
		if not ok then
			db:close()
			return nil, tostring(e), "setting lock_timeout"
		end
	end
	return db
end

-- the options of a step with the params password, connect_timeout,
-- statement_timeout and lock_timeout (db.postgres_sql, db.postgres_backfill)
function M.step_options(ctx, p)
	return {
		password = p.password,
		connect_timeout = p.connect_timeout,
		statement_timeout = p.statement_timeout,
		application_name = "zdm " .. ctx.step_id,
		lock_timeout = p.lock_timeout,
	}
end

-- the wait before retry number `n` (1-based): lock_retry_delay doubling up to
-- lock_retry_max_delay, then 50-100 % of it (jitter, so two zdm runs do not
-- retry in step); pgroll backs off on 55P03 the same way
function M.backoff(p, n)
	local d = p.lock_retry_delay
	for _ = 2, n do
		d = d * 2
		if d >= p.lock_retry_max_delay then break end
	end
	if d > p.lock_retry_max_delay then d = p.lock_retry_max_delay end
	return d // 2 + math.random(0, d - d // 2)
end

-- After lock timeout number `n` (SQLSTATE 55P03, error message `err`): past
-- p.lock_retries returns false, message; else journals a note o.event with
-- o.data plus {retry, lock_timeout_ms, retry_in_ms, error}, logs it, sleeps
-- the backoff and returns true (retry).  o.what starts the message ("sql",
-- "batch 3"), o.holder says who holds the lock, o.log starts the log line;
-- o.progress: show it beside the running step too.
function M.lock_retry(p, n, err, o)
	if n > p.lock_retries then
		return false, string.format("%s: gave up after %d lock timeouts of %s each " ..
			"(lock_retries: %d): %s; %s: look for it in pg_stat_activity and pg_locks",
			o.what, n, M.ms(p.lock_timeout), p.lock_retries, err, o.holder)
	end
	local wait = M.backoff(p, n)
	local data = o.data or {}
	data.retry, data.lock_timeout_ms, data.retry_in_ms, data.error = n, p.lock_timeout, wait, err
	zdm.note(o.event, data)
	if o.progress then
		zdm.progress(string.format("lock timeout %d/%d (%s): retry in %s",
			n, p.lock_retries, M.ms(p.lock_timeout), M.ms(wait)))
	end
	zdm.log(string.format("%s within %s (retry %d of %d in %s): %s",
		o.log, M.ms(p.lock_timeout), n, p.lock_retries, M.ms(wait), err))
	zdm.sleep(wait)
	return true
end

-- ---- sequences ------------------------------------------------------------

local SEQUENCES = [[
	SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename) AS ident,
	       schemaname || '.' || sequencename AS name, last_value, start_value, increment_by
	  FROM pg_sequences
	 WHERE schemaname NOT IN ('pg_catalog', 'information_schema')
	 ORDER BY 1]]

-- {"schema.name" -> {ident, name, last_value (nil: never used), start_value,
-- increment_by}} of the sequences of db's database; nil, message
function M.read_sequences(db)
	local r, err = db:query(SEQUENCES)
	if not r then return nil, err end
	local out = {}
	for _, row in ipairs(r.rows) do out[row.name] = row end
	return out
end

-- The sequences a step handles, as "schema.name", sorted: every one of the
-- source's (`s_seqs`) when `list` is empty, else each of `list`
-- ([schema.]name, resolved on the source `db`); nil, message naming those
-- the source lacks
function M.choose_sequences(db, s_seqs, list)
	if list == nil or #list == 0 then
		local names = {}
		for name in pairs(s_seqs) do names[#names + 1] = name end
		table.sort(names)
		return names
	end
	local out, missing = {}, {}
	for _, s in ipairs(list) do
		local r = db:query("SELECT n.nspname || '.' || c.relname AS name FROM pg_class c " ..
			"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass($1) AND c.relkind = 'S'", {s})
		if r and r.rows[1] then out[#out + 1] = r.rows[1].name else missing[#missing + 1] = s end
	end
	if #missing > 0 then return nil, "no such sequence on the source: " .. table.concat(missing, ", ") end
	return out
end

-- the names of `names` that the target (`d_seqs`) lacks
function M.lacking_sequences(names, d_seqs)
	local missing = {}
	for _, name in ipairs(names) do
		if not d_seqs[name] then missing[#missing + 1] = name end
	end
	return missing
end

-- Set each target sequence of `names` to the source's last_value + margin
-- steps of its increment, setval(..., true): the next nextval() hands out
-- the value after.  A sequence never used on the source is left alone.
-- Every name must be in d_seqs (check with lacking_sequences first: setval
-- is not transactional).  o.never_back: a target sequence already past
-- that value (it handed out ids of its own) keeps its value.  Returns the
-- number set and {name -> value set}, or nil, message.
function M.set_sequences(dst, names, s_seqs, d_seqs, margin, o)
	local sql = "SELECT setval($1::regclass, $2::bigint + $3::bigint * $4::bigint, true) AS v"
	if o and o.never_back then
		sql = "SELECT setval($1::regclass, CASE WHEN $4::bigint > 0 " ..
			"THEN greatest($2::bigint + $3::bigint * $4::bigint, $5::bigint) " ..
			"ELSE least($2::bigint + $3::bigint * $4::bigint, $5::bigint) END, true) AS v"
	end
	local set, values = 0, {}
	for _, name in ipairs(names) do
		local s = s_seqs[name]
		if s.last_value ~= nil then
			local args = {d_seqs[name].ident, s.last_value, margin, s.increment_by}
			if o and o.never_back then
				-- greatest/least ignore NULL: a target sequence never used
				args[5] = d_seqs[name].last_value or zdm.pg.null
			end
			local r, e = dst:query(sql, args)
			if not r then return nil, "target: setval " .. name .. ": " .. e end
			values[name] = r.rows[1].v
			set = set + 1
		end
	end
	return set, values
end

-- The target's values of the sequences in `only` ({name -> true}; nil:
-- all of d_seqs), sorted, in the shape restore_sequences takes
function M.sequences_before(d_seqs, only)
	local out = {}
	for name, row in pairs(d_seqs) do
		if only == nil or only[name] then
			out[#out + 1] = {name = name, ident = row.ident, last_value = row.last_value,
				start_value = row.start_value}
		end
	end
	table.sort(out, function(a, b) return a.name < b.name end)
	return out
end

-- Put the target's sequences back: a value that was set, setval(v, true);
-- one never used, its start with is_called false.  nil, or nil, message.
function M.restore_sequences(dst, list)
	for _, e in ipairs(list or {}) do
		local r, err
		if e.last_value ~= nil then
			r, err = dst:query("SELECT setval($1::regclass, $2::bigint, true)", {e.ident, e.last_value})
		else
			r, err = dst:query("SELECT setval($1::regclass, $2::bigint, false)", {e.ident, e.start_value})
		end
		if not r then return nil, "target: setval " .. e.name .. ": " .. err end
	end
	return true
end

-- ---- replication lag and apply -------------------------------------------

-- The replication lag in bytes, or nil, message.  With `replica` (a
-- streaming standby): from the source's pg_current_wal_lsn() to the
-- standby's pg_last_wal_replay_lsn().  Without: the largest distance on the
-- source to what a client in pg_stat_replication has replayed (flush_lsn for
-- clients such as pg_receivewal that replay nothing; a logical walsender's
-- replay_lsn is what its subscriber confirmed), and as a second value how
-- many clients there are.
function M.lag_bytes(db, replica)
	if replica then
		local r, err = replica:query("SELECT coalesce(pg_last_wal_replay_lsn(), " ..
			"pg_last_wal_receive_lsn())::text AS lsn")
		if not r then return nil, "measuring the replica's replay position: " .. err end
		local lsn = r.rows[1].lsn
		if lsn == nil then
			return nil, "replica_conninfo is not a standby in recovery (pg_last_wal_replay_lsn() is NULL)"
		end
		r, err = db:query("SELECT greatest(pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn), 0)::bigint AS lag",
			{lsn})
		if not r then return nil, "measuring the lag: " .. err end
		return tonumber(r.rows[1].lag)
	end
	local r, err = db:query("SELECT coalesce(max(pg_wal_lsn_diff(pg_current_wal_lsn(), " ..
		"coalesce(replay_lsn, flush_lsn, write_lsn, sent_lsn))), 0)::bigint AS lag, " ..
		"count(*) AS replicas FROM pg_stat_replication")
	if not r then return nil, "measuring the lag in pg_stat_replication: " .. err end
	return tonumber(r.rows[1].lag), tonumber(r.rows[1].replicas)
end

-- gh-ost style: wait while the lag is above p.max_lag_bytes, measuring again
-- every p.throttle_interval; journaled as AREA.throttle and
-- AREA.throttle_end.  `state` is the caller's table (logs "no replica" once).
-- Returns the ms waited, or nil, message.
function M.throttle(p, db, replica, state, area)
	if p.max_lag_bytes <= 0 then return 0 end
	local waited, noted = 0, false
	while true do
		local lag, replicas = M.lag_bytes(db, replica)
		if not lag then return nil, replicas end
		if replicas == 0 and not state.warned then
			state.warned = true
			zdm.log("max_lag_bytes: no replica in pg_stat_replication; not throttled " ..
				"while none is connected")
		end
		if lag <= p.max_lag_bytes then
			if noted then
				zdm.note(area .. ".throttle_end", {lag_bytes = lag, waited_ms = waited})
			end
			return waited
		end
		if not noted then
			noted = true
			zdm.note(area .. ".throttle", {lag_bytes = lag, max_lag_bytes = p.max_lag_bytes})
			zdm.log(string.format("replication lag %d bytes > max_lag_bytes %d: waiting",
				lag, p.max_lag_bytes))
		end
		zdm.progress(string.format("throttled: replication lag %d bytes > %d", lag, p.max_lag_bytes))
		zdm.sleep(p.throttle_interval)
		waited = waited + p.throttle_interval
	end
end

-- Whether the subscription (its slot `slot` on the source `src`, oid
-- `subid` on the target `dst`; either may be nil) has applied everything
-- the source had at WAL position `lsn`: its replication origin on the
-- target has applied a commit at or past it (writes flow), or the slot's
-- confirmed position reached it (idle: keepalive replies).  true or false;
-- nil, message when neither says yes and the slot could not be read (gone,
-- or the source did not answer).
function M.applied(src, dst, slot, subid, lsn)
	local why
	if slot then
		local r, err = src:query("SELECT confirmed_flush_lsn >= $1::pg_lsn AS ok FROM pg_replication_slots " ..
			"WHERE slot_name = $2", {lsn, slot})
		if not r then
			why = "source: " .. err
		elseif r.rows[1] == nil then
			why = "source: no replication slot " .. slot
		elseif r.rows[1].ok == "t" then
			return true
		end
	end
	if subid then
		local r = dst:query("SELECT remote_lsn >= $1::pg_lsn AS ok FROM pg_replication_origin_status " ..
			"WHERE external_id = $2", {lsn, "pg_" .. subid})
		if r and r.rows[1] and r.rows[1].ok == "t" then return true end
	end
	if why then return nil, why end
	return false
end

-- pg.applied every o.poll ms, at most o.polls times: true once it is, false
-- when it never was.  o = {slot, subid, lsn, poll (ms), polls}
function M.wait_applied(src, dst, o)
	for i = 1, o.polls do
		if M.applied(src, dst, o.slot, o.subid, o.lsn) then return true end
		if i < o.polls then zdm.sleep(o.poll) end
	end
	return false
end

-- Session settings under which two servers print the same value as the same
-- text (row::text is what a checksum hashes): timestamptz in UTC, dates in
-- ISO, intervals in the postgres style, floats with every digit (no
-- rounding of 0.1 + 0.2 to 0.3 on one side only), bytea in hex (not
-- escape), money in the C locale.  Each server's own defaults
-- (postgresql.conf, ALTER DATABASE/ROLE SET) could differ.
M.SAME_TEXT = "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, MDY'; " ..
	"SET IntervalStyle = 'postgres'; SET extra_float_digits = 3; " ..
	"SET bytea_output = 'hex'; SET lc_monetary = 'C'"

return M
