#!/usr/bin/env bash
# scripts/check-includes.sh: no include cycles between zdm's source files.
#
#   scripts/check-includes.sh [--root DIR] [-I DIR]...
#
# Reads every `#include "..."` line of the .c and .h files under src/ and
# include/ (angle-bracket includes are system headers and are not read) and
# resolves each the way the compiler does for quoted includes: first against
# the including file's own directory, then against the -I directories in
# order (default: -I include -I src; `make check-includes` passes the
# Makefile's own -I flags).  A file found outside src/ and include/ (a
# library's header) is no node.  A name found nowhere makes the graph
# incomplete: it is named on stderr and the exit is 2.
#
# The graph is file level, one node per module: a .c file and the .h of the
# same name in the same directory are one node (src/core/journal.c with
# src/core/journal.h), named by its .c; a header without a .c is a node of
# its own.  An edge A -> B means a file of A includes a file of B; a module
# including its own header is no edge.  Preprocessor conditions are not
# evaluated: an include inside #if counts.
#
# It also keeps stored runs behind one door (core/store.h): only the state
# backends, src/core/store_*.c (files, PostgreSQL), may call journal.c's
# readers and writers (journal_create, journal_reopen, journal_open_sink,
# journal_append, journal_read, journal_read_text, journal_verify,
# journal_verify_text) or lock.c (lock_acquire, lock_release,
# lock_still_held, lock_held, lock_inspect), besides journal.c and lock.c themselves.
# Each other call is
# printed as
#   door: src/core/launch.c:212: calls journal_append (go through core/store.h)
# and makes the exit 1.
#
# Exit 1, printing every cycle as one line, e.g.
#   cycle: src/core/a.c -> src/core/b.c -> src/core/a.c
# exit 0 with one summary line (modules, edges) when there is none; exit 2,
# when there is none either, on an include that is not found or a usage error.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
incs=()
while [ $# -gt 0 ]; do
	case "$1" in
	--root) [ $# -ge 2 ] || { echo "check-includes: --root needs a directory" >&2; exit 2; }
		root="$2"; shift 2 ;;
	-I) [ $# -ge 2 ] || { echo "check-includes: -I needs a directory" >&2; exit 2; }
		incs+=("$2"); shift 2 ;;
	-I*) incs+=("${1#-I}"); shift ;;
	-h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
	*) echo "check-includes: unknown argument '$1' (usage: check-includes.sh [--root DIR] [-I DIR]...)" >&2
		exit 2 ;;
	esac
done
[ ${#incs[@]} -gt 0 ] || incs=(include src)
[ -d "$root/src" ] || { echo "check-includes: no src/ in '$root'" >&2; exit 2; }
command -v python3 >/dev/null || { echo "check-includes: python3 is needed" >&2; exit 2; }

cd "$root"
exec python3 - "${incs[@]}" <<'PY'
import os, re, sys

incdirs = sys.argv[1:]
INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"')

files = []
for top in ("src", "include"):
    for d, subdirs, names in os.walk(top):
        subdirs.sort()
        files += [os.path.normpath(os.path.join(d, n)) for n in sorted(names)
                  if n.endswith((".c", ".h"))]
known = set(files)

def module(path):
    """the node of a file: its .c when it has one beside it, else itself"""
    stem, ext = os.path.splitext(path)
    if ext == ".h" and stem + ".c" in known:
        return stem + ".c"
    return path

def resolve(including, name):
    for d in [os.path.dirname(including)] + incdirs:
        cand = os.path.normpath(os.path.join(d, name))
        if os.path.isfile(cand):
            return cand
    return None

nodes = sorted({module(f) for f in files})
edges = {n: set() for n in nodes}
unresolved = 0
for f in files:
    with open(f, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            target = resolve(f, m.group(1))
            if target is None:
                print(f'check-includes: {f}:{lineno}: "{m.group(1)}" is in none of '
                      f'{os.path.dirname(f)}/, {", ".join(d.rstrip("/") + "/" for d in incdirs)}',
                      file=sys.stderr)
                unresolved += 1
                continue
            if target not in known:
                continue        # outside src/ and include/
            a, b = module(f), module(target)
            if a != b:
                edges[a].add(b)

# strongly connected components (Tarjan, iterative): every cycle lies in one
index, low, on, stack, sccs, counter = {}, {}, set(), [], [], [0]
for start in nodes:
    if start in index:
        continue
    work = [(start, iter(sorted(edges[start])))]
    index[start] = low[start] = counter[0]; counter[0] += 1
    stack.append(start); on.add(start)
    while work:
        v, it = work[-1]
        for w in it:
            if w not in index:
                index[w] = low[w] = counter[0]; counter[0] += 1
                stack.append(w); on.add(w)
                work.append((w, iter(sorted(edges[w]))))
                break
            if w in on:
                low[v] = min(low[v], index[w])
        else:
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    sccs.append(sorted(comp))

# every elementary cycle of each component, each once: it starts at its
# smallest node and goes only through larger ones
LIMIT = 100
cycles = []
for comp in sccs:
    members = set(comp)
    found = 0
    for s in comp:
        path, blocked = [s], {s}
        def walk(v):
            global found
            for w in sorted(edges[v] & members):
                if found >= LIMIT:
                    return
                if w == s:
                    cycles.append(path + [s]); found += 1
                elif w > s and w not in blocked:
                    path.append(w); blocked.add(w)
                    walk(w)
                    path.pop(); blocked.discard(w)
        walk(s)
    if found >= LIMIT:
        print(f"check-includes: more than {LIMIT} cycles through {', '.join(comp)}; the first {LIMIT} are shown",
              file=sys.stderr)

# one door to stored runs: who may call the journal's and the lock's own functions
DOOR = re.compile(r'\b(journal_(?:create|reopen|open_sink|append|read|read_text|verify|verify_text)'
                  r'|lock_(?:acquire|release|still_held|held|inspect))\s*\(')
DOOR_OK = {"src/core/journal.c", "src/core/journal.h", "src/core/lock.c", "src/core/lock.h"}
doors = 0
for f in files:
    if f in DOOR_OK or re.fullmatch(r"src/core/store_\w+\.c", f):
        continue
    with open(f, encoding="utf-8", errors="replace") as fh:
        for lineno, line in enumerate(fh, 1):
            code = line.split("//")[0]
            if code.lstrip().startswith(("*", "/*")):
                continue        # a comment may name them
            for m in DOOR.finditer(code):
                print(f"door: {f}:{lineno}: calls {m.group(1)} (go through core/store.h)")
                doors += 1

nedges = sum(len(e) for e in edges.values())
for c in sorted(cycles, key=lambda c: (len(c), c)):
    print("cycle: " + " -> ".join(c))
if cycles:
    print(f"check-includes: {len(cycles)} include cycle(s) among {len(nodes)} modules, {nedges} edges",
          file=sys.stderr)
if unresolved:
    print(f"check-includes: {unresolved} include(s) not found: the graph is incomplete "
          "(give the compiler's -I directories, or run make check-includes)", file=sys.stderr)
if doors:
    print(f"check-includes: {doors} call(s) past core/store.h: only the backends, "
          "src/core/store_*.c, may call journal.c's readers and writers or lock.c", file=sys.stderr)
if cycles or doors:
    sys.exit(1)
if unresolved:
    sys.exit(2)
print(f"check-includes: {len(nodes)} modules, {nedges} edges, no cycles; runs stored through core/store.h only")
PY
