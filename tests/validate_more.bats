#!/usr/bin/env bats
# What `zdm validate` can know before a run: timing that can never pass
# (a wait, a health_gate, a metric_gate against the step's timeout), env
# vars the runbook reads that are not set (a warning; at run time an error
# naming the variable), GitHub Actions habits in ${{ }} and if: (what to
# write instead), the one name per idea across step types (earlier names
# still read, with a warning), and `zdm plugins` columns.

bats_require_minimum_version 1.5.0
load helper
load servers/httpd

# ---- timing that can never pass -------------------------------------------

@test "timing: a wait not shorter than its step's timeout is refused with the arithmetic (exit 2, nothing ran)" {
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: soak
    uses: wait
    timeout: 1s
    with: {duration: 10s}
  - id: settle
    uses: exec
    with: {command: ["true"]}
    undo:
      uses: wait
      timeout: 2s
      with: {duration: 2s}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$output" ""
  assert_equal "$stderr" "rb.yml:7:22: step 'soak': param 'duration': wait 10.0s can never finish: 10.0s is longer than the step's timeout: 1.0s (line 6), so the step always times out; give the step a timeout: longer than 10.0s, or wait less
rb.yml:14:24: undo of step 'settle': param 'duration': wait 2.0s can never finish: 2.0s is not shorter than the undo's timeout: 2.0s (line 13), so the step always times out; give the step a timeout: longer than 2.0s, or wait less
zdm: 2 errors; nothing ran"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 2
  assert_not_exist "$T/state/runs"
  # one that fits is fine
  sed -i 's/duration: 10s/duration: 500ms/; s/duration: 2s/duration: 1s/' rb.yml
  run -0 zdm validate rb.yml
}

@test "timing: a health_gate whose healthy rounds cannot fit in the step's timeout is refused (defaults: timeout named)" {
  runbook <<'EOF'
zdm: 1
name: t
defaults:
  timeout: 20s
steps:
  - id: gate
    uses: health_gate
    with:
      url: http://127.0.0.1:9/health
      interval: 5s
      healthy_threshold: 5
  - id: gate2
    uses: health_gate
    timeout: 30s
    with: {url: "http://127.0.0.1:9/health", interval: 5s, healthy_threshold: 5}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:10:17: step 'gate': param 'interval': the gate can never pass: healthy_threshold 5 rounds 5.0s apart take (5 - 1) x 5.0s = 20.0s from the first round to the last, not less than the step's timeout 20.0s from defaults: timeout (line 4); give the step a timeout: longer than 20.0s, or lower interval or healthy_threshold
zdm: 1 error; nothing ran"
  # the default interval (2s) counts too, placed at the threshold the runbook wrote
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: gate
    uses: health_gate
    timeout: 5s
    with: {url: "http://127.0.0.1:9/health", healthy_threshold: 4}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:7:65: step 'gate': param 'healthy_threshold': the gate can never pass: healthy_threshold 4 rounds 2.0s apart take (4 - 1) x 2.0s = 6.0s from the first round to the last, not less than the step's timeout: 5.0s (line 6); give the step a timeout: longer than 6.0s, or lower interval or healthy_threshold
zdm: 1 error; nothing ran"
}

@test "timing: a metric_gate's initial_delay + (n - 1) x interval against the step's timeout (zdm's default named)" {
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: count
    uses: metric_gate
    with:
      provider: prometheus
      address: http://127.0.0.1:9/
      query: up
      success: result == 1
      interval: 1m
      count: 6
      initial_delay: 30s
  - id: streak
    uses: metric_gate
    timeout: 10m
    with: {provider: prometheus, address: "http://127.0.0.1:9/", query: up, success: result == 1, consecutive_success_limit: 21}
  - id: delay
    uses: metric_gate
    timeout: 30s
    with: {provider: prometheus, address: "http://127.0.0.1:9/", query: up, success: result == 1, initial_delay: 30s}
  - id: fits
    uses: metric_gate
    timeout: 10m
    with: {provider: prometheus, address: "http://127.0.0.1:9/", query: up, success: result == 1, count: 20}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:11:17: step 'count': param 'interval': the gate can never pass: count 6 measurements 1m0s apart after initial_delay 30.0s take 30.0s + (6 - 1) x 1m0s = 5m30s, not less than the step's timeout 5m0s (zdm's default; set timeout: on the step); give the step a timeout: longer than 5m30s, or lower interval, count or initial_delay
rb.yml:17:126: step 'streak': param 'consecutive_success_limit': the gate can never pass: consecutive_success_limit 21 measurements 30.0s apart after initial_delay 0ms take 0ms + (21 - 1) x 30.0s = 10m0s, not less than the step's timeout: 10m0s (line 16); give the step a timeout: longer than 10m0s, or lower interval, consecutive_success_limit or initial_delay
rb.yml:21:114: step 'delay': param 'initial_delay': the gate can never take a measurement: initial_delay 30.0s is not shorter than the step's timeout: 30.0s (line 20); give the step a timeout: longer than 30.0s, or shorten initial_delay
zdm: 3 errors; nothing ran"
}

# ---- env vars that are not set ---------------------------------------------

@test "env: an unset env var is a warning at validate naming it and its place; a default or a set var is not" {
  unset ZDM_T_UNSET_A ZDM_T_UNSET_B
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: greet
    uses: exec
    with:
      command: [echo, "${{ env.ZDM_T_UNSET_A }}", "${{ env.ZDM_T_UNSET_B or 'b' }}", "${{ env.HOME }}"]
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_equal "$output" "rb.yml: ok (runbook 't', 1 step)"
  assert_equal "$stderr" "rb.yml:7:23: warning: step 'greet': env.ZDM_T_UNSET_A is not set: a run without ZDM_T_UNSET_A in its environment fails this step (set it, or give a default: \${{ env.ZDM_T_UNSET_A or \"...\" }})
rb.yml:4:5: warning: step 'greet' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
  ZDM_T_UNSET_A=x run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_equal "$stderr" "rb.yml:4:5: warning: step 'greet' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
}

@test "env: at run time an unset env var is a step failure naming it (exit 1, rolled back), not a type error; in an if: it is false" {
  unset ZDM_T_UNSET_A
  runbook <<EOF
zdm: 1
name: t
steps:
  - id: mark
    uses: exec
    with: {command: [touch, "$T/marker"]}
    undo: {uses: exec, with: {command: [rm, "$T/marker"]}}
  - id: greet
    uses: exec
    with:
      command: [echo, "\${{ env.ZDM_T_UNSET_A }}"]
  - id: inside
    uses: exec
    with:
      command: [echo, "hello \${{ env.ZDM_T_UNSET_A }}"]
EOF
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  refute_output --partial "must be a string"
  assert_line "        rb.yml:8:5: environment variable ZDM_T_UNSET_A is not set (read by \${{ env.ZDM_T_UNSET_A }}): set it in the environment of zdm, or give a default: \${{ env.ZDM_T_UNSET_A or \"...\" }}"
  assert_not_exist "$T/marker"
  run jq -r 'select(.event=="step.failed") | .step + ": " + .data.error' "$(J)"
  assert_output --partial "greet: rb.yml:8:5: environment variable ZDM_T_UNSET_A is not set"
  # inside a string too; and with the variable set the run passes
  sed -i '/- id: greet/,/ZDM_T_UNSET_A }}"]$/d' rb.yml
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 1
  refute_output --partial "nil inside a string"
  assert_output --partial "rb.yml:8:5: environment variable ZDM_T_UNSET_A is not set (read by \${{ env.ZDM_T_UNSET_A }})"
  ZDM_T_UNSET_A=there run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  # in an if: an unset variable is nil, so false, as before: neither warned about nor an error
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: maybe
    uses: exec
    if: ${{ env.ZDM_T_UNSET_A }}
    with: {command: ["false"]}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  # no word of the unset variable: only that the step has no undo
  assert_equal "$stderr" "rb.yml:4:5: warning: step 'maybe' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
  run zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  run jq -r 'select(.event=="step.skipped") | .step' "$(J)"
  assert_output maybe
}

# ---- GitHub Actions habits --------------------------------------------------

@test "habits: '!=', '&&', '||' and '!x' in \${{ }} say what Lua writes instead (exit 2)" {
  runbook <<'EOF'
zdm: 1
name: t
vars: {env: prod, n: 1}
steps:
  - id: a
    uses: exec
    if: ${{ vars.env != "prod" && vars.n == 1 }}
    with: {command: ["true"]}
  - id: b
    uses: exec
    if: ${{ !(vars.n == 2) || vars.env == "a != b" }}
    with: {command: ["true"]}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:7:9: expression 'vars.env != \"prod\" && vars.n == 1' does not parse: '!=' is not Lua: use ~= (Lua's not-equal); '&&' is not Lua: use and
rb.yml:11:9: expression '!(vars.n == 2) || vars.env == \"a != b\"' does not parse: '||' is not Lua: use or; '!x' is not Lua: use not x
zdm: 2 errors; nothing ran"
}

@test "habits: success(), failure(), always() in \${{ }} or as a plain if: say what zdm offers instead (exit 2)" {
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: a
    uses: exec
    if: ${{ success() }}
    with: {command: ["true"]}
  - id: b
    uses: exec
    if: failure()
    with: {command: ["true"]}
  - id: c
    uses: exec
    with: {command: [echo, "${{ always() }}"]}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:6:9: expression 'success()': success() is GitHub Actions': a zdm step runs only when every step before it succeeded, so leave it out
rb.yml:10:9: step 'b': if: 'failure()' is a GitHub Actions condition: failure() is GitHub Actions': zdm does not run steps after a failure; what puts things back is an undo: (run on rollback), and notify: with on: [failure] tells people
rb.yml:14:28: expression 'always()': always() is GitHub Actions': zdm does not run steps after a failure; use an undo: (run on rollback) or notify: with on: [finish]
zdm: 3 errors; nothing ran"
}

@test "habits: a metric_gate condition with '!=' says to use ~= (exit 2)" {
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: g
    uses: metric_gate
    with: {provider: prometheus, address: "http://127.0.0.1:9/", query: up, failure: result != 1}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  assert_equal "$stderr" "rb.yml:6:86: step 'g': param 'failure': condition 'result != 1' does not parse: '!=' is not Lua: use ~= (Lua's not-equal)
zdm: 1 error; nothing ran"
}

# ---- one name per idea ------------------------------------------------------

@test "names: the earlier names (timeout, bearer) still work against a real server, with a warning naming the new ones" {
  control <<'EOF'
{"/echo": {"echo": true}}
EOF
  start_httpd
  export ZDM_T_TOKEN="tok-$RANDOM-x"
  runbook <<EOF
zdm: 1
name: t
secrets:
  tok: {env: ZDM_T_TOKEN}
steps:
  - id: call
    uses: http
    with:
      url: $BASE/echo
      timeout: 3s
      bearer: "\${{ secrets.tok }}"
      outputs: {auth: .headers.authorization}
EOF
  local warn="rb.yml:10:7: warning: step 'call': param 'timeout' of 'http' is now called 'request_timeout' (the old name still works for now; write request_timeout:)
rb.yml:11:7: warning: step 'call': param 'bearer' of 'http' is now called 'token' (the old name still works for now; write token:)"
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 0
  assert_equal "$stderr" "$warn
rb.yml:6:5: warning: step 'call' changes things and has no undo: a rollback leaves its change in place (add undo:, or accept that)"
  run --separate-stderr zdm run rb.yml --state-dir "$T/state"
  assert_equal "$status" 0
  assert_equal "$(head -2 <<<"$stderr")" "$warn"
  run jq -r 'select(.path=="/echo") | .headers.authorization' "$T/requests.jsonl"
  assert_output "Bearer $ZDM_T_TOKEN"
  # the journal has the new names only
  run jq -c 'select(.event=="step.started") | .data.params | [.request_timeout, .token, has("timeout"), has("bearer")]' "$(J)"
  assert_output '[3000,"***",false,false]'
}

@test "names: the earlier and the new name together are refused (exit 2); approval's decision_timeout, haproxy's request_timeout" {
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: lb
    uses: lb.haproxy
    with:
      socket: /tmp/zdm-no.sock
      backend: app
      servers: {a: {weight: 1}}
      command_timeout: 1s
      request_timeout: 2s
  - id: ok
    uses: approval
    with: {message: go?, timeout: 0s}
EOF
  run --separate-stderr zdm validate rb.yml
  assert_equal "$status" 2
  # warnings first, then the errors, each sorted by place
  assert_equal "$stderr" "rb.yml:14:26: warning: step 'ok': param 'timeout' of 'approval' is now called 'decision_timeout' (the old name still works for now; write decision_timeout:)
rb.yml:10:7: step 'lb': 'command_timeout' and 'request_timeout' are both given: 'command_timeout' is the earlier name of 'request_timeout'; keep only 'request_timeout'
rb.yml:14:35: step 'ok': param 'decision_timeout': must be more than 0
zdm: 2 errors; nothing ran"
}

@test "names: a plugin's renamed = {old = \"new\"} is read the same way, and zdm plugins lists the earlier names" {
  plugin_file "$T/pp" my.probe <<'EOF'
return {
  description = "a probe",
  params = {{name = "request_timeout", type = "duration", default = "1s", doc = "for each request"}},
  renamed = {probe_timeout = "request_timeout"},
  read_only = true,
  run = function(ctx, p) return {outputs = {ms = p.request_timeout}} end,
}
EOF
  runbook <<'EOF'
zdm: 1
name: t
steps:
  - id: p
    uses: my.probe
    with: {probe_timeout: 250ms}
EOF
  run --separate-stderr zdm run rb.yml --state-dir "$T/state" --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_equal "$stderr" "rb.yml:6:12: warning: step 'p': param 'probe_timeout' of 'my.probe' is now called 'request_timeout' (the old name still works for now; write request_timeout:)"
  run jq -r 'select(.event=="step.succeeded") | .data.outputs.ms' "$(J)"
  assert_output 250
  run zdm plugins --plugin-path "$T/pp"
  assert_line "    earlier names, still read: probe_timeout (now request_timeout)"
  assert_line "    earlier names, still read: timeout (now request_timeout), bearer (now token)"
  # a renamed entry must name a param
  sed -i 's/renamed = {probe_timeout = "request_timeout"}/renamed = {probe_timeout = "request_timeot"}/' "$T/pp/my/probe.lua"
  run zdm validate rb.yml --plugin-path "$T/pp"
  assert_equal "$status" 2
  assert_output --partial "renamed: 'probe_timeout' = 'request_timeot': 'request_timeot' is not one of the params"
}

# ---- zdm plugins columns ----------------------------------------------------

@test "plugins: the columns line up whatever the length of a param's name or default" {
  plugin_file "$T/pp" my.long <<'EOF'
return {
  description = "long names",
  params = {
    {name = "a", type = "string", doc = "short"},
    {name = "a_really_quite_long_parameter_name", type = "duration", default = "10s", doc = "long"},
    {name = "where", type = "string", default = "/a/default/path/that/is/much/too/long/for/a/column", doc = "a path"},
  },
  run = function(ctx, p) return {} end,
}
EOF
  run zdm plugins --plugin-path "$T/pp"
  assert_equal "$status" 0
  assert_line "    a                                   string    optional  short"
  assert_line "    a_really_quite_long_parameter_name  duration  \"10s\"     long"
  assert_line "    where                               string    optional  a path (default: \"/a/default/path/that/is/much/too/long/for/a/column\")"
  # every shipped type: within a type, each column starts at one offset, two spaces after the longest
  run python3 - "$output" <<'EOF'
import re, sys
bad = []
block = []
def check(block):
    if not block:
        return
    starts = {len(re.match(r"^    \S+ +", l).group(0)) for l in block}
    types = {len(re.match(r"^    \S+ +\S+ +", l).group(0)) for l in block}
    if len(starts) != 1 or len(types) != 1:
        bad.append(block[0])
    for l in block:
        if not re.match(r"^    \S+  +\S+  +\S+", l):
            bad.append(l)
for l in sys.argv[1].split("\n") + [""]:
    if l.startswith("    ") and not l.startswith("    earlier names"):
        block.append(l)
    elif not l.startswith("    "):
        check(block)
        block = []
print("\n".join(bad))
EOF
  assert_output ""
}
