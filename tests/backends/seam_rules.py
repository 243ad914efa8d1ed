#!/usr/bin/env python3
"""The backend seam's rules, checked on the source tree (docs/architecture.md, "The seam").

1. backends/ is the bottom layer: its headers include nothing but core/, backends/ and
   standard or vendor headers; src/backends/ includes only those and its own helpers.
2. Layers, losses, optimizers and transforms never branch on the backend: no `is_host` in
   nn/, models/, loss/, optim/, transforms/.
3. Vendor libraries are named in backends/ alone: no cuda*/cudnn*/cublas* call and no
   `#if MEDSEG_WITH_CUDA` in include/medseg/ outside backends/.
4. core/ is the vocabulary below the backends: it includes only core/ and, for Tensor's
   default backend, backends/cpu/backend.hpp.

PENDING lists the places that still break a rule while the seam is being finished; each must
still break it (a stale entry fails too), so the list only shrinks.
Usage: seam_rules.py SOURCE_DIR   (exit 0: every rule holds; 1: violations, one per line)
"""
import os
import re
import sys

PENDING = {
}

LAYERS_WITHOUT_BRANCHES = ("nn", "models", "loss", "optim", "transforms")
VENDOR_CALL = re.compile(r"\b(cuda[A-Z]\w*|cudnn\w*|cublas\w*)\s*\(")
CUDA_CONDITION = re.compile(r"^\s*#\s*(if|ifdef|ifndef|elif)\b.*\bMEDSEG_WITH_CUDA\b")
QUOTED_INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def code_lines(path):
    """(number, line) with // comments and /* */ blocks blanked out."""
    text = open(path, encoding="utf-8").read()
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    for number, line in enumerate(text.split("\n"), 1):
        yield number, re.sub(r"//.*", "", line) if not QUOTED_INCLUDE.match(line) else line


def sources(folder):
    for root, _, files in os.walk(folder):
        for name in sorted(files):
            if name.endswith((".hpp", ".cuh", ".cu", ".cpp", ".h")):
                yield os.path.join(root, name)


def check(source_dir):
    include = os.path.join(source_dir, "include", "medseg")
    found = set()
    rel = lambda p: os.path.relpath(p, source_dir)

    allowed = [os.path.join(include, "backends"), os.path.join(include, "core")]
    for path in sources(os.path.join(include, "backends")):
        for number, line in code_lines(path):
            m = QUOTED_INCLUDE.match(line)
            if m:
                target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
                if not any(target.startswith(a + os.sep) for a in allowed):
                    found.add((rel(path), 1, f"includes {m.group(1)}"))
    src_backends = os.path.join(source_dir, "src", "backends")
    for path in sources(src_backends):
        for number, line in code_lines(path):
            m = QUOTED_INCLUDE.match(line)
            if m:
                name = m.group(1)
                local = os.path.normpath(os.path.join(os.path.dirname(path), name))
                ok = name.startswith(("medseg/backends/", "medseg/core/", "backends/")) or (
                    os.path.exists(local) and local.startswith(src_backends + os.sep))
                if not ok:
                    found.add((rel(path), 1, f"includes {name}"))

    for layer in LAYERS_WITHOUT_BRANCHES:
        for path in sources(os.path.join(include, layer)):
            for number, line in code_lines(path):
                if re.search(r"\bis_host\b", line):
                    found.add((rel(path), 2, "branches on is_host"))

    for path in sources(include):
        if rel(path).startswith(os.path.join("include", "medseg", "backends") + os.sep):
            continue
        for number, line in code_lines(path):
            if CUDA_CONDITION.match(line):
                found.add((rel(path), 3, "#if MEDSEG_WITH_CUDA"))
            m = VENDOR_CALL.search(line)
            if m:
                found.add((rel(path), 3, f"calls {m.group(1)}"))
    core = os.path.join(include, "core")
    default_backend = os.path.join(include, "backends", "cpu", "backend.hpp")
    for path in sources(core):
        for number, line in code_lines(path):
            m = QUOTED_INCLUDE.match(line)
            if m:
                target = os.path.normpath(os.path.join(os.path.dirname(path), m.group(1)))
                if not (target.startswith(core + os.sep) or target == default_backend):
                    found.add((rel(path), 4, f"includes {m.group(1)}"))
    return found


def main():
    source_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    found = check(os.path.abspath(source_dir))
    failures = []
    broken = {(path, rule) for path, rule, _ in found}
    for path, rule, what in sorted(found):
        if (path, rule) not in PENDING:
            failures.append(f"{path}: rule {rule}: {what}")
    for (path, rule), why in sorted(PENDING.items()):
        if (path, rule) not in broken:
            failures.append(f"{path}: rule {rule} now holds: remove it from PENDING ({why})")
    for f in failures:
        print(f)
    print(f"seam rules: {len(found)} known violation(s) pending, {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
