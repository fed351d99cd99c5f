"""The Ray engine's data stages against the local engine and against an earlier revision, stage by stage.

    python benchmarks/ray_stages.py --data DIR --before REF [--stages ingest,tokenize,clean] [--write]

DIR is a directory that ``benchmarks/data_pipeline.py`` filled (``world/``, ``posts.parquet``,
``clean.parquet``, ``tokenizer/``). For each stage, one right after the other so that all three see
the same load: the local engine with 2 workers, the Ray engine with the code of git revision REF
("before") and with this tree ("after"), each on a fresh local Ray instance on 2 CPUs (its start is
timed apart and not counted), each in its own process. Each output is checked against the local
engine's bytes. The log of each run (``--keep-logs``) has the stage's phases with sub-second stamps.
With ``--write``, the table goes to its section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

from data_pipeline import code_at
from report import write_section

ROOT = Path(__file__).resolve().parents[1]

RUN = """
import json, os, resource, shutil, sys, time
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
from pathlib import Path
import murmur.progress as progress
T0 = time.perf_counter()
def log(message):
    print(f"[{time.perf_counter() - T0:7.2f}] {message}", file=sys.stderr, flush=True)
progress.log = log

def main():
    stage, engine, data, out = sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])
    result = {}
    if engine == "ray":
        import murmur.data.ray_engine as ray_engine
        ray_engine.log = log
        t = time.perf_counter()
        ray_engine.connect(None, num_cpus=2)
        result["ray_start_s"] = time.perf_counter() - t
    t = time.perf_counter()
    if stage == "ingest":
        sources = [str(data / "world" / "archives"), str(data / "world" / "api")]
        if engine == "ray":
            ray_engine.ingest_ray(sources, out / "posts.parquet", workers=2, progress=False)
        else:
            from murmur.data.sources import ingest
            ingest(sources, out / "posts.parquet", workers=2, progress=False)
        same = (out / "posts.parquet").read_bytes() == (data / "posts.parquet").read_bytes()
        import pyarrow.parquet as pq
        result["posts"] = pq.ParquetFile(out / "posts.parquet").metadata.num_rows
    elif stage == "clean":
        from murmur.data.clean import CleanConfig, clean
        if engine == "ray":
            r = ray_engine.clean_ray(str(data / "posts.parquet"), str(out / "clean.parquet"), CleanConfig(),
                                     workers=2, stats_path=out / "stats.json")
        else:
            r = clean(data / "posts.parquet", out / "clean.parquet", CleanConfig(), workers=2,
                      stats_path=out / "stats.json")
        same = (out / "clean.parquet").read_bytes() == (data / "clean.parquet").read_bytes()
        result["posts"] = r.posts_in
    else:
        from murmur.data.shards import ShardConfig, tokenize_to_shards
        if engine == "ray":
            m = ray_engine.tokenize_ray(data / "clean.parquet", data / "tokenizer", out / "shards", ShardConfig(),
                                        workers=2)
        else:
            m = tokenize_to_shards(data / "clean.parquet", data / "tokenizer", out / "shards", ShardConfig(), workers=2)
        names = sorted(p.name for p in (data / "shards").iterdir() if p.name.endswith(".bin"))
        same = names == sorted(p.name for p in (out / "shards").iterdir() if p.name.endswith(".bin")) and all(
            (data / "shards" / n).read_bytes() == (out / "shards" / n).read_bytes() for n in names)
        import pyarrow.parquet as pq
        result["posts"] = pq.ParquetFile(data / "clean.parquet").metadata.num_rows
    result["seconds"] = time.perf_counter() - t
    result["same"] = same
    result["load"] = os.getloadavg()[0]
    if engine == "ray":
        import ray
        ray.shutdown()
    print("RESULT " + json.dumps(result), flush=True)

if __name__ == "__main__":
    main()
"""


def run(stage: str, engine: str, code: Path, data: Path, logs: Path) -> dict:
    with tempfile.TemporaryDirectory(prefix="murmur-ray-stages-") as out:
        script = Path(out) / "run.py"
        script.write_text(textwrap.dedent(RUN))
        env = {**os.environ, "PYTHONPATH": str(code)}
        p = subprocess.run(["nice", "-n", "10", sys.executable, str(script), stage, engine, str(data), out],
                           env=env, capture_output=True, text=True, timeout=1200, cwd=code)  # Ray puts the
        # driver's working directory first on its workers' path: run in the code's own tree
    side = "local" if engine == "local" else ("after" if code == ROOT else "before")
    (logs / f"{stage}-{side}.log").write_text(p.stdout + p.stderr)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    if p.returncode or not lines:
        raise SystemExit(f"{stage} ({side}) failed; see {logs / f'{stage}-{side}.log'}")
    return json.loads(lines[-1][len("RESULT "):])


def table(rows: list[dict], before: str) -> list[str]:
    """The Markdown table of the runs' rows."""
    import platform
    import time

    import ray

    from murmur.train.metrics import cpu_model_name

    lines = [f"Machine: {cpu_model_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
             f"Ray {ray.__version__}, {time.strftime('%Y-%m-%d')}.", "",
             f"`python benchmarks/ray_stages.py --before {before}`: each stage with the local engine "
             "(2 workers), then on a fresh local Ray instance on the same 2 cores with the Ray engine of "
             f"{before} (before) and of this tree (after), one right after the other; Ray's start is "
             "not counted. posts/s: wall clock; load: the 1-minute load average after the stage.", "",
             "| stage | posts | local (posts/s) | Ray before | Ray after | before / local | after / local "
             "| Ray start (s) | load | same output |", "|---|---|---|---|---|---|---|---|---|---|"]
    rows.sort(key=lambda r: ("ingest", "clean", "tokenize").index(r["stage"]))
    for r in rows:
        rate = {k: r[k]["posts"] / r[k]["seconds"] for k in ("local", "before", "after")}
        lines.append(f"| {r['stage']} | {r['local']['posts']:,} | {rate['local']:,.0f} | {rate['before']:,.0f} | "
                     f"{rate['after']:,.0f} | {rate['before'] / rate['local']:.2f} | "
                     f"{rate['after'] / rate['local']:.2f} | {r['after']['ray_start_s']:.1f} | "
                     f"{r['local']['load']:.1f} / {r['before']['load']:.1f} / {r['after']['load']:.1f} | "
                     f"{'yes' if all(r[k]['same'] for k in ('local', 'before', 'after')) else 'NO'} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True, help="a directory filled by benchmarks/data_pipeline.py")
    ap.add_argument("--before", required=True, help="git revision of the Ray engine to compare with")
    ap.add_argument("--stages", default="ingest,tokenize,clean")
    ap.add_argument("--logs", default=str(Path(tempfile.gettempdir()) / "murmur-ray-stages"))
    ap.add_argument("--keep", action="store_true", help="keep the rows of other stages from an earlier run in --logs")
    ap.add_argument("--write-only", action="store_true", help="write the table of the rows in --logs, run nothing")
    ap.add_argument("--write", action="store_true", help="write the table to docs/benchmarks.md")
    args = ap.parse_args()
    data, logs = Path(args.data), Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    done = logs / "rows.jsonl"  # one row per stage run, appended as each stage ends
    if args.write_only:
        rows = [json.loads(ln) for ln in done.read_text().splitlines()]
        write_section("ray_stages", "## Data pipeline on Ray: stage by stage against an earlier revision\n\n"
                      + "\n".join(table(rows, args.before)), ROOT / "docs" / "benchmarks.md")
        return
    before = code_at(args.before, logs / "code-before")
    rows = [json.loads(ln) for ln in done.read_text().splitlines()] if done.exists() and args.keep else []
    rows = [r for r in rows if r["stage"] not in args.stages.split(",")]
    for stage in args.stages.split(","):
        row = {"stage": stage, "local": run(stage, "local", ROOT, data, logs),
               "before": run(stage, "ray", before, data, logs), "after": run(stage, "ray", ROOT, data, logs)}
        rows.append(row)
        with open(done, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    lines = table(rows, args.before)
    print("\n".join(lines))
    if args.write:
        write_section("ray_stages", "## Data pipeline on Ray: stage by stage against an earlier revision\n\n"
                      + "\n".join(lines), ROOT / "docs" / "benchmarks.md")


if __name__ == "__main__":
    main()
