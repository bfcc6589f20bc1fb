#!/usr/bin/env python3
"""Compiles every C file the hooks touch with -Wall -Wextra and fails on any warning at a line
the hooks added (warnings as errors for our code, not for NanoMQ's own lines, which are not
ours to change).

    hook_warnings.py <pristine-tree> <patched-tree> <cmake-build-dir>

<pristine-tree> is the same NanoMQ tree before apply.sh, <patched-tree> after it;
<cmake-build-dir> was configured with -DCMAKE_EXPORT_COMPILE_COMMANDS=ON (its
compile_commands.json gives each file's flags). Every added or changed line of a touched .c file
counts as ours, and so does every line of a file the hooks add. Prints one line per file and
"hook_warnings: N passed, M failed" (a file passes with no warning on its lines).
"""
import difflib
import json
import os
import re
import shlex
import subprocess
import sys

FLAGS = ["-Wall", "-Wextra", "-fsyntax-only", "-fdiagnostics-color=never"]
WARN = re.compile(r"^(?P<file>[^:\s][^:]*):(?P<line>\d+):(?:\d+:)? warning: (?P<msg>.*)$")


def changed_files(pristine, patched):
    """Relative paths of the .c/.h files that differ or exist only in the patched tree."""
    out = []
    for root, dirs, files in os.walk(patched):
        dirs[:] = [d for d in dirs if d not in (".git", "build") and not d.startswith("build")]
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            p = os.path.join(root, f)
            rel = os.path.relpath(p, patched)
            q = os.path.join(pristine, rel)
            if not os.path.exists(q) or open(p, "rb").read() != open(q, "rb").read():
                out.append(rel)
    return sorted(out)


def our_lines(pristine_file, patched_file):
    """Line numbers (1-based) of the patched file that the hooks added or changed."""
    new = open(patched_file, errors="replace").read().splitlines()
    if not os.path.exists(pristine_file):
        return set(range(1, len(new) + 1))
    old = open(pristine_file, errors="replace").read().splitlines()
    lines = set()
    sm = difflib.SequenceMatcher(None, old, new, autojunk=False)
    for tag, _, _, j1, j2 in sm.get_opcodes():
        if tag in ("replace", "insert"):
            lines.update(range(j1 + 1, j2 + 1))
    return lines


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    pristine, patched, build = (os.path.realpath(a) for a in sys.argv[1:])
    db = json.load(open(os.path.join(build, "compile_commands.json")))
    by_file = {os.path.realpath(os.path.join(e["directory"], e["file"])): e for e in db}
    files = changed_files(pristine, patched)
    ours = {os.path.join(patched, f): our_lines(os.path.join(pristine, f),
                                                 os.path.join(patched, f)) for f in files}
    passed = failed = 0
    for rel in files:
        if not rel.endswith(".c"):
            continue  # headers: checked through the .c files that include them
        path = os.path.join(patched, rel)
        e = by_file.get(path)
        if e is None:
            print(f"hook_warnings: {rel}: not compiled in this configuration, skipped")
            continue
        args = e["arguments"] if "arguments" in e else shlex.split(e["command"])
        # drop the output (-o X) and the compile-only flag; keep defines and includes
        cmd, skip = [], False
        for a in args:
            if skip:
                skip = False
                continue
            if a == "-o":
                skip = True
                continue
            if a in ("-c", "-Werror") or a.startswith("-W") and not a.startswith("-Wl,"):
                continue
            cmd.append(a)
        r = subprocess.run(cmd + FLAGS, cwd=e["directory"], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            print(f"hook_warnings: {rel}: does not compile:\n{r.stdout[-3000:]}")
            failed += 1
            continue
        mine, theirs = [], 0
        for line in r.stdout.splitlines():
            m = WARN.match(line)
            if not m:
                continue
            f = os.path.realpath(os.path.join(e["directory"], m["file"]))
            if int(m["line"]) in ours.get(f, ()):
                mine.append(f"{os.path.relpath(f, patched)}:{m['line']}: {m['msg']}")
            else:
                theirs += 1
        mine = sorted(set(mine))
        if mine:
            failed += 1
            print(f"hook_warnings: {rel}: FAIL, {len(mine)} warning(s) on the hooks' lines:")
            for w in mine:
                print(f"    {w}")
        else:
            passed += 1
            print(f"hook_warnings: {rel}: ok ({len(ours[path])} lines of ours; "
                  f"{theirs} warning(s) on NanoMQ's own lines, not ours)")
    print(f"hook_warnings: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
