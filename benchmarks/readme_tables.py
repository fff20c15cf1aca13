#!/usr/bin/env python3
"""The README's benchmark tables from one tstream_bench JSON file.

    tstream_bench ... --benchmark_repetitions=7 --benchmark_report_aggregates_only=true \
        --benchmark_out=run.json --benchmark_out_format=json
    python3 benchmarks/readme_tables.py run.json > tables.md

Every cell is the median of the repetitions (or the single run); ratios are
taken between rows of the same run.
"""
import json
import sys

GEMV_SHAPES = ["512x512", "1024x1024", "2048x2048", "4096x4096", "11008x4096"]
GEMM_SHAPES = ["256x256x256", "512x512x512", "1024x1024x1024", "2048x2048x2048", "8x4096x4096",
               "32x4096x4096", "128x4096x4096", "512x4096x4096", "32x11008x4096"]
ATTN_SHAPES = ["h32_kv8_d128", "h32_kv32_d128"]
ATTN_LENGTHS = [512, 4096, 16384]
THREADS = [1, 2]


def load(path):
    rows = {}
    for b in json.load(open(path))["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        rows[b.get("run_name", b["name"])] = b
    return rows


def main(path):
    rows = load(path)
    get = lambda name, key: rows[name].get(key) if name in rows else None
    out = []
    p = out.append

    p("#### Limits (BM_peak_fma: FLOP/s, OP/s for int8)\n")
    p("| limit | 1 thread | 2 threads |\n|---|---|---|")
    for t in ["f32", "bf16", "i8"]:
        cells = [get(f"BM_peak_fma/{t}/threads:{n}", "FLOP/s") for n in THREADS]
        p(f"| peak {t} | " + " | ".join(f"{c / 1e9:.1f} G" if c else "-" for c in cells) + " |")

    p("\n#### Dispatch (ns per empty parallel call)\n")
    p("| impl | 1 thread | 2 threads |\n|---|---|---|")
    for impl in ["tstream", "openmp"]:
        cells = [get(f"BM_dispatch/{impl}/threads:{n}", "ns_per_call") for n in THREADS]
        p(f"| {impl} | " + " | ".join(f"{c:.0f}" if c else "-" for c in cells) + " |")

    def gemv_table(kind, wt, title):
        p(f"\n#### {title}\n")
        p("| shape | threads | tstream | tstream_fast | eigen | openblas | onednn | tstream / best peer | share in |")
        p("|---|---|---|---|---|---|---|---|---|")
        for shape in GEMV_SHAPES:
            for n in THREADS:
                name = lambda impl: f"{kind}/{impl}/{wt}/{shape}/threads:{n}"
                bw = {i: get(name(i), "bytes_per_second") for i in ["tstream", "tstream_fast", "eigen", "openblas", "onednn"]}
                cell = lambda i: f"{bw[i] / 1e9:.1f} ({get(name(i), 'frac_of_bw') or 0:.2f})" if bw[i] else "-"
                peers = [bw[i] for i in ["eigen", "openblas", "onednn"] if bw[i]]
                best = max(peers) if peers else None
                ts = bw["tstream"]
                fast = bw["tstream_fast"] or ts
                ratio = f"{ts / best:.2f}x / {fast / best:.2f}x" if best and ts else "-"
                label = (rows.get(name("tstream"), {}).get("label") or "").replace("share in ", "")
                p(f"| {shape} | {n} | " + " | ".join(cell(i) for i in bw) + f" | {ratio} | {label} |")

    gemv_table("BM_gemv", "f32", "GEMV f32, warm: GB/s of weights (frac_of_bw)")
    gemv_table("BM_gemv", "bf16", "GEMV bf16, warm: GB/s of weights (frac_of_bw)")
    gemv_table("BM_gemv", "i8", "GEMV int8, warm: GB/s of weights (frac_of_bw)")
    gemv_table("BM_gemv_cold", "f32",
               "GEMV f32, cold (weights rotated over copies that together exceed 2x L3): GB/s of weights (frac_of_bw)")

    p("\n#### Attention decode: f32 GB/s of K+V (frac_of_bw); bf16 and int8 tokens/s (x the f32 tokens/s, frac_of_bw)\n")
    p("| shape | L | threads | f32 tstream GB/s (frac) | eigen GB/s (frac) | tstream/eigen | bf16 exact tok/s (x f32) "
      "| bf16 fast | i8 exact | i8 fast |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    for shape in ATTN_SHAPES:
        for L in ATTN_LENGTHS:
            for n in THREADS:
                name = lambda impl, t: f"BM_attn_decode/{impl}/{t}/{shape}_L{L}/threads:{n}"
                f32 = name("tstream", "f32")
                if f32 not in rows or not get(f32, "tokens_per_second"):
                    continue
                eig = name("eigen", "f32")
                tok = get(f32, "tokens_per_second")
                cells = [f"{get(f32, 'bytes_per_second') / 1e9:.1f} ({get(f32, 'frac_of_bw') or 0:.2f})",
                         f"{get(eig, 'bytes_per_second') / 1e9:.1f} ({get(eig, 'frac_of_bw') or 0:.2f})" if eig in rows else "-",
                         f"{tok / get(eig, 'tokens_per_second'):.2f}x" if eig in rows else "-"]
                for impl, t in [("tstream", "bf16"), ("tstream_fast", "bf16"), ("tstream", "i8"), ("tstream_fast", "i8")]:
                    r = name(impl, t)
                    ok = r in rows and get(r, "tokens_per_second")
                    cells.append(f"{get(r, 'tokens_per_second'):.0f} ({get(r, 'tokens_per_second') / tok:.2f}x, "
                                 f"{get(r, 'frac_of_bw') or 0:.2f})" if ok else "-")
                p(f"| {shape} | {L} | {n} | " + " | ".join(cells) + " |")

    def gf(name):
        f = get(name, "FLOP/s")
        return f"{f / 1e9:.0f} ({get(name, 'frac_of_peak') or 0:.2f})" if f else "-"

    p("\n#### GEMM f32: GFLOP/s (frac_of_peak)\n")
    p("| M x N x K | threads | tstream | onednn | openblas | eigen | tstream / best peer |")
    p("|---|---|---|---|---|---|---|")
    for shape in GEMM_SHAPES:
        for n in THREADS:
            name = lambda impl: f"BM_gemm/{impl}/f32/{shape}/threads:{n}"
            peers = [get(name(i), "FLOP/s") for i in ["onednn", "openblas", "eigen"]]
            best = max([x for x in peers if x] or [0])
            ts = get(name("tstream"), "FLOP/s")
            ratio = f"{ts / best:.2f}x" if best and ts else "-"
            p(f"| {shape} | {n} | " + " | ".join(gf(name(i)) for i in ["tstream", "onednn", "openblas", "eigen"]) + f" | {ratio} |")

    for t, title in [("bf16", "GEMM bf16"), ("i8", "GEMM i8")]:
        p(f"\n#### {title}: GFLOP/s (frac_of_peak)\n")
        p("| M x N x K | threads | tstream | tstream_prepared | onednn | tstream / best peer | prepared / best peer "
          "| tstream / f32 tstream |")
        p("|---|---|---|---|---|---|---|---|")
        for shape in GEMM_SHAPES:
            for n in THREADS:
                name = lambda impl, ty=t: f"BM_gemm/{impl}/{ty}/{shape}/threads:{n}"
                peers = [get(name(i), "FLOP/s") for i in ["onednn", "openblas"]]
                best = max([x for x in peers if x] or [0])
                ts, tp, f32 = get(name("tstream"), "FLOP/s"), get(name("tstream_prepared"), "FLOP/s"), get(name("tstream", "f32"), "FLOP/s")
                r = lambda a, b: f"{a / b:.2f}x" if a and b else "-"
                p(f"| {shape} | {n} | {gf(name('tstream'))} | {gf(name('tstream_prepared'))} | {gf(name('onednn'))} | "
                  f"{r(ts, best)} | {r(tp, best)} | {r(ts, f32)} |")
    stream_sizes = sorted({int(r.split("_")[-1].split("/")[0]) for r in rows if r.startswith("BM_stream/")})
    if stream_sizes:
        p("\n#### VXM stream, bias + SiLU (y = silu(x + b)), one thread: GB/s of x, b and y (frac_of_bw)\n")
        p("| n | tstream | eigen | tstream / eigen |")
        p("|---|---|---|---|")
        for n in stream_sizes:
            name = lambda impl: f"BM_stream/{impl}/f32/bias_silu_{n}/threads:1"
            ts, e = get(name("tstream"), "bytes_per_second"), get(name("eigen"), "bytes_per_second")
            cell = lambda impl: (f"{get(name(impl), 'bytes_per_second') / 1e9:.1f} ({get(name(impl), 'frac_of_bw') or 0:.2f})"
                                 if get(name(impl), "bytes_per_second") else "-")
            p(f"| {n} | {cell('tstream')} | {cell('eigen')} | " + (f"{ts / e:.2f}x" if ts and e else "-") + " |")
    print("\n".join(out))


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: readme_tables.py run.json")
    main(sys.argv[1])
