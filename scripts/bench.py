#!/usr/bin/env python3
"""Benchmark reentrancy-audit against its own parse-only pass.

    scripts/bench.py --generate 1000000 --out /tmp/corpus-1m   # synthetic corpus
    scripts/bench.py /tmp/corpus-1m                             # measure it
    scripts/bench.py /path/to/any/repo --runs 5                 # any real directory

For the same files in the same run it measures: the parse-only pass (read +
tree-sitter parse + one full tree walk), the full scan with all rules and
SARIF output (with and without the prefilter), at 1 and at 2 threads. It
reports wall and CPU time, MB/s, files/s, peak RSS, the ratio of each scan
to parse-only, the share of files the prefilter skips, and the time split.
Standard library only; deterministic corpus (seeded).
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BINARY = ROOT / "target" / "release" / "reentrancy-audit"

# --- synthetic corpus -------------------------------------------------------

ENTITIES = ["order", "invoice", "payment", "refund", "user", "account", "ticket", "booking",
            "subscription", "membership", "shipment", "coupon", "wallet", "transfer", "review"]


def camel(s):
    return s[0].upper() + s[1:]


def js_functions(rng, ts):
    """Realistic service code: safe code mostly, some hazards of every rule."""
    e = rng.choice(ENTITIES)
    E = camel(e)
    t = ": string" if ts else ""
    n = ": number" if ts else ""
    any_ = ": any" if ts else ""
    fns = [
        f"""
export async function create{E}(db{any_}, stripe{any_}, req{any_}) {{
  const existing = await db.query('SELECT id FROM {e}s WHERE external_id = $1', [req.body.externalId]);
  if (existing.rows.length > 0) {{
    return existing.rows[0];
  }}
  const charge = await stripe.paymentIntents.create({{ amount: req.body.amount, currency: 'usd' }});
  const row = await db.query('INSERT INTO {e}s (external_id, charge_id) VALUES ($1, $2) RETURNING id', [req.body.externalId, charge.id]);
  return row.rows[0];
}}
""",
        f"""
export async function upsert{E}(db{any_}, input{any_}) {{
  // Safe: the insert is the lock.
  const result = await db.query(
    'INSERT INTO {e}s (key, payload) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING RETURNING id',
    [input.key, JSON.stringify(input.payload)],
  );
  return result.rows[0] ?? null;
}}
""",
        f"""
export function format{E}Amount(amount{n}, currency{t}){': string' if ts else ''} {{
  const value = (amount / 100).toFixed(2);
  const symbol = currency === 'eur' ? '€' : '$';
  return `${{symbol}}${{value}}`;
}}
""",
        f"""
export async function charge{E}(stripe{any_}, {e}{any_}) {{
  const idempotencyKey = `{e}-${{{e}.id}}-${{Date.now()}}`;
  return stripe.charges.create({{ amount: {e}.total, currency: {e}.currency }}, {{ idempotencyKey }});
}}
""",
        f"""
export class {E}Worker {{
  private processing = new Set{'<string>' if ts else ''}();

  async handle(id{t}) {{
    if (this.processing.has(id)) return;
    this.processing.add(id);
    await this.process(id);
    this.processing.delete(id);
  }}

  async process(id{t}) {{
    const items = await this.repo.find({{ where: {{ {e}Id: id }} }});
    for (const item of items) {{
      item.total = item.quantity * item.price;
    }}
    return items.length;
  }}
}}
""",
        f"""
export async function with{E}Lock(redis{any_}, id{t}, work{any_}) {{
  const key = `lock:{e}:${{id}}`;
  const token = crypto.randomUUID();
  const ok = await redis.set(key, token, {{ NX: true, PX: 30000 }});
  if (!ok) throw new Error('busy');
  try {{
    return await work();
  }} finally {{
    await redis.eval(RELEASE_SCRIPT, {{ keys: [key], arguments: [token] }});
  }}
}}
""",
        f"""
export function validate{E}(input{any_}) {{
  const errors = [];
  if (!input.name || input.name.length > 120) errors.push('name');
  if (typeof input.amount !== 'number' || input.amount < 0) errors.push('amount');
  if (input.email && !/^[^@]+@[^@]+$/.test(input.email)) errors.push('email');
  return {{ ok: errors.length === 0, errors }};
}}
""",
        f"""
export async function list{E}s(db{any_}, page{n} = 1) {{
  const limit = 50;
  const offset = (page - 1) * limit;
  const rows = await db.query('SELECT * FROM {e}s ORDER BY created_at DESC LIMIT $1 OFFSET $2', [limit, offset]);
  return rows.rows.map((r{any_}) => ({{ id: r.id, createdAt: r.created_at }}));
}}
""",
    ]
    return fns


def py_functions(rng):
    e = rng.choice(ENTITIES)
    E = camel(e)
    return [
        f"""

def create_{e}(request, external_id):
    if {E}.objects.filter(external_id=external_id).exists():
        return {E}.objects.get(external_id=external_id)
    charge = stripe.PaymentIntent.create(amount=request.data["amount"], currency="usd")
    return {E}.objects.create(external_id=external_id, charge_id=charge.id)
""",
        f"""

def get_or_create_{e}(external_id, defaults):
    # Safe: atomic get_or_create on a unique column.
    obj, created = {E}.objects.get_or_create(external_id=external_id, defaults=defaults)
    return obj
""",
        f"""

def format_{e}_amount(amount, currency):
    value = amount / 100
    symbol = "€" if currency == "eur" else "$"
    return f"{{symbol}}{{value:.2f}}"
""",
        f"""

def refund_{e}({e}):
    key = f"{e}-{{{e}.id}}-{{uuid.uuid4()}}"
    return stripe.Refund.create(payment_intent={e}.payment_intent_id, idempotency_key=key)
""",
        f"""

class {E}Service:
    def __init__(self, redis):
        self.redis = redis
        self.lock = threading.Lock()

    def handle(self, {e}_id):
        self.lock.acquire()
        self.process({e}_id)
        self.lock.release()

    async def sync(self, {e}_id):
        async with self.session() as session:
            rows = await session.execute(select({E}).where({E}.id == {e}_id))
            return rows.scalars().all()
""",
        f"""

def validate_{e}(data):
    errors = []
    if not data.get("name") or len(data["name"]) > 120:
        errors.append("name")
    if not isinstance(data.get("amount"), int) or data["amount"] < 0:
        errors.append("amount")
    return {{"ok": not errors, "errors": errors}}
""",
        f"""

def list_{e}s(page=1, limit=50):
    offset = (page - 1) * limit
    qs = {E}.objects.order_by("-created_at")[offset:offset + limit]
    return [{{"id": o.id, "created_at": o.created_at.isoformat()}} for o in qs]
""",
    ]


PY_HEADER = "import threading\nimport uuid\n\nimport stripe\nfrom sqlalchemy import select\n\nfrom .models import *\n"
JS_HEADER = "import crypto from 'node:crypto';\nimport Stripe from 'stripe';\n\nconst RELEASE_SCRIPT = 'if redis.call(\"get\", KEYS[1]) == ARGV[1] then return redis.call(\"del\", KEYS[1]) end';\n"


def generate(target_lines, out, seed=7):
    rng = random.Random(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lines = 0
    index = 0
    while lines < target_lines:
        kind = rng.choices(["js", "ts", "py"], weights=[2, 5, 4])[0]
        parts = [PY_HEADER if kind == "py" else JS_HEADER]
        # Most files of a real backend are plain code with none of the
        # hazards' vocabulary: helpers only, in a third of the files.
        plain_only = rng.random() < 0.35
        for _ in range(rng.randint(6, 18)):
            fns = py_functions(rng) if kind == "py" else js_functions(rng, kind == "ts")
            if plain_only:
                fns = [f for f in fns if "format" in f or "validate" in f]
            parts.append(rng.choice(fns))
        text = "".join(parts)
        folder = out / f"pkg{index // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"mod{index:05d}.{kind}").write_text(text)
        lines += text.count("\n")
        index += 1
    print(f"generated {index} files, {lines} lines in {out}")


# --- measurement ------------------------------------------------------------

def run_once(args):
    """Runs the binary; returns (wall s, cpu s, peak RSS MB, stderr)."""
    started = time.perf_counter()
    proc = subprocess.Popen([str(BINARY)] + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):
        sys.exit(f"reentrancy-audit {' '.join(args)} failed ({code}):\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stderr


def timings(stderr):
    for line in stderr.splitlines():
        if line.startswith("timings: "):
            return json.loads(line[len("timings: "):])
    return {}


def measure(path, runs, modes):
    """Runs every mode once per round, `runs` rounds: the modes are
    interleaved so that a machine getting slower or faster mid-run skews no
    mode against another. Median wall/CPU, max RSS per mode."""
    samples = {name: [] for name, _, _ in modes}
    for _ in range(runs):
        for name, jobs, extra in modes:
            args = ["scan", str(path), "--jobs", str(jobs), "--format", "sarif", "--output", os.devnull,
                    "--fail-on", "never", "--no-progress", "--timings"] + extra
            samples[name].append(run_once(args))
    return {
        name: {
            "wall": statistics.median(s[0] for s in runs_),
            "cpu": statistics.median(s[1] for s in runs_),
            "rss": max(s[2] for s in runs_),
            "timings": timings(runs_[-1][3]),
        }
        for name, runs_ in samples.items()
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", help="directory to measure")
    p.add_argument("--generate", type=int, metavar="LINES", help="write a synthetic corpus of about LINES lines")
    p.add_argument("--out", default="/tmp/reentrancy-audit-corpus", help="where --generate writes")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--runs", type=int, default=3, help="runs per mode (median wall/CPU, max RSS)")
    args = p.parse_args()
    if args.generate:
        generate(args.generate, args.out, args.seed)
        if not args.path:
            return
    if not args.path:
        p.error("give a directory to measure (or --generate)")
    if not BINARY.exists():
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    # Warm the page cache so the first mode is not charged for disk reads.
    run_once(["scan", args.path, "--parse-only", "--format", "json", "--output", os.devnull, "--no-progress"])

    modes = [
        ("parse-only, 2 threads", 2, ["--parse-only"]),
        ("full scan, prefilter, 2 threads", 2, []),
        ("full scan, no prefilter, 2 threads", 2, ["--no-prefilter"]),
        ("parse-only, 1 thread", 1, ["--parse-only"]),
        ("full scan, prefilter, 1 thread", 1, []),
        ("full scan, no prefilter, 1 thread", 1, ["--no-prefilter"]),
    ]
    results = measure(args.path, args.runs, modes)
    t = results["full scan, no prefilter, 2 threads"]["timings"]
    files, size, lines = t.get("files", 0), t.get("bytes", 0), t.get("lines", 0)
    print(f"\n{args.path}: {files} files, {size / 1e6:.1f} MB, {lines} lines; median of {args.runs} runs\n")
    print("| mode | wall s | CPU s | MB/s | files/s | peak RSS MB | vs parse-only |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, jobs, _ in modes:
        r = results[name]
        base = results[f"parse-only, {jobs} thread{'s' if jobs > 1 else ''}"]["wall"]
        print(f"| {name} | {r['wall']:.2f} | {r['cpu']:.2f} | {size / 1e6 / r['wall']:.1f} | "
              f"{files / r['wall']:.0f} | {r['rss']:.0f} | {r['wall'] / base:.2f}x |")
    full = results["full scan, prefilter, 2 threads"]["timings"]
    skipped = full.get("files_skipped_by_prefilter", 0)
    tests = full.get("test_files_skipped", 0)
    print(f"\nprefilter: skips {skipped} of {files} files ({100 * skipped / max(files, 1):.0f} %): "
          f"{tests} test files (out of scope), {skipped - tests} without any trigger word")
    for label, one, two in [("parse-only", "parse-only, 1 thread", "parse-only, 2 threads"),
                            ("full scan", "full scan, prefilter, 1 thread", "full scan, prefilter, 2 threads"),
                            ("full scan, no prefilter", "full scan, no prefilter, 1 thread", "full scan, no prefilter, 2 threads")]:
        print(f"scaling 1 -> 2 threads, {label}: {results[one]['wall'] / results[two]['wall']:.2f}x")
    print("\ntime split (CPU ms summed over files), full scan without prefilter, 2 threads:")
    for key in ["read_ms", "prefilter_ms", "parse_ms", "walk_ms", "rules_ms", "report_ms"]:
        print(f"  {key[:-3]:<10} {t.get(key, 0):10.0f}")


if __name__ == "__main__":
    main()
