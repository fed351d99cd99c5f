"""Data pipeline throughput: posts/s and peak memory per stage, with 1 and 2 workers.

    python benchmarks/data_pipeline.py --posts 1000000 [--sizes 250000,1000000] [--out /tmp/murmur-bench]

Generates a demo world of the requested size, then runs ingest, clean (with near-dedup), tokenizer
training and tokenize, each in a fresh process so its peak memory is its own, with 1 and 2 local
workers, then ingest, clean and tokenize on a local Ray instance on the same cores (checked to give
the local engine's output byte for byte). Beside murmur's
tokenize it runs the same encoding with a plain `tokenizers` `encode_batch` loop (no shards, no
split, no workers), so the cost of murmur's own layer is visible. Running two corpus sizes shows
whether memory stays flat as the corpus grows. Results go to docs/benchmarks.md.

    python benchmarks/data_pipeline.py --before REF --sizes 100000

instead runs the local stages with the code of git revision REF ("before") and with this tree
("after"), one after the other for each stage so that both see the same load, and checks that both
write the same bytes (cleaned posts, shards); CPU seconds per post are reported beside posts/s because
wall time on a shared machine moves with the other jobs. Results go to their own section.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
POSTS_PER_USER = 12.0  # WorldConfig's mean; the user count is derived from the requested posts
LOAD_AT_START = os.getloadavg()[0]  # other jobs on the same cores make absolute rates noisy: compare ratios
RAY_STAGES = ("ingest", "clean", "tokenize")  # tokenizer training is one Rust process: no Ray engine

STAGES = {
    "generate": """
        from murmur.world.generate import WorldConfig, generate_world
        s = generate_world(OUT / "world", WorldConfig(users=USERS, seed=0))
        RESULT["posts"] = s.posts
    """,
    "ingest": """
        from murmur.data.sources import ingest
        s = ingest([str(OUT / "world" / "archives"), str(OUT / "world" / "api")], OUT / "posts.parquet",
                   workers=WORKERS)
        RESULT["posts"] = s.posts
    """,
    "clean": """
        from murmur.data.clean import CleanConfig, clean
        r = clean(OUT / "posts.parquet", OUT / "clean.parquet", CleanConfig(), workers=WORKERS,
                  stats_path=OUT / "stats.json")
        RESULT["posts"] = r.posts_in
        RESULT["kept"] = r.kept
    """,
    "clean-ray": """
        import os
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        from murmur.data.clean import CleanConfig
        from murmur.data.ray_engine import clean_ray, connect
        t_start = time.perf_counter()
        connect(None, num_cpus=WORKERS)  # a local Ray instance on the same cores
        RESULT["ray_start_s"] = time.perf_counter() - t_start
        t0 = time.perf_counter()  # the rate counts the stage, not the cluster's start
        with RayWorkerMemory() as mem:
            r = clean_ray(str(OUT / "posts.parquet"), str(OUT / "clean-ray.parquet"), CleanConfig(), workers=WORKERS,
                          stats_path=OUT / "stats-ray.json")
        RESULT["posts"] = r.posts_in
        RESULT["kept"] = r.kept
        RESULT["rss_ray_worker_mb"] = mem.peak_mb
        RESULT["same_as_local"] = (OUT / "clean-ray.parquet").read_bytes() == (OUT / "clean.parquet").read_bytes()
    """,
    "ingest-ray": """
        import os
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        from murmur.data.ray_engine import connect, ingest_ray
        t_start = time.perf_counter()
        connect(None, num_cpus=WORKERS)
        RESULT["ray_start_s"] = time.perf_counter() - t_start
        t0 = time.perf_counter()
        with RayWorkerMemory() as mem:
            s = ingest_ray([str(OUT / "world" / "archives"), str(OUT / "world" / "api")], OUT / "posts-ray.parquet",
                           workers=WORKERS)
        RESULT["posts"] = s.posts
        RESULT["rss_ray_worker_mb"] = mem.peak_mb
        RESULT["same_as_local"] = (OUT / "posts-ray.parquet").read_bytes() == (OUT / "posts.parquet").read_bytes()
    """,
    "tokenize-ray": """
        import os
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        from murmur.data.ray_engine import connect, tokenize_ray
        from murmur.data.shards import ShardConfig
        t_start = time.perf_counter()
        connect(None, num_cpus=WORKERS)
        RESULT["ray_start_s"] = time.perf_counter() - t_start
        t0 = time.perf_counter()
        with RayWorkerMemory() as mem:
            m = tokenize_ray(OUT / "clean.parquet", OUT / "tokenizer", OUT / "shards-ray", ShardConfig(),
                             workers=WORKERS, overwrite=True)
        RESULT["posts"] = m.train_docs + m.val_docs
        RESULT["rss_ray_worker_mb"] = mem.peak_mb
        names = sorted(p.name for p in (OUT / "shards").iterdir())
        RESULT["same_as_local"] = names == sorted(p.name for p in (OUT / "shards-ray").iterdir()) and all(
            (OUT / "shards" / n).read_bytes() == (OUT / "shards-ray" / n).read_bytes() for n in names)
    """,
    "tokenizer": """
        from murmur.tokenizer import TokenizerConfig, train_tokenizer
        import pyarrow.parquet as pq
        train_tokenizer([OUT / "clean.parquet"], OUT / "tokenizer", TokenizerConfig(vocab_size=16384), overwrite=True)
        RESULT["posts"] = pq.ParquetFile(OUT / "clean.parquet").metadata.num_rows
    """,
    "tokenize": """
        from murmur.data.shards import ShardConfig, tokenize_to_shards
        m = tokenize_to_shards(OUT / "clean.parquet", OUT / "tokenizer", OUT / "shards", ShardConfig(),
                               workers=WORKERS, overwrite=True)
        RESULT["posts"] = m.train_docs + m.val_docs
        RESULT["tokens"] = m.train_tokens + m.val_tokens
    """,
    "plain-encode_batch": """
        import pyarrow.parquet as pq
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(OUT / "tokenizer" / "tokenizer.json"))
        n = t = 0
        for batch in pq.ParquetFile(OUT / "clean.parquet").iter_batches(batch_size=8192, columns=["text"]):
            enc = tok.encode_batch(batch.column(0).to_pylist(), add_special_tokens=False)
            n += len(enc)
            t += sum(len(e.ids) for e in enc)
        RESULT["posts"] = n
        RESULT["tokens"] = t
    """,
}

RUNNER = """
import json, resource, sys, threading, time
from pathlib import Path


class RayWorkerMemory:
    # peak resident memory (VmHWM) of the largest Ray worker process, sampled from /proc
    def __enter__(self):
        self.peak_mb, self.stop = 0.0, threading.Event()
        self.thread = threading.Thread(target=self.poll, daemon=True)
        self.thread.start()
        return self

    def poll(self):
        while not self.stop.wait(0.25):
            for proc in Path("/proc").iterdir():
                try:
                    if proc.name.isdigit() and (proc / "cmdline").read_bytes().startswith(b"ray::"):
                        for line in (proc / "status").read_text().splitlines():
                            if line.startswith("VmHWM:"):
                                self.peak_mb = max(self.peak_mb, int(line.split()[1]) / 1024)
                except OSError:
                    pass

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

OUT = Path(sys.argv[1]); WORKERS = int(sys.argv[2]); USERS = int(sys.argv[3])
RESULT = {}
t0 = time.perf_counter()
%s
RESULT["seconds"] = time.perf_counter() - t0
_self, _children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
RESULT["cpu_s"] = _self.ru_utime + _self.ru_stime + _children.ru_utime + _children.ru_stime
RESULT["rss_main_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
RESULT["rss_worker_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print("RESULT " + json.dumps(RESULT))
"""


def run_stage(stage: str, out: Path, workers: int, users: int, code_root: Path = ROOT) -> dict:
    code = RUNNER % textwrap.dedent(STAGES[stage])
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(code_root))
    proc = subprocess.run([sys.executable, "-c", code, str(out), str(workers), str(users)], cwd=code_root,
                          capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"stage {stage} failed:\n{proc.stderr[-3000:]}")
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))
    r = json.loads(line[len("RESULT "):])
    r["posts_per_s"] = r["posts"] / r["seconds"]
    return r


def machine() -> str:
    import pyarrow
    import tokenizers

    from murmur.train.metrics import cpu_model_name

    return (f"{cpu_model_name()}, {os.cpu_count()} cores (load average {LOAD_AT_START:.1f} at the start), "
            f"Python {platform.python_version()}, "
            f"tokenizers {tokenizers.__version__}, pyarrow {pyarrow.__version__}, {time.strftime('%Y-%m-%d')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000", help="comma-separated target post counts")
    ap.add_argument("--out", default="/tmp/murmur-bench")
    ap.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"), help="markdown file to update")
    ap.add_argument("--before", help="git revision to compare this tree with (local stages only)")
    args = ap.parse_args()
    if args.before:
        compare_with(args.before, [int(s) for s in args.sizes.split(",")], Path(args.out), Path(args.write))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        out = Path(args.out) / f"p{size}"
        users = max(100, int(size / POSTS_PER_USER))
        gen = run_stage("generate", out, 1, users)
        print(f"[{size:,}] generate: {gen['posts']:,} posts, {gen['posts_per_s']:,.0f} posts/s", flush=True)
        for workers in (1, 2):
            res = {}
            for stage in ("ingest", "clean", "tokenizer", "tokenize"):
                if stage == "tokenizer" and workers == 2:
                    res[stage] = rows_by(rows, size, 1)["tokenizer"]  # tokenizer training has no worker knob
                    continue
                res[stage] = run_stage(stage, out, workers, users)
                print(f"[{size:,} posts, {workers} workers] {stage}: {res[stage]['posts_per_s']:,.0f} posts/s, "
                      f"peak RSS {res[stage]['rss_main_mb']:,.0f} MB (+ worker {res[stage]['rss_worker_mb']:,.0f} MB)",
                      flush=True)
            rows.append({"size": gen["posts"], "target": size, "workers": workers, **res})
        for stage in RAY_STAGES:
            ray_row = run_stage(f"{stage}-ray", out, 2, users)
            rows_by(rows, size, 2)[f"{stage}-ray"] = ray_row
            print(f"[{size:,}] {stage} on Ray (2 workers): {ray_row['posts_per_s']:,.0f} posts/s "
                  f"(Ray start {ray_row['ray_start_s']:.1f}s), largest Ray worker {ray_row['rss_ray_worker_mb']:,.0f} MB, "
                  f"same output as local: {ray_row['same_as_local']}", flush=True)
        plain = run_stage("plain-encode_batch", out, 1, users)
        rows_by(rows, size, 1)["plain"] = plain
        print(f"[{size:,}] plain encode_batch: {plain['posts_per_s']:,.0f} posts/s", flush=True)
    write_markdown(rows, Path(args.write))


def rows_by(rows: list[dict], target: int, workers: int) -> dict:
    return next(r for r in rows if r["target"] == target and r["workers"] == workers)


def pipeline_rate(r: dict) -> float:
    """Posts/s of the whole pipeline: posts in / total seconds of the four stages."""
    return r["ingest"]["posts"] / sum(r[s]["seconds"] for s in ("ingest", "clean", "tokenizer", "tokenize"))


def write_markdown(rows: list[dict], path: Path) -> None:
    lines = ["## Data pipeline", "", f"Machine: {machine()}.", "",
             "`python benchmarks/data_pipeline.py` — posts/s per stage (each stage's own input: ingest and clean see "
             "every raw post, tokenizer training and tokenize see the kept posts) and peak resident memory (main "
             "process; largest worker in brackets). Whole pipeline = raw posts in / summed seconds of the four "
             "stages.", "",
             "| posts | kept | workers | ingest | clean (+near-dedup) | tokenizer train | tokenize | whole pipeline | "
             "peak RSS per stage (MB) |",
             "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in rows:
        rss = " / ".join(f"{r[s]['rss_main_mb']:,.0f} ({r[s]['rss_worker_mb']:,.0f})"
                         for s in ("ingest", "clean", "tokenizer", "tokenize"))
        lines.append(f"| {r['size']:,} | {r['clean']['kept']:,} | {r['workers']} | " + " | ".join(
            f"{r[s]['posts_per_s']:,.0f}" for s in ("ingest", "clean", "tokenizer", "tokenize"))
            + f" | {pipeline_rate(r):,.0f} | {rss} |")
    ray_rows = [r for r in rows if "clean-ray" in r]
    if ray_rows:
        lines += ["", "Each stage on a Ray instance beside the local engine, on the same 2 cores (Ray's own start-up, a "
                      "one-off per cluster, is shown apart and not counted in the rate). Whole pipeline with Ray = the "
                      "three Ray stages plus tokenizer training (one Rust process, no Ray engine):", "",
                  "| posts | stage | local, 1 worker | local, 2 workers | Ray, 2 workers | Ray / local 2 | Ray start (s) | "
                  "peak RSS: local main (worker) / largest Ray worker (MB) | same output |",
                  "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for r in ray_rows:
            one = rows_by(rows, r["target"], 1)
            for stage in RAY_STAGES:
                ray, loc = r[f"{stage}-ray"], r[stage]
                lines.append(f"| {r['size']:,} | {stage} | {one[stage]['posts_per_s']:,.0f} | {loc['posts_per_s']:,.0f} | "
                             f"{ray['posts_per_s']:,.0f} | {ray['posts_per_s'] / loc['posts_per_s']:.2f} | "
                             f"{ray['ray_start_s']:.1f} | {loc['rss_main_mb']:,.0f} ({loc['rss_worker_mb']:,.0f})"
                             f" / {ray['rss_ray_worker_mb']:,.0f} | {'yes' if ray['same_as_local'] else 'NO'} |")
            whole_ray = r["ingest"]["posts"] / sum(r[s]["seconds"] for s in
                                                   ("ingest-ray", "clean-ray", "tokenizer", "tokenize-ray"))
            lines.append(f"| {r['size']:,} | whole pipeline | {pipeline_rate(one):,.0f} | {pipeline_rate(r):,.0f} | "
                         f"{whole_ray:,.0f} | {whole_ray / pipeline_rate(r):.2f} | | | |")
    lines += ["", "Tokenize beside a plain `tokenizers` `encode_batch` loop over the same Parquet (1 process):", "",
              "| posts | murmur tokenize (posts/s) | plain encode_batch (posts/s) | murmur / plain |",
              "| ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "plain" in r:
            m, p = r["tokenize"]["posts_per_s"], r["plain"]["posts_per_s"]
            lines.append(f"| {r['size']:,} | {m:,.0f} | {p:,.0f} | {m / p:.2f} |")
    write_section("data_pipeline", "\n".join(lines), path)


LOCAL_STAGES = ("ingest", "clean", "tokenizer", "tokenize")


def compare_with(rev: str, sizes: list[int], root: Path, path: Path) -> None:
    """The local stages with the code of ``rev`` and of this tree, stage by stage in the same run."""
    import shutil

    base = root / "code-before"
    shutil.rmtree(base, ignore_errors=True)
    base.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "murmur", "configs"], cwd=ROOT, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive.stdout, check=True)
    commit = subprocess.run(["git", "rev-parse", "--short", rev], cwd=ROOT, check=True, capture_output=True,
                            text=True).stdout.strip()
    results = []
    for size in sizes:
        out = root / f"p{size}"
        users = max(100, int(size / POSTS_PER_USER))
        gen = run_stage("generate", out, 1, users)
        dirs = {}
        for side in ("before", "after"):
            dirs[side] = out / side
            dirs[side].mkdir(parents=True, exist_ok=True)
            if not (dirs[side] / "world").exists():
                (dirs[side] / "world").symlink_to(out / "world")
        for workers in (1, 2):
            row: dict = {"size": gen["posts"], "workers": workers}
            for stage in LOCAL_STAGES:
                if stage == "tokenizer" and workers == 2:
                    row[stage] = next(r for r in results if r["size"] == gen["posts"] and r["workers"] == 1)[stage]
                    continue
                row[stage] = {side: run_stage(stage, dirs[side], workers, users,
                                              base if side == "before" else ROOT) for side in ("before", "after")}
                b, a = row[stage]["before"], row[stage]["after"]
                print(f"[{gen['posts']:,} posts, {workers} workers] {stage}: {b['posts_per_s']:,.0f} -> "
                      f"{a['posts_per_s']:,.0f} posts/s, CPU {1e6 * b['cpu_s'] / b['posts']:.1f} -> "
                      f"{1e6 * a['cpu_s'] / a['posts']:.1f} us/post", flush=True)
            row["same"] = same_outputs(dirs["before"], dirs["after"])
            row["load_end"] = os.getloadavg()[0]
            if workers == 1:
                row["bytes_per_token"] = {side: held_out_bytes_per_token(dirs[side]) for side in ("before", "after")}
            results.append(row)
    write_comparison(results, commit, path)


def held_out_bytes_per_token(side: Path) -> dict:
    """The side's tokenizer on held-out posts of its cleaned corpus: bytes per token, vocabulary, posts trained on."""
    from murmur.tokenizer import eval_tokenizer, load_tokenizer

    tok = load_tokenizer(side / "tokenizer")
    r = eval_tokenizer(side / "tokenizer", side / "clean.parquet")
    return {"bytes_per_token": r["overall"]["bytes_per_token"], "vocab": tok.vocab_size,
            "posts": tok.meta.get("training", {}).get("posts")}


def same_outputs(before: Path, after: Path) -> str:
    """Whether both sides wrote the same posts, cleaned posts and shards, byte for byte ("yes"), or what
    differs. Shards are compared only when both tokenizers are the same file (a tokenizer trained on
    another sample gives other tokens)."""
    for name in ("posts.parquet", "clean.parquet"):
        if (before / name).read_bytes() != (after / name).read_bytes():
            return f"NO ({name})"
    if (before / "tokenizer" / "tokenizer.json").read_bytes() != (after / "tokenizer" / "tokenizer.json").read_bytes():
        return "posts and cleaned posts yes; tokenizers differ (so do the shards)"
    def manifest(side: Path) -> dict:  # less the paths it names, which differ by side
        m = json.loads((side / "shards" / "manifest.json").read_text())
        return {k: v for k, v in m.items() if k not in ("tokenizer", "source")}

    names = sorted(p.name for p in (before / "shards").iterdir() if p.name != "manifest.json")
    same = names == sorted(p.name for p in (after / "shards").iterdir() if p.name != "manifest.json") and all(
        (before / "shards" / n).read_bytes() == (after / "shards" / n).read_bytes() for n in names) \
        and manifest(before) == manifest(after)
    return "yes" if same else "NO (shards)"


def write_comparison(results: list[dict], commit: str, path: Path) -> None:
    def whole(r: dict, side: str, key: str) -> float:
        secs = sum(r[s][side][key] for s in LOCAL_STAGES)
        return r["ingest"][side]["posts"] / secs

    lines = ["## Data pipeline: this code against an earlier revision", "", f"Machine: {machine()}.", "",
             f"`python benchmarks/data_pipeline.py --before {commit}` — each local stage run with the code of "
             f"{commit} (before) and of this tree (after), one right after the other. posts/s: wall clock; "
             "CPU: user + system seconds of the stage's processes per post (steadier than wall time when other "
             "jobs share the cores). Whole pipeline = raw posts in / summed seconds of the four stages. "
             "Same output: the ingested posts, the cleaned posts and (when both tokenizers are the same file) the "
             "shards are the same bytes on both sides.", "",
             "| posts | workers | stage | before (posts/s) | after (posts/s) | after / before | CPU before (µs/post) "
             "| CPU after (µs/post) | before / after CPU |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in results:
        for stage in LOCAL_STAGES:
            b, a = r[stage]["before"], r[stage]["after"]
            cb, ca = 1e6 * b["cpu_s"] / b["posts"], 1e6 * a["cpu_s"] / a["posts"]
            lines.append(f"| {r['size']:,} | {r['workers']} | {stage} | {b['posts_per_s']:,.0f} | "
                         f"{a['posts_per_s']:,.0f} | {a['posts_per_s'] / b['posts_per_s']:.2f} | {cb:.1f} | {ca:.1f} | "
                         f"{cb / ca:.2f} |")
        wb, wa = whole(r, "before", "seconds"), whole(r, "after", "seconds")
        cb, ca = (1e6 / whole(r, side, "cpu_s") for side in ("before", "after"))
        lines.append(f"| {r['size']:,} | {r['workers']} | **whole pipeline** | {wb:,.0f} | {wa:,.0f} | {wa / wb:.2f} | "
                     f"{cb:.1f} | {ca:.1f} | {cb / ca:.2f} |")
    lines += [""] + [f"Same output before and after ({r['size']:,} posts, {r['workers']} workers): {r['same']}. "
                     f"Load average at the end: {r['load_end']:.1f}." for r in results]
    for r in results:
        if "bytes_per_token" in r:
            b, a = r["bytes_per_token"]["before"], r["bytes_per_token"]["after"]
            lines.append(f"Tokenizer on held-out posts ({r['size']:,} posts): before {b['bytes_per_token']:.4f} bytes/token "
                         f"({b['vocab']:,} tokens, trained on {b['posts']:,} posts), after {a['bytes_per_token']:.4f} "
                         f"({a['vocab']:,} tokens, {a['posts']:,} posts): "
                         f"{100 * (a['bytes_per_token'] / b['bytes_per_token'] - 1):+.2f}%.")
    write_section("data_pipeline_before_after", "\n".join(lines), path)


if __name__ == "__main__":
    main()
