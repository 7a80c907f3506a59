#!/usr/bin/env python3
"""Fails when the modules of a Rust crate import each other in a circle.

Why a script and not `cargo-modules`: cargo-modules builds rust-analyzer (minutes of CI time on
a clean machine, every run) to answer a question that the source text answers. A module's
dependencies are the paths it names: `crate::a::b` anywhere in its code, `super::x` from a
file-backed module, and `child::x` for a child module it declares (`mod child;`). Each file is
one module (`src/a.rs` and `src/a/mod.rs` are `a`, `src/a/b.rs` is `a::b`); a path names the
longest module it starts with, and `crate::Item` names the module that defines the item the
crate root re-exports. A `pub use` is a facade, not a dependency: a parent that re-exports its
children's items may still lend them its helpers. Comments and string literals are ignored;
`use super::*` inside an inline `mod tests { … }` names its own file.

Usage: check_module_cycles.py CRATE_DIR…   (each holding src/lib.rs or src/main.rs)
Prints every circle with the lines that make its edges; exits 1 if there is one.
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"(?<![\w:])(crate|super|self|[a-z_][a-z0-9_]*)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
MOD_DECL = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+([a-z_][a-z0-9_]*)\s*;")
INLINE_MOD = re.compile(r"^\s*(?:#\[[^\]]*\]\s*)*(?:pub(?:\([^)]*\))?\s+)?mod\s+[a-z_][a-z0-9_]*\s*\{")
PUB_USE = re.compile(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", re.S)
GROUP = re.compile(r"(crate|super)::\{([^}]*)\}")


def strip_code(text):
    """The source with comments and string/char literals blanked, line breaks kept."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append("\n" * text.count("\n", i, j))
            i = j
        elif c == "r" and re.match(r'r#*"', text[i:i + 10]) and (i == 0 or not text[i - 1].isalnum()):
            hashes = re.match(r'r(#*)"', text[i:]).group(1)
            end = text.find('"' + hashes, i + 2 + len(hashes))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append("\n" * text.count("\n", i, end))
            i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append('""' + "\n" * text.count("\n", i, j))
            i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'", text[i:i + 4]):
            m = re.match(r"'(\\.|[^\\'])'", text[i:])
            out.append("' '")
            i += len(m.group(0))
        else:
            out.append(c)
            i += 1
    return "".join(out)


def modules_of(src):
    """Maps module path (tuple of names; () is the root) to its file."""
    modules = {}
    for path in sorted(src.rglob("*.rs")):
        rel = path.relative_to(src).with_suffix("")
        parts = list(rel.parts)
        if parts in (["lib"], ["main"]):
            parts = []
        elif parts[-1] == "mod":
            parts = parts[:-1]
        modules[tuple(parts)] = path
    return modules


def resolve(modules, base, names):
    """The longest declared module that `base + names` starts with, or the root's items."""
    full = list(base) + names
    for k in range(len(full), -1, -1):
        if tuple(full[:k]) in modules:
            return tuple(full[:k])
    return ()


def use_items(tree):
    """(path of names, exported name) for each item of a `use` tree: `a::{b, c::d as e}`."""
    tree = re.sub(r"\s+", "", re.sub(r"\s+as\s+", "@", tree))
    if "{" not in tree:
        path, _, alias = tree.partition("@")
        names = path.split("::")
        return [(names, alias or names[-1])]
    prefix, inner = tree.split("{", 1)
    inner = inner.rsplit("}", 1)[0]
    out, depth, part = [], 0, ""
    for c in inner + ",":
        if c == "," and depth == 0:
            if part and part != "self":
                out += [(prefix.strip(":").split("::") + names, alias) for names, alias in use_items(part)]
            part = ""
            continue
        depth += (c == "{") - (c == "}")
        part += c
    return out


def reexports(modules):
    """Maps each item the crate root re-exports to the module that defines it."""
    root = modules.get(())
    if root is None:
        return {}
    found = {}
    for m in PUB_USE.finditer(strip_code(root.read_text(encoding="utf-8"))):
        for names, alias in use_items(m.group(1)):
            names = names[1:] if names and names[0] == "crate" else names
            if tuple(names[:1]) in modules:
                found[alias] = resolve(modules, (), names)
    return found


def facade_lines(code):
    """Line numbers (1-based) that belong to a `pub use` statement."""
    text = "\n".join(code)
    lines = set()
    for m in PUB_USE.finditer(text):
        first = text.count("\n", 0, m.start()) + 1
        lines.update(range(first, first + m.group(0).count("\n") + 1))
    return lines


def edges_of(modules, exported, module, path):
    """(target module, line number, line text) for every module path this file names."""
    raw = path.read_text(encoding="utf-8")
    code = strip_code(raw).split("\n")
    facade = facade_lines(code)
    lines = raw.split("\n")
    children = {m.group(1) for line in code if (m := MOD_DECL.match(line))}
    found = []
    inline_depth = None  # brace depth at which an inline module opened
    depth = 0
    for number, line in enumerate(code, 1):
        if inline_depth is None and INLINE_MOD.match(line):
            inline_depth = depth
        in_inline = inline_depth is not None
        if number in facade:
            depth += line.count("{") - line.count("}")
            continue
        refs = []
        for group in GROUP.finditer(line):
            for item in group.group(2).split(","):
                head = item.strip().split("::")
                if head[0] and head[0] not in ("self", "*"):
                    refs.append((group.group(1), head))
        for m in PATH.finditer(line):
            head, rest = m.group(1), [p for p in m.group(2).split("::") if p and p != "{"]
            if rest:
                refs.append((head, rest))
        for head, rest in refs:
            if head == "crate":
                target = resolve(modules, (), rest)
                if target == () and rest[0] in exported:
                    target = exported[rest[0]]
            elif head == "super":
                if in_inline:
                    continue
                target = resolve(modules, module[:-1], rest)
            elif head in children and not line.lstrip().startswith(("mod ", "pub mod ")):
                target = resolve(modules, module, [head] + rest)
            else:
                continue
            if target != module:
                found.append((target, number, lines[number - 1].strip()))
        depth += line.count("{") - line.count("}")
        if inline_depth is not None and depth <= inline_depth:
            inline_depth = None
    return found


def strongly_connected(graph):
    """Tarjan's strongly connected components of size > 1."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(component)

    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def shortest_cycle(graph, component):
    """One shortest circle through the component's first module (breadth-first)."""
    members = set(component)
    start = min(component)
    previous, frontier = {start: None}, [start]
    while frontier:
        following = []
        for v in frontier:
            for w in sorted(graph.get(v, ())):
                if w == start:
                    cycle, u = [start], v
                    while u is not None:
                        cycle.append(u)
                        u = previous[u]
                    return list(reversed(cycle))
                if w in members and w not in previous:
                    previous[w] = v
                    following.append(w)
        frontier = following
    return [start]


def name(module):
    return "crate" if not module else "::".join(module)


def check(crate):
    src = crate / "src"
    modules = modules_of(src)
    exported = reexports(modules)
    graph, why = {}, {}
    for module, path in modules.items():
        for target, number, text in edges_of(modules, exported, module, path):
            graph.setdefault(module, set()).add(target)
            why.setdefault((module, target), (path, number, text))
    cycles = strongly_connected(graph)
    for component in cycles:
        cycle = shortest_cycle(graph, component)
        print(f"{crate.name}: module cycle: {' -> '.join(name(m) for m in cycle)}")
        for a, b in zip(cycle, cycle[1:]):
            path, number, text = why[(a, b)]
            print(f"    {path}:{number}: {text}")
        if len(component) > len(cycle) - 1:
            others = sorted(set(component) - set(cycle))
            print(f"    (the circle also runs through {', '.join(name(m) for m in others)})")
    return len(cycles)


def main(args):
    if not args:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    total = 0
    for arg in args:
        crate = Path(arg)
        if not (crate / "src").is_dir():
            print(f"error: {crate} has no src/ directory (pass a crate's directory)", file=sys.stderr)
            return 2
        found = check(crate)
        if not found:
            print(f"{crate.name}: no module cycles ({len(modules_of(crate / 'src'))} modules)")
        total += found
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
