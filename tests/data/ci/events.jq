# events.jq - the `zdm ... --output json` event schema of docs/ci.md
# ("Event stream, schema v1"), as a jq program: for each input line it
# outputs null when the event conforms, else a string naming what is wrong.
# Keep it in step with the tables in docs/ci.md.
#
#   jq -c -f events.jq < stream.jsonl     (every output line must be null)

def isint: type == "number" and . == floor;
def hex64: type == "string" and test("^[0-9a-f]{64}$");
def iso: type == "string" and test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z$");
def str: type == "string";
def bool: type == "boolean";
def obj: type == "object";
def arr: type == "array";

# field checks: name, type test; required or optional (absent or null ok)
def req($o; $k; f): if ($o | has($k)) and ($o[$k] | f) then null else "\($k): missing or wrong type" end;
def opt($o; $k; f): if ($o | has($k) | not) or ($o[$k] | f) then null else "\($k): wrong type" end;

def journal_fields:
  [ req(.; "seq"; isint and . >= 1), req(.; "run"; str), req(.; "data"; obj),
    req(.; "prev"; hex64), req(.; "hash"; hex64), opt(.; "attempt"; isint and . >= 0) ];

def stepped: [ req(.; "step"; str) ];

def data_fields:
  .data as $d |
  if .event == "run.started" then
    [ req($d; "runbook"; str), req($d; "name"; str), req($d; "sha256"; hex64),
      req($d; "vars"; obj), req($d; "secrets"; arr), req($d; "actor"; obj),
      req($d; "zdm_version"; str), req($d; "dry_run"; bool), req($d; "steps"; isint),
      opt($d; "fail_at"; str) ]
  elif .event == "run.resumed" then
    [ req($d; "command"; . == "resume" or . == "rollback"), req($d; "actor"; obj),
      req($d; "allow_changed"; bool), req($d; "sha256"; hex64), req($d; "in_doubt"; str),
      opt($d; "in_doubt_answers"; obj and all(.[]; . == "retry" or . == "skip")) ]
  elif .event == "step.started" then
    stepped + [ req(.; "attempt"; isint and . >= 1), req($d; "uses"; str), req($d; "params"; obj) ]
  elif .event == "step.succeeded" then
    stepped + [ req(.; "attempt"; isint and . >= 1), req($d; "outputs"; obj),
      req($d; "duration_ms"; isint and . >= 0), (if $d | has("undo_data") then null else "undo_data: missing" end) ]
  elif .event == "step.failed" then
    stepped + [ req($d; "error"; str), opt($d; "will_retry"; bool), opt($d; "timed_out"; bool),
      opt($d; "duration_ms"; isint and . >= 0), opt($d; "needs_decision"; bool),
      opt($d; "aborted_by"; str) ]
  elif .event == "step.skipped" then
    stepped + [ req($d; "reason"; str) ]
  elif .event == "undo.skipped" then
    stepped + [ req($d; "reason"; str), req($d; "outcome"; IN("undone", "nothing_to_undo", "left_in_place")),
      opt($d; "in_doubt"; bool) ]
  elif .event == "step.interrupted" then
    stepped + [ req($d; "error"; str), req($d; "signal"; isint) ]
  elif .event == "undo.started" then stepped + [ req($d; "uses"; str) ]
  elif .event == "undo.succeeded" then
    stepped + [ req($d; "duration_ms"; isint and . >= 0),
      req($d; "outcome"; IN("undone", "nothing_to_undo", "left_in_place")), opt($d; "reason"; str) ]
  elif .event == "undo.failed" then stepped + [ req($d; "error"; str) ]
  elif .event == "rollback.started" then [ req($d; "reason"; str), opt(.; "step"; str) ]
  elif .event == "run.paused" then
    [ req($d; "error"; str), opt(.; "step"; str), opt($d; "needs_decision"; bool),
      opt($d; "waiting_for"; . == "approval"), opt($d; "reason"; IN("asked", "lock_lost")),
      opt($d; "paused_by"; str) ]
  elif .event == "run.interrupted" then [ req($d; "signal"; isint) ]
  elif .event == "run.finished" then
    [ req($d; "status"; IN("succeeded", "failed", "rolled_back", "rollback_failed", "aborted")),
      req($d; "exit_code"; isint and . >= 0 and . <= 6), req($d; "duration_ms"; isint and . >= 0),
      opt($d; "failed_step"; str), opt($d; "error"; str), opt($d; "left_in_place"; arr),
      opt($d; "aborted_by"; str), opt($d; "step"; str) ]
  elif .event == "approval.requested" then
    stepped + [ req($d; "message"; str), req($d; "approvers"; arr), req($d; "timeout_ms"; isint),
      req($d; "at"; iso), req($d; "at_ms"; isint) ]
  elif .event == "approval.granted" or .event == "approval.denied" then
    stepped + [ req($d; "actor"; str), req($d; "via"; IN("zdm approve", "--approve", "prompt")),
      opt($d; "reason"; str) ]
  elif .event == "approval.waiting" then
    stepped + [ req(.; "attempt"; isint and . >= 1), req($d; "wait_ms"; isint and . > 0),
      req($d; "until"; iso) ]
  elif .event == "approval.wait_ended" then
    stepped + [ req(.; "attempt"; isint and . >= 1), req($d; "waited_ms"; isint and . >= 0),
      req($d; "reason"; IN("no decision", "interrupted")) ]
  elif .event == "drill.failure" then stepped + [ req($d; "error"; str) ]
  elif .event == "control.pause" or .event == "control.abort" then
    [ req($d; "actor"; str), req($d; "via"; IN("zdm pause", "zdm abort")), opt($d; "reason"; str) ]
  elif .event == "control.promote" then
    stepped + [ req($d; "actor"; str), req($d; "via"; . == "zdm promote"), opt($d; "reason"; str) ]
  elif .event == "notify.failed" then
    [ req($d; "url"; str), req($d; "event"; str), req($d; "on"; str), req($d; "error"; str) ]
  elif (.event | test("^(run|step|undo|approval|notify|rollback|drill|control)\\.")) then [ "unknown event \(.event)" ]
  else stepped   # a step's own event (gate.measurement, a plugin's note): data is the step's
  end;

def check:
  ( [ req(.; "v"; . == 1), req(.; "event"; str), req(.; "ts"; iso) ]
    + if .event == "exit" then
        [ req(.; "exit_code"; isint and . >= 0 and . <= 6), req(.; "status"; str),
          req(.; "command"; str), opt(.; "run"; str), opt(.; "left_in_place"; arr),
          opt(.; "message"; str) ]
      elif .event == "output" then
        [ req(.; "step"; str), req(.; "stream"; IN("stdout", "stderr", "log")), req(.; "line"; str) ]
      elif .event == "validation.error" then
        [ req(.; "message"; str), req(.; "line"; isint), req(.; "col"; isint), opt(.; "file"; str) ]
      else journal_fields + data_fields end )
  | map(select(. != null))
  | if length == 0 then null else join("; ") end;

check
