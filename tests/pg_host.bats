#!/usr/bin/env bats
# zdm.pg, the plugins' libpq binding, against a real PostgreSQL 15 cluster
# (tests/servers/postgres.bash, shared by the file): results as tables,
# $n parameters, errors with SQLSTATE, connect failures that name the server
# and never the password, statement_timeout, the step's deadline and SIGTERM
# cancelling the running query on the server, and the rules of the host
# (not in validate/plan, unknown options, closed connections, redaction),
# the simple protocol with rows and a call's own timeout.

bats_require_minimum_version 1.5.0
load helper
load servers/postgres

setup_file() {
  pg_start h
  pg_createdb h h1
  pg_psql h h1 -c "CREATE TABLE kv (k text PRIMARY KEY, v text, n int)"
}

teardown_file() {
  pg_stop_all
}

# plugin t.pg: runs the Lua chunk `code` with (db, ctx, p) after connecting
# with `conninfo` and the secret password; what the chunk returns is run's
# result
write_plugin() {
  plugin_file "$T/plugins" t.pg <<'EOF'
return {
  description = "test: run a chunk against zdm.pg",
  params = {
    {name = "conninfo", type = "string", required = true},
    {name = "password", type = "string", default = ""},
    {name = "opts", type = "map", default = {}},
    {name = "code", type = "string", required = true},
    {name = "in_plan", type = "bool", default = false},
  },
  plan = function(p)
    if p.in_plan then zdm.pg.connect(p.conninfo) end
    return "pg test"
  end,
  run = function(ctx, p)
    local opts = {}
    for k, v in pairs(p.opts) do opts[k] = v end
    if p.password ~= "" then opts.password = p.password end
    local db, err = zdm.pg.connect(p.conninfo, opts)
    if not db then return nil, err end
    local f = assert(load("local db, ctx, p = ...\n" .. p.code, "code", "t"))
    return f(db, ctx, p)
  end,
}
EOF
}

# rb.yml with one t.pg step running CODE (stdin), extra step fields in $1
pg_runbook() {
  local code extra="${1:-}" conninfo="${2:-$(pg_conninfo h h1)}"
  code="$(cat)"
  write_plugin
  {
    cat <<EOF
zdm: 1
name: pghost
secrets:
  pw: {env: TEST_PG_PW}
steps:
  - id: q
    uses: t.pg
$extra
    with:
      conninfo: "$conninfo"
      password: \${{ secrets.pw }}
      code: |
EOF
    sed 's/^/        /' <<<"$code"
  } >"$T/rb.yml"
}

outputs() {
  jq -sc '[.[] | select(.event == "step.succeeded")][0].data.outputs' "$(journal_of "$T/state")"
}

@test "pg_host: query returns rows as text tables with \$n parameters; exec runs several statements" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook <<'EOF'
local ok, err = db:exec("DELETE FROM kv WHERE k LIKE 't1-%'; INSERT INTO kv VALUES ('t1-a', 'x', 1), ('t1-b', NULL, 2)")
assert(ok, err)
local r = assert(db:query("SELECT k, v, n, $1::text AS p1, $2::int + 1 AS p2, $3::bool AS p3, $4::text IS NULL AS p4 FROM kv WHERE k LIKE 't1-%' ORDER BY k",
  {"text param", 41, true, zdm.pg.null}))
local u = assert(db:query("UPDATE kv SET n = n + 10 WHERE k LIKE $1", {"t1-%"}))
local e = assert(db:query("SELECT 1 AS one WHERE false"))
local qi, ql = db:quote_ident("Odd \"name\""), db:quote_literal("it's")
db:close()
db:close()   -- again: harmless
return {outputs = {columns = r.columns, rows = r.rows, count = r.count, status = r.status,
  u_affected = u.affected, u_status = u.status, e_count = e.count, e_rows = #e.rows, qi = qi, ql = ql}}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  run outputs
  assert_output '{"columns":["k","v","n","p1","p2","p3","p4"],"count":2,"e_count":0,"e_rows":0,"qi":"\"Odd \"\"name\"\"\"","ql":"'"'"'it'"''"'s'"'"'","rows":[{"k":"t1-a","n":"1","p1":"text param","p2":"42","p3":"t","p4":"t","v":"x"},{"k":"t1-b","n":"2","p1":"text param","p2":"42","p3":"t","p4":"t"}],"status":"SELECT 2","u_affected":2,"u_status":"UPDATE 2"}'
  [ "$(pg_psql h h1 -c "select sum(n) from kv where k like 't1-%'")" = 23 ]
}

@test "pg_host: failures return the message and the SQLSTATE (syntax, unique violation, lock timeout)" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_psql h h1 -c "INSERT INTO kv VALUES ('t2-locked', 'x', 0) ON CONFLICT DO NOTHING"
  # another session holds the row lock for a while
  pg_psql h h1 -c "BEGIN; SELECT * FROM kv WHERE k = 't2-locked' FOR UPDATE; SELECT pg_sleep(4); COMMIT" >/dev/null &
  local holder=$!
  for i in $(seq 50); do
    [ "$(pg_psql h h1 -c "select count(*) from pg_locks l join pg_stat_activity a using (pid) where a.query like '%pg_sleep(4)%' and l.locktype = 'transactionid'")" -gt 0 ] && break
    sleep 0.05
  done
  pg_runbook <<'EOF'
local out = {}
local r, err, st = db:query("SELEC 1")
out.syntax = {r == nil, err, st}
r, err, st = db:query("INSERT INTO kv VALUES ('t2-locked', 'y', 1)")
out.unique = {r == nil, err, st}
assert(db:exec("SET lock_timeout = 200"))
r, err, st = db:query("UPDATE kv SET n = 1 WHERE k = $1", {"t2-locked"})
out.lock = {r == nil, err, st}
local ok
ok, err, st = db:exec("SELECT 1; SELECT 1/0; SELECT 2")
out.exec = {ok == nil, err, st}
return {outputs = out}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  kill "$holder" 2>/dev/null || true
  wait "$holder" || true
  echo "$output"
  assert_success
  run outputs
  assert_output '{"exec":[true,"ERROR:  division by zero (SQLSTATE 22012)","22012"],"lock":[true,"ERROR:  canceling statement due to lock timeout (SQLSTATE 55P03)","55P03"],"syntax":[true,"ERROR:  syntax error at or near \"SELEC\" (SQLSTATE 42601)","42601"],"unique":[true,"ERROR:  duplicate key value violates unique constraint \"kv_pkey\"; DETAIL:  Key (k)=(t2-locked) already exists. (SQLSTATE 23505)","23505"]}'
}

@test "pg_host: a failed connect names the server, never the password; unknown options raise" {
  export TEST_PG_PW="wrong-$PG_PASSWORD"
  pg_runbook <<<'return nil'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "connect host=127.0.0.1 port=$(pg_port h) dbname=h1: connection to server at \"127.0.0.1\", port $(pg_port h) failed: FATAL:  password authentication failed for user \"zdm\""
  refute grep -qF "$TEST_PG_PW" <<<"$output"
  refute grep -rqF "$TEST_PG_PW" "$T/state"
  # nothing listens there
  local port
  port="$(free_port)"
  pg_runbook "" "host=127.0.0.1 port=$port dbname=none user=zdm" <<<'return nil'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "connect host=127.0.0.1 port=$port dbname=none: connection to server at \"127.0.0.1\", port $port failed: Connection refused"
  # a conninfo libpq cannot parse; an unknown option (a bug in the plugin) raises
  pg_runbook "" "host=127.0.0.1 port" <<<'return nil'
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial 'connect: bad conninfo: missing "=" after "port" in connection info string'
  pg_runbook <<<'return nil'
  sed -i 's/^    with:/    with:\n      opts: {pasword: x}/' "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "zdm.pg.connect: unknown option 'pasword' (did you mean 'password'?)"
}

@test "pg_host: statement_timeout; values holding a secret come back redacted; a closed connection raises" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook <<'EOF'
local r, err, st = db:query("SELECT pg_sleep(5)")
local echo = assert(db:query("SELECT $1::text AS v, 'x' || $1 AS w", {p.password}))
db:close()
local ok, e = pcall(db.query, db, "SELECT 1")
return {outputs = {err = err, st = st, v = echo.rows[1].v, w = echo.rows[1].w, closed = e}}
EOF
  sed -i 's/^    with:/    with:\n      opts: {statement_timeout: 300, application_name: zdm-test}/' "$T/rb.yml"
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  run outputs
  assert_output '{"closed":"zdm.pg: the connection is closed","err":"ERROR:  canceling statement due to statement timeout (SQLSTATE 57014)","st":"57014","v":"***","w":"x***"}'
}

@test "pg_host: simple = true returns rows over the simple protocol; a call's timeout cancels it and closes the connection; zdm.now and ctx.deadline" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook "    timeout: 30s" <<'EOF'
local r = assert(db:query("SELECT 1 AS a; SELECT 2 AS b, 'x' AS c", nil, {simple = true}))
local ok1, e1 = pcall(db.query, db, "SELECT $1", {1}, {simple = true})
local ok2, e2 = pcall(db.query, db, "SELECT 1", nil, {simpel = true})
local ok3, e3 = pcall(db.exec, db, "SELECT 1", {simple = true})
local ok4, e4 = pcall(db.query, db, "SELECT 1", nil, {timeout = 0})
local t0 = zdm.now()
local q, qerr = db:query("SELECT pg_sleep(30) /* zdm-own-timeout */", nil, {timeout = 300})
local took = zdm.now() - t0
local ok5, e5 = pcall(db.query, db, "SELECT 1")
local db2 = assert(zdm.pg.connect(p.conninfo, {password = p.password}))
local x, xerr = db2:exec("SELECT pg_sleep(30) /* zdm-own-timeout */", {timeout = 200})
return {outputs = {rows = r.rows, columns = r.columns, status = r.status, e1 = e1, e2 = e2, e3 = e3, e4 = e4,
  q = q == nil, qerr = qerr, fast = took >= 300 and took < 5000, closed = e5, x = x == nil, xerr = xerr,
  left = ctx.deadline - zdm.now() > 20000 and ctx.deadline - zdm.now() <= 30000}}
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_success
  run outputs
  assert_output '{"closed":"zdm.pg: the connection is closed","columns":["b","c"],"e1":"db:query: simple = true takes no parameters (the simple query protocol has none)","e2":"db:query: unknown option '"'simpel'"' (did you mean '"'simple'"'?)","e3":"db:exec: unknown option '"'simple'"'","e4":"db:query: timeout must be whole ms (1 to 10^12)","fast":true,"left":true,"q":true,"qerr":"timed out after 300 ms (the statement was cancelled and the connection closed)","rows":[{"b":"2","c":"x"}],"status":"SELECT 1","x":true,"xerr":"timed out after 200 ms (the statement was cancelled and the connection closed)"}'
  # the server is not left running them
  local i n
  for i in $(seq 40); do
    n="$(pg_psql h h1 -c "select count(*) from pg_stat_activity where query like '%zdm-own-timeout%' and state = 'active' and pid <> pg_backend_pid()")"
    [ "$n" = 0 ] && break
    sleep 0.05
  done
  assert_equal "$n" 0
}

@test "pg_host: the step's deadline cancels the running query on the server" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook "    timeout: 1s" <<'EOF'
db:query("SELECT pg_sleep(60) /* zdm-deadline-test */")
return nil
EOF
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  echo "$output"
  assert_equal "$status" 1
  assert_output --partial "run() did not finish before the step's deadline"
  # the server is not left running it (the cancel is sent before zdm returns)
  local i n
  for i in $(seq 40); do
    n="$(pg_psql h h1 -c "select count(*) from pg_stat_activity where query like '%zdm-deadline-test%' and state = 'active' and pid <> pg_backend_pid()")"
    [ "$n" = 0 ] && break
    sleep 0.05
  done
  assert_equal "$n" 0
  # the same with a first result already read (freed as the call unwinds: ASan)
  pg_runbook "    timeout: 1s" <<'EOF2'
db:exec("SELECT 1; SELECT pg_sleep(60) /* zdm-deadline-test */")
return nil
EOF2
  run zdm run "$T/rb.yml" --state-dir "$T/state"
  assert_equal "$status" 1
  assert_output --partial "run() did not finish before the step's deadline"
}

@test "pg_host: SIGTERM during a query cancels it and interrupts the run (exit 4)" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook <<'EOF'
db:query("SELECT pg_sleep(60) /* zdm-signal-test */")
return nil
EOF
  "$ZDM_BIN" run "$T/rb.yml" --state-dir "$T/state" >"$T/sig.out" 2>&1 3>&- &
  local pid=$! i n=0 rc=0
  for i in $(seq 100); do
    n="$(pg_psql h h1 -c "select count(*) from pg_stat_activity where query like '%zdm-signal-test%' and state = 'active' and pid <> pg_backend_pid()")"
    [ "$n" = 1 ] && break
    sleep 0.05
  done
  assert_equal "$n" 1
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  cat "$T/sig.out"
  assert_equal "$rc" 4
  for i in $(seq 40); do
    n="$(pg_psql h h1 -c "select count(*) from pg_stat_activity where query like '%zdm-signal-test%' and state = 'active' and pid <> pg_backend_pid()")"
    [ "$n" = 0 ] && break
    sleep 0.05
  done
  assert_equal "$n" 0
}

@test "pg_host: zdm.pg.connect is refused in plan() (plans change nothing)" {
  export TEST_PG_PW="$PG_PASSWORD"
  pg_runbook <<<'return nil'
  sed -i 's/^    with:/    with:\n      in_plan: true/' "$T/rb.yml"
  run zdm plan "$T/rb.yml"
  echo "$output"
  assert_output --partial "zdm.pg.connect is not allowed here"
}
