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

return M
