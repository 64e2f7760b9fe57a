"""Prints the ratio table of a pytest-benchmark JSON file from benchmarks/test_bench_rnn.py, with GFLOP/s.

    python benchmarks/table.py bench.json

FLOPs are counted as 2·T·N·(I+H)·G·H for a forward and three times that for training. The sgemm rate is the one
measured in the same run (test_bench_rnn.py's test_sgemm: 2048³ float32 through the same OpenBLAS pylstm uses, on as
many threads), so GFLOP/s can be read against it; a file without it gets the rate measured here, and says so.
"""

import json
import sys

ORDER = ["latency", "speech", "small", "tall", "medium", "wide", "large"]


def main(path):
    data = json.load(open(path))
    rows = {}
    varlen, stream = [], []
    sgemm = None
    for b in data["benchmarks"]:
        e = b["extra_info"]
        if e.get("sgemm"):
            sgemm = (2 * e["sgemm"] ** 3 / b["stats"]["median"] / 1e9, e["sgemm"], e["threads"])
            continue
        if e.get("stream"):
            stream.append((e, b["stats"]["median"] / e["steps"] * 1e6))
            continue
        if "lengths" in e:
            varlen.append((e, b["stats"]["median"] * 1e3))
            continue
        rows.setdefault((e.get("cell", "lstm"), e["case"], e["mode"]), {})[e["impl"]] = (b["stats"]["median"] * 1e3, e)
    print(f"machine: {data['machine_info'].get('cpu', {}).get('brand_raw', '?')}, "
          f"{data['machine_info'].get('cpu', {}).get('count', '?')} cpus; {data['datetime'][:10]}")
    if stream:
        _stream_table(stream)
    if not rows:
        _varlen_table(varlen)
        return
    first = next(iter(rows.values()))["pylstm"][1]
    print(f"pylstm isa: {first.get('isa', '?')}; its OpenBLAS: {first.get('blas', '?')}")
    if sgemm:
        peak = sgemm[0]
        print(f"sgemm {sgemm[1]}^3 (pylstm's OpenBLAS, {sgemm[2]} threads, in the same run): {peak:.0f} GFLOP/s\n")
    else:
        from timing import sgemm_gflops

        import pylstm

        peak = sgemm_gflops(threads=pylstm.get_num_threads())
        print(f"sgemm 2048^3 (pylstm's OpenBLAS, {pylstm.get_num_threads()} threads; not in the file, measured now): "
              f"{peak:.0f} GFLOP/s\n")
    print("| cell | case (T, N, I, H) | pass | pylstm ms | numpy ms | torch ms | ORT ms | vs numpy | vs torch | vs ORT "
          "| pylstm GFLOP/s | % of sgemm | float64 ms | float64 / float32 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (cell, case, mode), r in sorted(rows.items(), key=lambda kv: (kv[0][0], ORDER.index(kv[0][1]), kv[0][2])):
        ms, e = r["pylstm"]
        flops = 2 * e["T"] * e["N"] * (e["I"] + e["H"]) * e["G"] * e["H"] * (3 if mode == "train" else 1)
        peers = [r[k][0] if k in r else None for k in ("numpy", "torch", "ort")]
        times = " | ".join("—" if p is None else f"{p:.2f}" for p in peers)
        ratios = " | ".join("—" if p is None else f"{p / ms:.2f}x" for p in peers)
        gf = flops / ms / 1e6
        f64 = f"{r['pylstm64'][0]:.2f} | {r['pylstm64'][0] / ms:.2f}x" if "pylstm64" in r else "— | —"
        print(f"| {cell} | {case} ({e['T']}, {e['N']}, {e['I']}, {e['H']}) | {mode} | {ms:.2f} | {times} | {ratios} | "
              f"{gf:.0f} | {100 * gf / peak:.0f} | {f64} |")
    _ptorch_table(rows)
    _varlen_table(varlen)


def _ptorch_table(rows):
    """pylstm.torch's modules against torch.nn's in the same torch code (same run)."""
    both = [(key, r) for key, r in rows.items() if "ptorch" in r and "torch" in r]
    if not both:
        return
    print("\n| cell | case | pass | torch.nn ms | pylstm.torch ms | pylstm.torch vs torch "
          "| pylstm (NumPy API) vs torch |")
    print("|---|---|---|---|---|---|---|")
    for (cell, case, mode), r in sorted(both, key=lambda kv: (kv[0][0], ORDER.index(kv[0][1]), kv[0][2])):
        t, p = r["torch"][0], r["ptorch"][0]
        print(f"| {cell} | {case} | {mode} | {t:.2f} | {p:.2f} | {t / p:.2f}x | {t / r['pylstm'][0]:.2f}x |")


def _varlen_table(varlen):
    if not varlen:
        return
    print("\n| cell | pass | lengths | pylstm ms |")
    print("|---|---|---|---|")
    for e, ms in sorted(varlen, key=lambda r: (r[0]["cell"], r[0]["mode"], r[0]["lengths"])):
        what = "all T" if e["lengths"] == "full" else f"mixed, mean {e['mean_length']:.1f} of {e['T']}"
        print(f"| {e['cell']} | {e['mode']} | {what} | {ms:.2f} |")


def _stream_table(stream):
    e0 = stream[0][0]
    print(f"streaming: {e0['layers']}-layer LSTM, I = H = {e0['H']}, N = {e0['N']}, float32, {e0['threads']} threads, "
          f"pylstm isa {e0.get('isa', '?')}, median µs per step\n")
    times = {e["impl"]: us for e, us in stream}
    best_peer = min((times[k] for k in ("torch", "ort") if k in times), default=None)
    print("| implementation | µs per step | vs best peer |")
    print("|---|---|---|")
    for impl, us in times.items():
        vs = "—" if best_peer is None or impl in ("torch", "ort") else f"{best_peer / us:.2f}x"
        print(f"| {impl} | {us:.1f} | {vs} |")
    print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bench.json")
