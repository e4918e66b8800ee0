#!/usr/bin/env python3
"""Read a senaite-sync snapshot's tables with the everyday Python tools, as they are.

    python3 tests/python/read_snapshot.py SNAPSHOT_DIR

Opens every tables/*.parquet with pyarrow (required), and with pandas and DuckDB when they are
importable, checks that each table's row count equals the `rows` that manifest.json lists for
it (and that every table the manifest lists exists and vice versa), decodes the JSON columns of
`objects` (`fields`, `sources`) and prints a summary. Exits 0 when everything agrees, 1 on any
mismatch, 2 on a usage error or when pyarrow is missing.
"""
import glob
import json
import os
import sys


def main(argv):
    if len(argv) != 2:
        print(__doc__.strip().split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    snap = argv[1]
    try:
        import pyarrow
        import pyarrow.parquet as pq
    except ImportError as e:
        print("pyarrow is not importable: %s" % e, file=sys.stderr)
        return 2
    try:
        import pandas
    except ImportError:
        pandas = None
    try:
        import duckdb
    except ImportError:
        duckdb = None

    with open(os.path.join(snap, "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    listed = {e["path"]: e for e in manifest.get("files", [])
              if e["path"].startswith("tables/") and e["path"].endswith(".parquet")}
    found = sorted(os.path.relpath(p, snap).replace(os.sep, "/")
                   for p in glob.glob(os.path.join(snap, "tables", "*.parquet")))
    problems = []
    for rel in sorted(set(listed) - set(found)):
        problems.append("%s: listed in manifest.json but missing" % rel)
    for rel in sorted(set(found) - set(listed)):
        problems.append("%s: present but not listed in manifest.json" % rel)
    if not found:
        problems.append("no tables/*.parquet in %s" % snap)

    tools = ["pyarrow %s" % pyarrow.__version__]
    if pandas is not None:
        tools.append("pandas %s" % pandas.__version__)
    if duckdb is not None:
        tools.append("duckdb %s" % duckdb.__version__)
    print("snapshot %s (id %s), read with %s" % (
        snap, manifest.get("snapshot_id", "?")[:12], ", ".join(tools)))
    print("%-18s %8s %8s  %s" % ("table", "rows", "manifest", "columns"))
    for rel in found:
        path = os.path.join(snap, rel)
        name = os.path.basename(rel)[: -len(".parquet")]
        table = pq.read_table(path)
        want = listed.get(rel, {}).get("rows")
        n = table.num_rows
        if want is not None and n != want:
            problems.append("%s: pyarrow reads %d rows, manifest.json says %d" % (rel, n, want))
        if pandas is not None:
            df = pandas.read_parquet(path)
            if len(df) != n:
                problems.append("%s: pandas reads %d rows, pyarrow %d" % (rel, len(df), n))
            if list(df.columns) != table.column_names:
                problems.append("%s: pandas columns %s differ" % (rel, list(df.columns)))
        if duckdb is not None:
            con = duckdb.connect()
            cnt = con.execute("SELECT count(*) FROM read_parquet('%s')"
                              % path.replace("'", "''")).fetchall()[0][0]
            con.close()
            if cnt != n:
                problems.append("%s: duckdb counts %d rows, pyarrow %d" % (rel, cnt, n))
        if name == "objects" and n:
            for col in ("fields", "sources"):
                for i, text in enumerate(table.column(col).to_pylist()):
                    try:
                        if not isinstance(json.loads(text), dict):
                            raise ValueError("not a JSON object")
                    except ValueError as e:
                        problems.append("%s row %d: %s is not a JSON object (%s)"
                                        % (rel, i, col, e))
                        break
        print("%-18s %8d %8s  %s" % (name, n, "?" if want is None else want,
                                     ",".join(table.column_names)))

    if problems:
        for p in problems:
            print("MISMATCH " + p)
        print("read_snapshot: %d tables, %d problem(s)" % (len(found), len(problems)))
        return 1
    print("read_snapshot: %d tables, all row counts equal manifest.json" % len(found))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
