#!/usr/bin/env python3
"""py_compile every module of the add-on and its tests (Python 3 syntax).

    python3 companion/tests/check_py3_compile.py      # exit 1 on an error
"""
import os
import py_compile
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    failed = 0
    count = 0
    out = tempfile.mkdtemp(prefix="py3-compile-")
    for base in ("senaite_sync_receiver", "tests"):
        for dirpath, _, names in os.walk(os.path.join(ROOT, base)):
            for name in sorted(names):
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                count += 1
                try:
                    py_compile.compile(path, cfile=os.path.join(out, name + "c"), doraise=True)
                except py_compile.PyCompileError as err:
                    failed += 1
                    print(err.msg)
    failed += 0 if os.path.exists(os.path.join(ROOT, "setup.py")) else 1
    print("%d module(s) compiled, %d failed" % (count, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
