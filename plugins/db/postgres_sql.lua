-- db.postgres_sql: run SQL (a schema change, usually) on PostgreSQL with an undo.
--
-- The point is the lock queue.  A DDL statement such as ALTER TABLE needs an
-- ACCESS EXCLUSIVE lock; while it waits for one (behind a long transaction
-- that holds any lock on the table) every later query on the table, even a
-- plain SELECT, queues behind the DDL: the application stalls although the
-- DDL itself would take a millisecond.  So every attempt runs with
-- `lock_timeout` (default 500 ms, pgroll's default): a DDL that cannot get
-- its lock within it gives up (SQLSTATE 55P03, lock_not_available), lets the
-- queue drain, and is retried after an exponential backoff with jitter
-- (pgroll retries 55P03 the same way, from 1 s doubling up to 1 min).  Each
-- retry is journaled as a `sql.lock_timeout` note.
--
-- By default everything runs in one transaction (BEGIN ... COMMIT): either
-- all of `sql` happened or none of it, so a failed step has nothing to undo.
-- Statements that cannot run in a transaction block (CREATE INDEX
-- CONCURRENTLY, VACUUM, ...) need `transaction: false`; each list item then
-- runs on its own (autocommit), and the items already done are noted
-- (`sql.statement`) so a retry or a resume does not run them again.

local pg = zdm.lib("db._pg")		-- connect, lock_timeout retries, checks
local ms = pg.ms

local ACTIVE_SQL_TRANSACTION = "25001"	-- "cannot run inside a transaction block"

-- statements PostgreSQL refuses inside a transaction block (its docs for each)
local NO_TRANSACTION = {
	"%f[%w]concurrently%f[%W]",		-- CREATE/DROP INDEX, REINDEX, DETACH PARTITION ... CONCURRENTLY
	"^%s*vacuum%f[%W]", "[;%s]vacuum%f[%W]",
	"%f[%w]create%s+database%f[%W]", "%f[%w]drop%s+database%f[%W]",
	"%f[%w]alter%s+system%f[%W]",
	"%f[%w]create%s+tablespace%f[%W]", "%f[%w]drop%s+tablespace%f[%W]",
}

-- `sql` / `undo_sql`: one string (any number of statements) or a list of them
local function statements(v)
	if type(v) == "string" then return {v} end
	return v
end

local function check_sql(problems, p, name, required)
	local v = p[name]
	if v == nil then
		if required then problems[#problems + 1] = {param = name, message = "is required"} end
		return
	end
	if zdm.is_expr(v) then return end
	if type(v) == "string" then
		if v:match("^%s*$") then
			problems[#problems + 1] = {param = name, message = "must be SQL text, not empty"}
		end
		return
	end
	if type(v) ~= "table" or #v == 0 then
		problems[#problems + 1] = {param = name,
			message = "must be SQL text or a non-empty list of SQL texts"}
		return
	end
	for i, s in ipairs(v) do
		if not zdm.is_expr(s) and (type(s) ~= "string" or s:match("^%s*$")) then
			problems[#problems + 1] = {param = name,
				message = string.format("item %d must be SQL text, not empty", i)}
		end
	end
end

-- the first statement PostgreSQL would refuse in a transaction block, or nil
local function needs_autocommit(v)
	for _, s in ipairs(statements(v) or {}) do
		if type(s) == "string" then
			local l = s:lower()
			for _, pat in ipairs(NO_TRANSACTION) do
				if l:find(pat) then return s end
			end
		end
	end
	return nil
end

local function one_line(s, max)
	s = s:gsub("%s+", " "):gsub("^ ", ""):gsub(" $", "")
	if #s > max then s = s:sub(1, max - 3) .. "..." end
	return s
end

local function connect(ctx, p)
	local db, err, what = pg.connect(p.conninfo, pg.step_options(ctx, p))
	if not db then return nil, what .. ": " .. err end
	return db
end

local function hint(err, state)
	if state == ACTIVE_SQL_TRANSACTION then
		return err .. " (this statement cannot run in a transaction: set `transaction: false`)"
	end
	return err
end

-- Runs `stmts` (a list) with lock_timeout retries.  `what` is "sql" or
-- "undo_sql" (it names the notes: sql.lock_timeout, undo_sql.lock_timeout).
-- In a transaction all of it is one attempt; without one each statement is
-- retried on its own and `done[i]` skips the ones earlier attempts finished.
-- Returns the count of lock timeouts, or nil, message.
local function execute(ctx, p, db, stmts, transaction, what, done)
	local timeouts = 0
	local function retry_or_fail(err, state, index)
		if state ~= pg.LOCK_NOT_AVAILABLE then
			return false, string.format("%s%s: %s", what,
				#stmts > 1 and string.format(" statement %d", index) or "", hint(err, state))
		end
		-- a ... CONCURRENTLY that gave up leaves an INVALID index behind:
		-- running it again would fail on that index or keep it
		local l = stmts[index]:lower()
		if not transaction and (l:find("create%s[%w%s]-index%s+concurrently%f[%W]") or
				l:find("reindex%s.-concurrently%f[%W]")) then
			return false, string.format("%s%s: %s; CREATE INDEX / REINDEX CONCURRENTLY is not retried " ..
				"(it leaves an INVALID index behind: undo_sql should drop it); give it " ..
				"`lock_timeout: 0`: its long waits do not block reads or writes", what,
				#stmts > 1 and string.format(" statement %d", index) or "", err)
		end
		timeouts = timeouts + 1
		return pg.lock_retry(p, timeouts, err, {
			what = what, holder = "a long transaction holds a lock on the table",
			event = what .. ".lock_timeout", data = {statement = index},
			log = "could not get a lock", progress = true,
		})
	end

	if transaction then
		while true do
			local ok, err, state = db:exec("BEGIN")
			if not ok then return nil, "BEGIN: " .. tostring(err) end
			local failed_at
			for i, s in ipairs(stmts) do
				ok, err, state = db:exec(s)
				if not ok then failed_at = i break end
			end
			if ok then
				ok, err, state = db:exec("COMMIT")
				if ok then return timeouts end
				failed_at = #stmts
			end
			db:exec("ROLLBACK")	-- after an error: ends the aborted transaction
			local again, msg = retry_or_fail(err, state, failed_at)
			if not again then return nil, msg end
		end
	end

	for i, s in ipairs(stmts) do
		if not done[i] then
			while true do
				local ok, err, state = db:exec(s)
				if ok then break end
				local again, msg = retry_or_fail(err, state, i)
				if not again then return nil, msg end
			end
			if #stmts > 1 then zdm.note(what .. ".statement", {index = i}) end
		end
	end
	return timeouts
end

local function done_statements(ctx, what)
	local done = {}
	for _, n in ipairs(ctx.notes or {}) do
		if n.event == what .. ".statement" and type(n.data) == "table" then
			done[n.data.index] = true
		end
	end
	return done
end

return {
	description = "Run SQL on PostgreSQL under lock_timeout (retried with backoff), in a transaction, with undo_sql",
	params = {
		{name = "conninfo", type = "string", required = true,
		 doc = "libpq connection string or URI, without the password"},
		{name = "password", type = "string",
		 doc = "the role's password: ${{ secrets.NAME }}"},
		{name = "sql", type = "any", required = true,
		 doc = "SQL text, or a list of SQL texts run in order"},
		{name = "undo_sql", type = "any",
		 doc = "SQL that puts back what sql changed (text or list); without it a rollback leaves the change"},
		{name = "transaction", type = "bool", default = true,
		 doc = "run all of sql in one transaction; false for CREATE INDEX CONCURRENTLY and the like"},
		{name = "lock_timeout", type = "duration", default = "500ms",
		 doc = "longest wait for a lock before giving up and retrying (SET lock_timeout); 0 = wait as long as it takes"},
		{name = "lock_retries", type = "int", default = 20,
		 doc = "retries after a lock timeout before the step fails"},
		{name = "lock_retry_delay", type = "duration", default = "1s",
		 doc = "wait before the first retry; doubles each retry (with jitter)"},
		{name = "lock_retry_max_delay", type = "duration", default = "1m",
		 doc = "longest wait between two retries"},
		{name = "statement_timeout", type = "duration", default = 0,
		 doc = "longest run of one statement (SET statement_timeout); 0 = no limit"},
		{name = "connect_timeout", type = "duration", default = "10s",
		 doc = "longest wait to connect"},
	},
	read_only = false,
	idempotent = false,	-- running a DDL twice fails (or does it twice)

	validate = function(p)
		local problems = {}
		pg.check_conninfo(problems, p, "conninfo")
		pg.check_secret(problems, p, "password")
		check_sql(problems, p, "sql", true)
		check_sql(problems, p, "undo_sql", false)
		if p.transaction == true then
			for _, name in ipairs({"sql", "undo_sql"}) do
				local s = needs_autocommit(p[name])
				if s then
					problems[#problems + 1] = {param = name, message = string.format(
						"'%s' cannot run inside a transaction block: set `transaction: false` " ..
						"(each statement then commits on its own)", one_line(s, 60))}
				end
			end
		end
		local function positive(name, min, max)
			local v = p[name]
			if type(v) == "number" and (v < min or v > max) then
				problems[#problems + 1] = {param = name,
					message = string.format("must be from %s to %s", min == 0 and "0" or ms(min), ms(max))}
			end
		end
		positive("lock_timeout", 0, 3600000)
		positive("lock_retry_delay", 1, 3600000)
		positive("lock_retry_max_delay", 1, 3600000)
		positive("connect_timeout", 1000, 3600000)
		-- PostgreSQL's limit for statement_timeout: INT_MAX ms (24.8 days)
		positive("statement_timeout", 0, 2147483647)
		if type(p.lock_retries) == "number" and (p.lock_retries < 0 or p.lock_retries > 1000) then
			problems[#problems + 1] = {param = "lock_retries", message = "must be from 0 to 1000"}
		end
		return problems
	end,

	-- without undo_sql a rollback leaves the change in place
	can_undo = function(p) return p.undo_sql ~= nil end,

	plan = function(p)
		local function show(v)
			local parts = {}
			for _, s in ipairs(statements(v)) do parts[#parts + 1] = one_line(tostring(s), 200) end
			return table.concat(parts, "; ")
		end
		local how = p.transaction and "in one transaction" or "each statement on its own (no transaction)"
		local text = string.format("%s, lock_timeout %s (up to %d retries, backoff %s..%s): %s",
			how, ms(p.lock_timeout), p.lock_retries, ms(p.lock_retry_delay),
			ms(p.lock_retry_max_delay), show(p.sql))
		if p.undo_sql ~= nil then
			return text .. "; undo: " .. show(p.undo_sql)
		end
		return text .. "; no undo_sql: a rollback leaves this change in place"
	end,

	-- Without a transaction a failed or interrupted step may have done part
	-- of its statements (and a failed CREATE INDEX CONCURRENTLY leaves an
	-- INVALID index behind): record undo_sql before the first one runs, so a
	-- rollback undoes such a step too.  In a transaction a failed step
	-- changed nothing, so there is nothing to record.
	-- --dry-run: the connection and the credentials; the SQL is not tried
	-- (even in a rolled-back transaction DDL takes its locks)
	check = function(ctx, p)
		local db, err = connect(ctx, p)
		if not db then return nil, err end
		local r, e = db:query("SELECT current_user AS who, current_database() AS d, " ..
			"pg_is_in_recovery() AS standby")
		db:close()
		if not r then return nil, e end
		local row = r.rows[1]
		if row.standby == "t" then
			return nil, string.format("database %s is a standby (read-only): the SQL cannot run there; "
				.. "point conninfo at the primary", row.d)
		end
		return string.format("connected to %s as %s (a primary); the SQL itself is not tried", row.d, row.who)
	end,

	snapshot = function(ctx, p)
		if p.transaction or p.undo_sql == nil then return nil end
		return {undo_sql = statements(p.undo_sql), transaction = false}
	end,

	run = function(ctx, p)
		local stmts = statements(p.sql)
		local db, err = connect(ctx, p)
		if not db then return nil, err end
		local timeouts, msg = execute(ctx, p, db, stmts, p.transaction, "sql",
			done_statements(ctx, "sql"))
		db:close()
		if not timeouts then return nil, msg end
		local out = {statements = #stmts, lock_timeouts = timeouts}
		local undo_data = nil
		if p.undo_sql ~= nil then
			-- the undo SQL as resolved now: a rollback runs exactly this
			undo_data = {undo_sql = statements(p.undo_sql), transaction = p.transaction}
		end
		return {outputs = out, undo_data = undo_data}
	end,

	undo = function(ctx, p, u)
		local stmts, transaction
		if u ~= nil and u.undo_sql ~= nil then
			stmts, transaction = u.undo_sql, u.transaction
		elseif p.undo_sql ~= nil then
			-- nothing recorded (a step left in doubt, retried by a person's
			-- `--in-doubt retry`): the runbook's undo_sql, resolved again
			stmts, transaction = statements(p.undo_sql), p.transaction
		else
			return {left_in_place = "no undo_sql: the change is left in place"}
		end
		local db, err = connect(ctx, p)
		if not db then return nil, err end
		local timeouts, msg = execute(ctx, p, db, stmts, transaction ~= false, "undo_sql",
			done_statements(ctx, "undo_sql"))
		db:close()
		if not timeouts then return nil, msg end
		return nil
	end,
}
