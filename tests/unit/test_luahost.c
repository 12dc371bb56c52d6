/*
 * test_luahost.c - unit checks for src/lua/host.c and src/lua/luajson.c: loading
 * and schema errors, the sandbox, the deadline hook (also inside pcall), the
 * memory cap, results, the zdm module, and plugins/release/symlink.lua on a
 * real symlink.
 *
 * unit_luahost() prints one "ok - ..." / "not ok - ..." line per check and
 * returns the number of failed checks.  validate() is not called here: its
 * sink (zdm_diag) belongs to the runbook layer.
 */
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/proc.h"
#include "base/util.h"
#include "lua/host.h"
#include "zdm/step.h"

int unit_luahost(void);

static int failed;
static char tmpdir[PATH_MAX];

static void
check(bool cond, const char *what, const char *detail)
{
	if (cond) {
		printf("ok - luahost: %s\n", what);
		return;
	}
	failed++;
	printf("not ok - luahost: %s%s%s\n", what, detail ? ": " : "",
	    detail ? detail : "");
}

static bool
contains(const char *s, const char *sub)
{
	return s != NULL && strstr(s, sub) != NULL;
}

static char *
write_plugin(const char *name, const char *text, size_t len)
{
	char *path = path_join(tmpdir, name);
	FILE *f = fopen(path, "wb");

	if (f != NULL) {
		fwrite(text, 1, len, f);
		fclose(f);
	}
	return path;
}

static struct zdm_step_type *
load(const char *file, const char *text, char **err)
{
	char *path = write_plugin(file, text, strlen(text));
	struct zdm_step_type *t = luahost_load("t.test", path, err);

	free(path);
	return t;
}

static void
unload(struct zdm_step_type *t)
{
	if (t == NULL)
		return;
	t->free_impl(t->impl);
	free(t);
}

/* run (or undo, with undo_data) with params given as JSON text */
static int
call(const struct zdm_step_type *t, const char *params, const json_t *undo_data,
    int64_t timeout_ms, struct zdm_result *res)
{
	struct zdm_ctx ctx = {
		.run_id = "run-1", .step_id = "step-1", .attempt = 1,
		.undoing = undo_data != NULL, .state_dir = tmpdir,
	};
	json_t *p = json_loads(params, 0, NULL);
	int rc;

	memset(res, 0, sizeof *res);
	if (timeout_ms > 0)
		ctx.deadline_ms = zdm_now_ms() + timeout_ms;
	if (undo_data != NULL)
		rc = t->undo(t, &ctx, p, undo_data, res);
	else
		rc = t->run(t, &ctx, p, res);
	json_decref(p);
	return rc;
}

/* the outputs (or undo_data) as sorted compact JSON; caller frees */
static char *
dump(const json_t *v)
{
	if (v == NULL)
		return xstrdup("(null)");
	return json_dumps(v, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
}

static bool
dump_is(const json_t *v, const char *want, const char *what)
{
	char *s = dump(v);
	bool ok = strcmp(s, want) == 0;

	check(ok, what, s);
	free(s);
	return ok;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	return remove(path);
}

/* ---- loading ------------------------------------------------------------- */

static void
test_load(void)
{
	static const char good[] =
	    "return {\n"
	    "  description = 'a good plugin',\n"
	    "  params = {\n"
	    "    {name = 'url', type = 'string', required = true, doc = 'where'},\n"
	    "    {name = 'tries', type = 'int', default = 5},\n"
	    "    {name = 'method', type = 'string', default = 'GET'},\n"
	    "    {name = 'codes', type = 'list', default = {}},\n"
	    "    {name = 'wait', type = 'duration', default = '30s'},\n"
	    "    {name = 'extra', type = 'map', default = {a = 1}},\n"
	    "  },\n"
	    "  read_only = true,\n"
	    "  idempotent = true,\n"
	    "  run = function(ctx, p) end,\n"
	    "  plan = function(p) return 'fetch ' .. p.url end,\n"
	    "}\n";
	char *err = NULL, *plan, *path;
	struct zdm_step_type *t = load("good.lua", good, &err);
	json_t *params;

	check(t != NULL, "a good plugin loads", err);
	free(err);
	err = NULL;
	if (t == NULL)
		return;
	check(strcmp(t->name, "t.test") == 0 &&
	    strcmp(t->description, "a good plugin") == 0, "name and description", NULL);
	check(t->read_only && t->idempotent, "read_only and idempotent read", NULL);
	check(t->validate == NULL && t->undo == NULL && t->run != NULL,
	    "absent validate/undo are NULL", NULL);
	check(t->nparams == 6, "six params", NULL);
	if (t->nparams == 6) {
		const struct zdm_param *p = t->params;

		check(strcmp(p[0].name, "url") == 0 && p[0].type == ZDM_T_STRING &&
		    p[0].required && p[0].def == NULL && strcmp(p[0].doc, "where") == 0,
		    "params[1] parsed", NULL);
		check(p[1].type == ZDM_T_INT && !p[1].required &&
		    strcmp(p[1].def, "5") == 0, "int default as JSON text", p[1].def);
		check(strcmp(p[2].def, "\"GET\"") == 0, "string default as JSON text",
		    p[2].def);
		check(p[3].type == ZDM_T_LIST && strcmp(p[3].def, "[]") == 0,
		    "empty list default is []", p[3].def);
		check(p[4].type == ZDM_T_DURATION && strcmp(p[4].def, "\"30s\"") == 0,
		    "duration default", p[4].def);
		check(p[5].type == ZDM_T_MAP && strcmp(p[5].def, "{\"a\":1}") == 0,
		    "map default", p[5].def);
	}
	params = json_pack("{s:s}", "url", "http://x");
	plan = t->plan(t, params);
	check(plan != NULL && strcmp(plan, "fetch http://x") == 0, "plan() text", plan);
	free(plan);
	json_decref(params);
	unload(t);

	t = load("bad.lua",
	    "return {description = 'x', run = function() end, params = {\n"
	    "  {name = 'a', type = 'string'}, {name = 'b', type = 'strng'}}}\n", &err);
	path = path_join(tmpdir, "bad.lua");
	check(t == NULL && err != NULL && strncmp(err, path, strlen(path)) == 0 &&
	    contains(err, ": params[2]: unknown type 'strng'"),
	    "bad param type names the file and the entry", err);
	free(path);
	free(err);
	err = NULL;
	unload(t);

	t = load("typo.lua",
	    "return {description = 'x', run = function() end, params = {\n"
	    "  {name = 'a', type = 'string', requried = true}}}\n", &err);
	check(t == NULL && contains(err, "unknown field 'requried' (did you mean 'required'?)"),
	    "unknown param field with a suggestion", err);
	free(err);
	err = NULL;
	unload(t);

	t = load("norun.lua", "return {description = 'x'}\n", &err);
	check(t == NULL && contains(err, "'run' must be a function"),
	    "a plugin without run() is refused", err);
	free(err);
	err = NULL;
	unload(t);

	t = load("baddef.lua",
	    "return {description = 'x', run = function() end, params = {\n"
	    "  {name = 'n', type = 'int', default = 'five'}}}\n", &err);
	check(t == NULL && contains(err, "default for 'n' must be a whole number"),
	    "a default of the wrong type is refused", err);
	free(err);
	err = NULL;
	unload(t);

	t = load("syntax.lua", "return {\n  description = 'x',,\n}\n", &err);
	path = path_join(tmpdir, "syntax.lua");
	check(t == NULL && contains(err, path) && contains(err, ":2:"),
	    "a syntax error names file and line", err);
	free(path);
	free(err);
	err = NULL;
	unload(t);

	t = load("notable.lua", "return 42\n", &err);
	check(t == NULL && contains(err, "must return a table"),
	    "a plugin must return a table", err);
	free(err);
	err = NULL;
	unload(t);

	/* a precompiled chunk: refused before the VM reads it */
	path = write_plugin("bytecode.lua", "\x1bLua\x54\x00\x19\x93\r\n\x1a\n\x04\x08\x08", 15);
	t = luahost_load("t.bytecode", path, &err);
	check(t == NULL && contains(err, path) && contains(err, "binary"),
	    "bytecode is refused", err);
	free(path);
	free(err);
	err = NULL;
	unload(t);
}

/* ---- calls, sandbox, limits ---------------------------------------------- */

static const char modes[] =
    "local M = {}\n"
    "M.ok = function() return {outputs = {a = 1, b = 'x', list = {1, 2, 3},\n"
    "  nested = {k = true}, r = 2.5}, undo_data = {old = 'v'}} end\n"
    "M.none = function() end\n"
    "M.fail = function() return nil, 'boom' end\n"
    "M.raise = function() error('kaboom') end\n"
    "M.raise_table = function() error({}) end\n"
    "M.list_outputs = function() return {outputs = {1, 2}} end\n"
    "M.func_outputs = function() return {outputs = {f = print}} end\n"
    "M.typo = function() return {output = {}} end\n"
    "M.ctx = function(ctx) return {outputs = {run_id = ctx.run_id,\n"
    "  step_id = ctx.step_id, attempt = ctx.attempt, dry_run = ctx.dry_run}} end\n"
    "M.sandbox = function()\n"
    "  local f = function() return 1 end\n"
    "  local bin = load(string.dump(f))\n"
    "  print('hello from', 'print')\n"
    "  return {outputs = {io = type(io), os = type(os), require = type(require),\n"
    "    dofile = type(dofile), loadfile = type(loadfile), debug = type(debug),\n"
    "    package = type(package), bin = bin ~= nil, text = load('return 1 + 1')(),\n"
    "    env = load('return x', 'c', 'bt', {x = 7})()}}\n"
    "end\n"
    "M.xpcall = function()\n"
    "  local ok, v = xpcall(function(a) return a + 1 end, function(e) return 'h' end, 41)\n"
    "  local ok2, e2 = xpcall(function() error('x', 0) end, function(e) return 'h:' .. e end)\n"
    "  return {outputs = {ok = ok, v = v, ok2 = ok2, e2 = e2}}\n"
    "end\n"
    "M.gc = function() setmetatable({}, {__gc = function() while true do end end}) end\n"
    "M.loop = function() while true do end end\n"
    "M.loop_pcall = function()\n"
    "  while true do pcall(function() while true do end end) end\n"
    "end\n"
    "M.loop_xpcall = function()\n"
    "  xpcall(function() while true do end end, function() while true do end end)\n"
    "  while true do end\n"
    "end\n"
    "M.bomb = function() local s = 'x' while true do s = s .. s end end\n"
    "M.table_bomb = function() local t = {} for i = 1, math.huge do t[i] = {i} end end\n"
    "M.survive = function() return {outputs = {ok = true}} end\n"
    "return {\n"
    "  description = 'modes',\n"
    "  params = {{name = 'mode', type = 'string', required = true}},\n"
    "  run = function(ctx, p) return M[p.mode](ctx, p) end,\n"
    "  undo = function(ctx, p, u)\n"
    "    return {outputs = {got = u.old, undoing = ctx.undoing}}\n"
    "  end,\n"
    "}\n";

static void
test_calls(void)
{
	struct zdm_step_type *t;
	struct zdm_result res;
	char *err = NULL;
	int64_t t0;
	int rc;

	t = load("modes.lua", modes, &err);
	check(t != NULL, "the modes plugin loads", err);
	free(err);
	if (t == NULL)
		return;

	rc = call(t, "{\"mode\":\"ok\"}", NULL, 0, &res);
	check(rc == 0 && res.err[0] == '\0', "run() succeeds", res.err);
	dump_is(res.outputs, "{\"a\":1,\"b\":\"x\",\"list\":[1,2,3],\"nested\":{\"k\":true},\"r\":2.5}",
	    "outputs converted to JSON");
	dump_is(res.undo_data, "{\"old\":\"v\"}", "undo_data converted to JSON");
	{
		json_t *u = json_pack("{s:s}", "old", "v1");
		struct zdm_result ures;

		rc = call(t, "{\"mode\":\"ok\"}", u, 0, &ures);
		check(rc == 0, "undo() succeeds", ures.err);
		dump_is(ures.outputs, "{\"got\":\"v1\",\"undoing\":true}",
		    "undo() gets undo_data and ctx.undoing");
		zdm_result_release(&ures);
		json_decref(u);
	}
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"none\"}", NULL, 0, &res);
	check(rc == 0 && res.outputs == NULL && res.undo_data == NULL,
	    "run() returning nothing succeeds", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"ctx\"}", NULL, 0, &res);
	dump_is(res.outputs, "{\"attempt\":1,\"dry_run\":false,\"run_id\":\"run-1\",\"step_id\":\"step-1\"}",
	    "ctx reaches run()");
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"fail\"}", NULL, 0, &res);
	check(rc == -1 && strcmp(res.err, "boom") == 0, "return nil, msg fails", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"raise\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "kaboom") && contains(res.err, "modes.lua:"),
	    "error() fails with its position", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"raise_table\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "error object is a table value"),
	    "error({}) fails readably", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"list_outputs\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "outputs must be a table of name = value"),
	    "outputs that are a list are refused", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"func_outputs\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "function has no JSON form (at .f)"),
	    "a function in outputs is refused, with where", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"typo\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "unknown field 'output' (did you mean 'outputs'?)"),
	    "an unknown result field is refused", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"sandbox\"}", NULL, 0, &res);
	dump_is(res.outputs, "{\"bin\":false,\"debug\":\"nil\",\"dofile\":\"nil\",\"env\":7,\"io\":\"nil\","
	    "\"loadfile\":\"nil\",\"os\":\"nil\",\"package\":\"nil\",\"require\":\"nil\",\"text\":2}",
	    "io, os, require, dofile, loadfile are gone; load is text only");
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"xpcall\"}", NULL, 0, &res);
	dump_is(res.outputs, "{\"e2\":\"h:x\",\"ok\":true,\"ok2\":false,\"v\":42}",
	    "xpcall still works");
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"gc\"}", NULL, 0, &res);
	check(rc == -1 && contains(res.err, "__gc is not allowed"),
	    "__gc finalizers are refused (they run out of the hook's reach)", res.err);
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"loop\"}", NULL, 300, &res);
	check(rc == -1 && res.timed_out && zdm_now_ms() - t0 < 3000,
	    "an endless loop is stopped at the deadline", res.err);
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"loop_pcall\"}", NULL, 300, &res);
	check(rc == -1 && res.timed_out && zdm_now_ms() - t0 < 3000 &&
	    contains(res.err, "deadline"), "pcall cannot swallow the deadline", res.err);
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"loop_xpcall\"}", NULL, 300, &res);
	check(rc == -1 && res.timed_out && zdm_now_ms() - t0 < 3000,
	    "nor can an xpcall handler", res.err);
	zdm_result_release(&res);

	zdm_interrupted = SIGINT;	/* as if ^C reached zdm */
	rc = call(t, "{\"mode\":\"loop_pcall\"}", NULL, 0, &res);
	zdm_interrupted = 0;
	check(rc == -1 && res.interrupted && !res.timed_out &&
	    contains(res.err, "interrupted by signal"), "a signal stops the plugin", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"survive\"}", NULL, 300, &res);
	check(rc == 0 && !res.timed_out, "the plugin runs again after a kill", res.err);
	zdm_result_release(&res);
	unload(t);

	/* memory: a small cap, so the bomb goes off quickly */
	setenv("ZDM_PLUGIN_MEMORY_MB", "16", 1);
	t = load("modes.lua", modes, &err);
	unsetenv("ZDM_PLUGIN_MEMORY_MB");
	check(t != NULL, "loads with ZDM_PLUGIN_MEMORY_MB=16", err);
	free(err);
	err = NULL;
	if (t != NULL) {
		rc = call(t, "{\"mode\":\"bomb\"}", NULL, 10000, &res);
		check(rc == -1 && contains(res.err, "not enough memory"),
		    "a string bomb fails with not enough memory", res.err);
		zdm_result_release(&res);
		rc = call(t, "{\"mode\":\"table_bomb\"}", NULL, 10000, &res);
		check(rc == -1 && contains(res.err, "not enough memory"),
		    "a table bomb fails with not enough memory", res.err);
		zdm_result_release(&res);
		rc = call(t, "{\"mode\":\"survive\"}", NULL, 0, &res);
		check(rc == 0, "the plugin runs again after running out of memory", res.err);
		zdm_result_release(&res);
		unload(t);
	}
	setenv("ZDM_PLUGIN_MEMORY_MB", "lots", 1);
	t = load("modes.lua", modes, &err);
	unsetenv("ZDM_PLUGIN_MEMORY_MB");
	check(t == NULL && contains(err, "ZDM_PLUGIN_MEMORY_MB: invalid value 'lots'"),
	    "a bad ZDM_PLUGIN_MEMORY_MB is an error", err);
	free(err);
	unload(t);
}

/* ---- the zdm module ------------------------------------------------------ */

static const char host[] =
    "local M = {}\n"
    "M.exec_argv = function()\n"
    "  local r = zdm.exec({'sh', '-c', 'echo out; echo err >&2; exit 3'})\n"
    "  return {outputs = {code = r.code, stdout = r.stdout, stderr = r.stderr,\n"
    "    timed_out = r.timed_out, signal = r.signal or 0}}\n"
    "end\n"
    "M.exec_shell = function(ctx)\n"
    "  local a = zdm.exec('printf %s \"$X\"; pwd', {env = {X = 'hi'}, cwd = '/'})\n"
    "  local b = zdm.exec({'cat'}, {stdin = 'abc'})\n"
    "  return {outputs = {a = a.stdout, b = b.stdout}}\n"
    "end\n"
    "M.exec_timeout = function()\n"
    "  local r = zdm.exec({'sleep', '5'}, {timeout = 200})\n"
    "  return {outputs = {timed_out = r.timed_out, code = r.code}}\n"
    "end\n"
    "M.exec_missing = function()\n"
    "  local r, msg = zdm.exec({'/nonexistent/zdm-test'})\n"
    "  return {outputs = {r = r == nil, msg = msg}}\n"
    "end\n"
    "M.exec_bad = function() zdm.exec({'true'}, {timout = 5}) end\n"
    "M.exec_deadline = function()\n"
    "  local ok = pcall(zdm.exec, {'sleep', '5'})\n"
    "  return {outputs = {swallowed = true}}\n"
    "end\n"
    "M.sleep_deadline = function() pcall(zdm.sleep, 5000) return {} end\n"
    "M.sleep = function() zdm.sleep(20) return {} end\n"
    "M.sleep_tail = function() return pcall(zdm.sleep, 5000) end\n"
    "M.files = function(ctx, p)\n"
    "  local f = p.dir .. '/f.txt'\n"
    "  local o = {}\n"
    "  o.write = zdm.file.write_atomic(f, 'hello\\0world', 384)\n"
    "  o.read = zdm.file.read(f)\n"
    "  o.type = zdm.file.type(f)\n"
    "  o.dirtype = zdm.file.type(p.dir)\n"
    "  o.exists = zdm.file.exists(f)\n"
    "  local nl, nlmsg = zdm.file.readlink(f)\n"
    "  o.readlink_msg = nlmsg\n"
    "  o.sym = zdm.file.symlink('f.txt', p.dir .. '/l')\n"
    "  o.ltype = zdm.file.type(p.dir .. '/l')\n"
    "  o.target = zdm.file.readlink(p.dir .. '/l')\n"
    "  o.via_link = zdm.file.read(p.dir .. '/l')\n"
    "  o.rm = zdm.file.remove(p.dir .. '/l') and zdm.file.remove(f)\n"
    "  o.gone = not zdm.file.exists(f)\n"
    "  local r, msg = zdm.file.read(f)\n"
    "  o.missing = r == nil and msg\n"
    "  o.notype = zdm.file.type(f) == nil\n"
    "  return {outputs = o}\n"
    "end\n"
    "M.json = function()\n"
    "  local o = {}\n"
    "  o.enc = zdm.json.encode({b = 1, a = {1, 2, {}}, s = 'x\"y'})\n"
    "  o.scalar = zdm.json.encode(1.5) .. zdm.json.encode('s') .. zdm.json.encode(nil)\n"
    "  local d = zdm.json.decode('{\"x\":[1,null,3],\"y\":{\"z\":\"w\"}}')\n"
    "  o.dec = d.x[1] + d.x[3] .. d.y.z\n"
    "  local bad, msg = zdm.json.decode('{')\n"
    "  o.bad = bad == nil and msg\n"
    "  local t = {} t.self = t\n"
    "  o.cycle = select(2, pcall(zdm.json.encode, t))\n"
    "  o.fn = select(2, pcall(zdm.json.encode, {f = print}))\n"
    "  o.nan = select(2, pcall(zdm.json.encode, {0/0}))\n"
    "  local deep = {} local c = deep for i = 1, 100 do c.n = {} c = c.n end\n"
    "  o.deep = select(2, pcall(zdm.json.encode, deep))\n"
    "  o.keys = zdm.json.encode({[1] = 'a', [3] = 'c', x = 1})\n"
    "  o.is_expr = tostring(zdm.is_expr('${{ vars.x }}')) .. tostring(zdm.is_expr('x'))\n"
    "    .. tostring(zdm.is_expr(5))\n"
    "  zdm.log('a log line\\nand a second')\n"
    "  return {outputs = o}\n"
    "end\n"
    "return {\n"
    "  description = 'host module',\n"
    "  params = {{name = 'mode', type = 'string', required = true},\n"
    "    {name = 'dir', type = 'string'}},\n"
    "  run = function(ctx, p) return M[p.mode](ctx, p) end,\n"
    "}\n";

static void
test_host(void)
{
	struct zdm_step_type *t;
	struct zdm_result res;
	char *err = NULL, *params, *s;
	const char *v;
	int64_t t0;
	int rc;

	t = load("host.lua", host, &err);
	check(t != NULL, "the host plugin loads", err);
	free(err);
	if (t == NULL)
		return;

	rc = call(t, "{\"mode\":\"exec_argv\"}", NULL, 10000, &res);
	dump_is(res.outputs, "{\"code\":3,\"signal\":0,\"stderr\":\"err\\n\",\"stdout\":\"out\\n\",\"timed_out\":false}",
	    "zdm.exec argv: code, stdout, stderr");
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"exec_shell\"}", NULL, 10000, &res);
	dump_is(res.outputs, "{\"a\":\"hi/\\n\",\"b\":\"abc\"}",
	    "zdm.exec shell string with env, cwd, stdin");
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"exec_timeout\"}", NULL, 10000, &res);
	dump_is(res.outputs, "{\"code\":-1,\"timed_out\":true}", "zdm.exec timeout option");
	check(zdm_now_ms() - t0 < 4000, "zdm.exec timeout is prompt", NULL);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"exec_missing\"}", NULL, 10000, &res);
	v = json_string_value(json_object_get(res.outputs, "msg"));
	check(rc == 0 && json_is_true(json_object_get(res.outputs, "r")) &&
	    contains(v, "/nonexistent/zdm-test"), "zdm.exec that cannot start returns nil, msg", v);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"exec_bad\"}", NULL, 10000, &res);
	check(rc == -1 && contains(res.err, "unknown option 'timout'"),
	    "zdm.exec refuses unknown options", res.err);
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"exec_deadline\"}", NULL, 300, &res);
	check(rc == -1 && res.timed_out && zdm_now_ms() - t0 < 4000,
	    "zdm.exec stops at the step deadline, even under pcall", res.err);
	zdm_result_release(&res);

	t0 = zdm_now_ms();
	rc = call(t, "{\"mode\":\"sleep_deadline\"}", NULL, 200, &res);
	check(rc == -1 && res.timed_out && zdm_now_ms() - t0 < 2000,
	    "zdm.sleep stops at the step deadline", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"sleep_tail\"}", NULL, 200, &res);
	check(rc == -1 && res.timed_out && contains(res.err, "deadline"),
	    "a kill swallowed by a tail-called pcall still fails the step", res.err);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"sleep\"}", NULL, 5000, &res);
	check(rc == 0, "zdm.sleep within the deadline", res.err);
	zdm_result_release(&res);

	params = xasprintf("{\"mode\":\"files\",\"dir\":\"%s\"}", tmpdir);
	rc = call(t, params, NULL, 5000, &res);
	free(params);
	check(rc == 0, "zdm.file calls", res.err);
	s = xasprintf("{\"dirtype\":\"dir\",\"exists\":true,\"gone\":true,\"ltype\":\"link\","
	    "\"missing\":\"%s/f.txt: No such file or directory\",\"notype\":true,"
	    "\"read\":\"hello\\u0000world\",\"readlink_msg\":\"%s/f.txt: Invalid argument\","
	    "\"rm\":true,\"sym\":true,\"target\":\"f.txt\",\"type\":\"file\","
	    "\"via_link\":\"hello\\u0000world\",\"write\":true}", tmpdir, tmpdir);
	dump_is(res.outputs, s, "zdm.file: write_atomic, read, type, exists, readlink, symlink, remove");
	free(s);
	zdm_result_release(&res);

	rc = call(t, "{\"mode\":\"json\"}", NULL, 5000, &res);
	check(rc == 0, "zdm.json calls", res.err);
	dump_is(json_object_get(res.outputs, "enc"), "\"{\\\"a\\\":[1,2,{}],\\\"b\\\":1,\\\"s\\\":\\\"x\\\\\\\"y\\\"}\"",
	    "zdm.json.encode sorts keys, {} for the empty table");
	dump_is(json_object_get(res.outputs, "scalar"), "\"1.5\\\"s\\\"null\"", "zdm.json.encode scalars");
	dump_is(json_object_get(res.outputs, "dec"), "\"4w\"", "zdm.json.decode");
	v = json_string_value(json_object_get(res.outputs, "bad"));
	check(contains(v, "invalid JSON at line 1"), "zdm.json.decode of bad JSON: nil, msg", v);
	v = json_string_value(json_object_get(res.outputs, "cycle"));
	check(contains(v, "contains itself has no JSON form (at .self)"), "a cycle is an error", v);
	v = json_string_value(json_object_get(res.outputs, "fn"));
	check(contains(v, "a function has no JSON form (at .f)"), "a function is an error", v);
	v = json_string_value(json_object_get(res.outputs, "nan"));
	check(contains(v, "has no JSON form (at [1])"), "NaN is an error", v);
	v = json_string_value(json_object_get(res.outputs, "deep"));
	check(contains(v, "nested more than 64 deep"), "nesting is limited", v);
	dump_is(json_object_get(res.outputs, "keys"), "\"{\\\"1\\\":\\\"a\\\",\\\"3\\\":\\\"c\\\",\\\"x\\\":1}\"",
	    "a table with holes is an object");
	dump_is(json_object_get(res.outputs, "is_expr"), "\"truefalsefalse\"", "zdm.is_expr");
	zdm_result_release(&res);
	unload(t);
}

/* ---- release.symlink ----------------------------------------------------- */

static char *
symlink_plugin_path(void)
{
	const char *rel = "plugins/release/symlink.lua";
	const char *me = __FILE__, *end = strstr(me, "tests/unit/");

	if (access(rel, R_OK) == 0 || end == NULL)
		return xstrdup(rel);
	return xasprintf("%.*s%s", (int)(end - me), me, rel);
}

static char *
link_target(const char *path)
{
	char buf[PATH_MAX];
	ssize_t n = readlink(path, buf, sizeof buf - 1);

	if (n < 0)
		return xstrdup("(none)");
	buf[n] = '\0';
	return xstrdup(buf);
}

static void
test_symlink(void)
{
	char *path = symlink_plugin_path(), *err = NULL, *err2;
	char *rel = path_join(tmpdir, "releases"), *r1 = path_join(rel, "r1");
	char *r2 = path_join(rel, "r2"), *link = path_join(tmpdir, "current");
	char *params, *plan, *cur, *want;
	struct zdm_step_type *t = luahost_load("release.symlink", path, &err);
	struct zdm_result res1, res2, res;
	json_t *pj;
	struct stat st;
	int rc;
	FILE *f;

	check(t != NULL, "release.symlink loads", err);
	free(err);
	free(path);
	if (t == NULL)
		goto out;
	check(t->idempotent && !t->read_only && t->validate != NULL && t->undo != NULL &&
	    t->nparams == 2 && t->params[0].required && t->params[1].required,
	    "release.symlink flags and params", NULL);
	mkdir(rel, 0755);
	mkdir(r1, 0755);
	mkdir(r2, 0755);

	params = xasprintf("{\"link\":\"%s\",\"target\":\"%s\"}", link, r1);
	pj = json_loads(params, 0, NULL);
	plan = t->plan(t, pj);
	want = xasprintf("point %s at %s (no link yet)", link, r1);
	check(plan != NULL && strcmp(plan, want) == 0, "plan before the first switch", plan);
	free(want);
	free(plan);
	json_decref(pj);

	rc = call(t, params, NULL, 5000, &res1);
	free(params);
	cur = link_target(link);
	check(rc == 0 && strcmp(cur, r1) == 0, "first switch creates the link", res1.err);
	free(cur);
	want = xasprintf("{\"current\":\"%s\",\"previous\":\"\"}", r1);
	dump_is(res1.outputs, want, "first switch outputs");
	free(want);
	want = xasprintf("{\"link\":\"%s\"}", link);
	dump_is(res1.undo_data, want, "first switch undo_data has no previous");
	free(want);

	params = xasprintf("{\"link\":\"%s\",\"target\":\"%s\"}", link, r2);
	pj = json_loads(params, 0, NULL);
	plan = t->plan(t, pj);
	want = xasprintf("point %s at %s (now: %s)", link, r2, r1);
	check(plan != NULL && strcmp(plan, want) == 0, "plan names the current target", plan);
	free(want);
	free(plan);
	json_decref(pj);
	rc = call(t, params, NULL, 5000, &res2);
	cur = link_target(link);
	check(rc == 0 && strcmp(cur, r2) == 0, "second switch replaces the link", res2.err);
	free(cur);
	want = xasprintf("{\"current\":\"%s\",\"previous\":\"%s\"}", r2, r1);
	dump_is(res2.outputs, want, "second switch outputs the previous target");
	free(want);

	rc = call(t, params, res2.undo_data, 5000, &res);
	free(params);
	cur = link_target(link);
	check(rc == 0 && strcmp(cur, r1) == 0, "undo of the second switch restores r1", res.err);
	free(cur);
	zdm_result_release(&res);

	params = xasprintf("{\"link\":\"%s\",\"target\":\"%s\"}", link, r1);
	rc = call(t, params, res1.undo_data, 5000, &res);
	free(params);
	check(rc == 0 && lstat(link, &st) == -1 && errno == ENOENT,
	    "undo of the first switch removes the link", res.err);
	zdm_result_release(&res);
	zdm_result_release(&res1);
	zdm_result_release(&res2);

	params = xasprintf("{\"link\":\"%s\",\"target\":\"releases/r2\"}", link);
	rc = call(t, params, NULL, 5000, &res);
	free(params);
	cur = link_target(link);
	check(rc == 0 && strcmp(cur, "releases/r2") == 0,
	    "a relative target is checked from the link's directory", res.err);
	free(cur);
	zdm_result_release(&res);
	unlink(link);

	params = xasprintf("{\"link\":\"%s\",\"target\":\"%s/nope\"}", link, rel);
	rc = call(t, params, NULL, 5000, &res);
	free(params);
	err2 = xasprintf("release directory '%s/nope' does not exist", rel);
	check(rc == -1 && strcmp(res.err, err2) == 0, "a missing release directory fails", res.err);
	free(err2);
	zdm_result_release(&res);

	f = fopen(link, "w");
	if (f != NULL)
		fclose(f);
	params = xasprintf("{\"link\":\"%s\",\"target\":\"%s\"}", link, r1);
	rc = call(t, params, NULL, 5000, &res);
	free(params);
	err2 = xasprintf("'%s' exists and is not a symlink; refusing to replace it", link);
	check(rc == -1 && strcmp(res.err, err2) == 0 && lstat(link, &st) == 0 &&
	    S_ISREG(st.st_mode), "a regular file at the link is left alone", res.err);
	free(err2);
	zdm_result_release(&res);
	unlink(link);
out:
	unload(t);
	free(rel);
	free(r1);
	free(r2);
	free(link);
}

int
unit_luahost(void)
{
	const char *base = getenv("TMPDIR");

	failed = 0;
	snprintf(tmpdir, sizeof tmpdir, "%s/zdm-luahost-XXXXXX",
	    base != NULL && base[0] != '\0' ? base : "/tmp");
	if (mkdtemp(tmpdir) == NULL) {
		printf("not ok - luahost: mkdtemp: %s\n", strerror(errno));
		return 1;
	}
	test_load();
	test_calls();
	test_host();
	test_symlink();
	nftw(tmpdir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	return failed;
}
