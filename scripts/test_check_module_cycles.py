#!/usr/bin/env python3
"""Tests of check_module_cycles.py on small crates written to a temporary directory: each case
is a crate's files and whether the checker must find a circle in them."""

import subprocess
import sys
import tempfile
from pathlib import Path

CHECKER = Path(__file__).with_name("check_module_cycles.py")

CASES = [
    (
        "layers that point down",
        {
            "lib.rs": "pub mod a;\npub mod b;\npub use a::Thing;\n",
            "a.rs": "use crate::b::Helper;\npub struct Thing(Helper);\n",
            "b.rs": "pub struct Helper;\n",
        },
        False,
    ),
    (
        "two modules importing each other",
        {
            "lib.rs": "pub mod a;\npub mod b;\n",
            "a.rs": "use crate::b::f;\npub fn g() { f() }\n",
            "b.rs": "pub fn f() { crate::a::g() }\n",
        },
        True,
    ),
    (
        "a circle through three modules, one of them in a group import",
        {
            "lib.rs": "mod a;\nmod b;\nmod c;\n",
            "a.rs": "use crate::{b::B, c};\n",
            "b.rs": "use crate::c::C;\npub struct B;\n",
            "c.rs": "pub struct C;\nfn f() -> crate::a::A { todo!() }\n",
        },
        True,
    ),
    (
        "importing through the root's re-export closes the circle",
        {
            "lib.rs": "mod a;\nmod b;\npub use a::Thing;\n",
            "a.rs": "use crate::b::helper;\npub struct Thing;\n",
            "b.rs": "pub fn helper() -> crate::Thing { todo!() }\n",
        },
        True,
    ),
    (
        "a parent re-exporting its child, which uses the parent's helper",
        {
            "lib.rs": "pub mod wrappers;\n",
            "wrappers/mod.rs": "mod clip;\npub use clip::Clip;\npub fn forward() {}\n",
            "wrappers/clip.rs": "use super::forward;\npub struct Clip;\n",
        },
        False,
    ),
    (
        "a parent calling into its child, which uses the parent",
        {
            "lib.rs": "pub mod vector;\n",
            "vector/mod.rs": "mod sync;\npub fn make() { sync::build() }\npub fn helper() {}\n",
            "vector/sync.rs": "pub fn build() { super::helper() }\n",
        },
        True,
    ),
    (
        "paths in comments, strings and test modules do not count",
        {
            "lib.rs": "mod a;\nmod b;\n",
            "a.rs": "use crate::b::f;\npub fn g() {}\n#[cfg(test)]\nmod tests {\n    use super::*;\n}\n",
            "b.rs": '// crate::a::g()\n/* crate::a::g() */\npub fn f() { let _ = "crate::a::g"; }\n',
        },
        False,
    ),
]


def run_case(files):
    with tempfile.TemporaryDirectory() as tmp:
        crate = Path(tmp) / "demo"
        for name, text in files.items():
            path = crate / "src" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        result = subprocess.run([sys.executable, str(CHECKER), str(crate)], capture_output=True, text=True)
        return result.returncode, result.stdout + result.stderr


def main():
    failed = 0
    for name, files, expect_cycle in CASES:
        code, output = run_case(files)
        ok = code == (1 if expect_cycle else 0)
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {name} (exit {code})")
        if not ok:
            print("    " + output.strip().replace("\n", "\n    "))
    print(f"{len(CASES) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
