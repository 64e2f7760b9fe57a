"""int8 and bfloat16 LSTM inference beside float32, in one process: pylstm, torch's dynamic int8 LSTM and ONNX
Runtime's DynamicQuantizeLSTM (issue 26).

    python benchmarks/int8.py [--rounds 7] [--shapes 100,1,256 100,32,256 50,64,1024]

Each shape is (T, N, H) with I = H, one layer, as issue 26's table. Every contender runs the same float32 weights:
pylstm.LSTM(H, H, seed=0); torch.nn.LSTM loaded with them (then torch.ao.quantization.quantize_dynamic, int8, on a
module holding it); the model pylstm.onnx.export writes from them (then onnxruntime.quantization.quantize_dynamic,
QInt8 weights, which writes the com.microsoft DynamicQuantizeLSTM node). 2 threads each (pylstm's pool default on
this machine, torch.set_num_threads(2), ORT's intra-op threads 2); no other thread limit or environment variable.
Before each contender's timed calls the process idles SETTLE_S seconds (the previous contender's threads spin for a
while after their last call) and makes one untimed call. The median of --rounds calls is reported, and each int8
output's relative error ‖int8 − fp32‖ / ‖fp32‖ against its own library's float32 output on the same input.
pylstm's bfloat16 (pylstm.quantize(m, "bfloat16")) runs where the CPU has AVX512_BF16 and the level is avx512.
ORT's kernels cannot be capped to an ISA level; torch's can (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY), but fbgemm's
int8 kernels, which quantize_dynamic runs, choose from the CPU itself (no variable that caps them was found).
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import tempfile
import time
import warnings

import numpy as np
from timing import median_s
from user_loop import cpu_model

import pylstm

SETTLE_S = 0.5
THREADS = 2


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a, np.float64) - b) / np.linalg.norm(np.asarray(b, np.float64)))


def contenders(T, N, H):
    """{name: (call, output)} for every contender installed, on one input."""
    m = pylstm.LSTM(H, H, seed=0).eval()
    x = np.random.default_rng(0).standard_normal((T, N, H)).astype(np.float32)
    q = pylstm.quantize(m, "int8")
    runs = {"pylstm fp32": lambda: m(x)[0], "pylstm int8": lambda: q(x)[0]}
    if pylstm.config()["bf16"] != "none":
        b = pylstm.quantize(m, "bfloat16")
        runs["pylstm bf16"] = lambda: b(x)[0]
    try:
        import torch

        torch.set_num_threads(THREADS)
        tm = m.to_torch().eval()
        holder = torch.nn.Sequential(tm)
        tq = torch.ao.quantization.quantize_dynamic(holder, {torch.nn.LSTM}, dtype=torch.qint8)
        tx = torch.from_numpy(x)

        def torch_run(module):
            def run():
                with torch.inference_mode():
                    return module(tx)[0].numpy()
            return run
        runs["torch fp32"] = torch_run(tm)
        runs["torch int8"] = torch_run(tq)
    except ImportError:
        pass
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic

        import pylstm.onnx as po

        model = po.export(m)
        with tempfile.TemporaryDirectory() as d:
            src, dst = os.path.join(d, "fp32.onnx"), os.path.join(d, "int8.onnx")
            with open(src, "wb") as f:
                f.write(model.SerializeToString())
            quantize_dynamic(src, dst, weight_type=QuantType.QInt8)
            import onnx
            qmodel = onnx.load(dst)
        for name, mod in (("ORT fp32", model), ("ORT int8", qmodel)):
            sess = po.ort_session(mod, THREADS)
            runs[name] = (lambda s: lambda: s.run(None, {"input": x})[0])(sess)
    except ImportError:
        pass
    return runs


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--shapes", nargs="*", default=["100,1,256", "100,32,256", "50,64,1024"])
    args = p.parse_args(argv)
    # torch warns that its quantized tensors are deprecated (issue 26's point), ORT suggests pre-processing: noise here
    warnings.filterwarnings("ignore", category=UserWarning)
    logging.getLogger().setLevel(logging.ERROR)
    cfg = pylstm.config()
    print(f"{datetime.date.today()}  {cpu_model()}")
    print(f"pylstm isa {cfg['isa']}, int8 path {cfg['int8']}, bf16 path {cfg['bf16']}, {cfg['threads']} threads")
    try:
        import torch
        print(f"torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
              f"quantized engine {torch.backends.quantized.engine}")
    except ImportError:
        pass
    rows = []
    for shape in args.shapes:
        T, N, H = (int(v) for v in shape.split(","))
        runs = contenders(T, N, H)
        ms, out = {}, {}
        for name, run in runs.items():
            time.sleep(SETTLE_S)
            out[name] = run()  # the untimed first call
            ms[name] = 1e3 * median_s(run, args.rounds, warmup=0)
        rows.append(((T, N, H), ms, out))
    names = list(rows[0][1])
    print(f"\nmedian ms of {args.rounds} calls; err = ‖int8 − fp32‖ / ‖fp32‖ of the same library")
    print("| (T, N, H) | " + " | ".join(names) + " | pylstm int8 vs fp32 | vs torch int8 | vs ORT int8 | "
          "err pylstm | err torch | err ORT | bf16 vs fp32 | err bf16 |")
    print("|" + "---|" * (len(names) + 9))
    for shape, ms, out in rows:
        cells = [f"{ms[n]:.2f}" for n in names]
        ours = ms["pylstm int8"]

        def ratio(other):
            return f"{ms[other] / ours:.2f}x" if other in ms else "-"

        def err(lib):
            return f"{_rel(out[lib + ' int8'], out[lib + ' fp32']):.1e}" if lib + " int8" in out else "-"
        bf16 = (f"{ms['pylstm fp32'] / ms['pylstm bf16']:.2f}x | "
                f"{_rel(out['pylstm bf16'], out['pylstm fp32']):.1e}") if "pylstm bf16" in ms else "- | -"
        print(f"| {shape} | " + " | ".join(cells) + f" | {ratio('pylstm fp32')} | {ratio('torch int8')} | "
              f"{ratio('ORT int8')} | {err('pylstm')} | {err('torch')} | {err('ORT')} | {bf16} |")
    return rows


if __name__ == "__main__":
    main()
