"""`pylstm task` and `pylstm gradflow`: the long-range memory benchmarks cell against cell, and the vanishing-gradient
picture of RNN, GRU and LSTM."""

from __future__ import annotations

import os
import time

import numpy as np

from .common import CELLS, _plot


def gradflow(args):
    """‖∂L/∂x_t‖ against the distance from step t to the loss at the last step, for each cell type."""
    import pylstm

    rng = np.random.default_rng(args.seed)
    T, N, I, H = args.length, args.batch, args.hidden, args.hidden
    x = rng.standard_normal((T, N, I))  # float64, so that gradients far below float32's range still show
    # PyTorch's initialisation, and the usual remedy for the LSTM and GRU: a gate bias that opens the additive path
    # (forget gate f ≈ 0.95, or update gate z ≈ 0.95), so that ∂c_t/∂c_{t-1} = f stays near 1.
    runs = [("RNN", pylstm.RNN, None), ("GRU", pylstm.GRU, None), ("LSTM", pylstm.LSTM, None),
            ("GRU, update-gate bias +3", pylstm.GRU, slice(H, 2 * H)),
            ("LSTM, forget-gate bias +3", pylstm.LSTM, slice(H, 2 * H))]
    series, table = {}, {}
    for label, cls, gate in runs:
        m = cls(I, H, seed=args.seed, dtype="float64")
        if gate is not None:
            with m.edit_parameters() as params:
                params["bias_hh_l0"][gate] += 3.0
        out, _ = m(x)
        dy = np.zeros_like(out)
        dy[-1] = 1.0 / N  # the loss reads the last step only
        dx, _ = m.backward(dy)
        norms = np.linalg.norm(dx.reshape(T, -1), axis=1)[::-1]  # index = distance from the loss
        series[label] = (np.arange(T), np.maximum(norms, 1e-300))
        table[label] = norms
    print(f"|dL/dx_t| by distance from the loss (T={T}, N={N}, H={H}, random input and weights, seed {args.seed})")
    names = [r[0] for r in runs]
    print(f"{'distance':>8}  " + "  ".join(f"{n:>{max(10, len(n))}}" for n in names))
    for d in sorted({0, 1, 2, 5, 10, 20, 50, 100, 200, T - 1}):
        if d < T:
            print(f"{d:8d}  " + "  ".join(f"{table[n][d]:>{max(10, len(n))}.2e}" for n in names))
    os.makedirs(args.out, exist_ok=True)
    _plot(os.path.join(args.out, "gradflow.png"), series, "distance from the loss (steps)", "|dL/dx_t|",
          "Gradient reaching each input step", logy=True)
    return 0


def task(args):
    """Trains each chosen cell on the adding problem or the copy task and prints what it reached."""
    from pylstm import tasks

    cells = CELLS if args.cell == "all" else (args.cell,)
    length = args.length or tasks.DEFAULTS["length"][args.task]
    base_loss, base_score = tasks.no_memory_score(args.task)
    if args.task == "adding":
        print(f"the adding problem: {length} steps of (value, mark); the output at the last step must be the sum of "
              f"the two marked values, up to {length - 1} steps back. Solved: |error| < {tasks.ADDING_TOLERANCE}. "
              f"Always answering 1 (no memory) scores MSE {base_loss:.3f} and solves {100 * base_score:.1f} %")
    else:
        print(f"the copy task: {args.copies} symbols of {tasks.DEFAULTS['symbols']}, {length} blanks ending in a "
              f"delimiter, then the model repeats the symbols (only these outputs are scored). Guessing (no memory) "
              f"scores {100 * base_score:.1f} % at cross-entropy {base_loss:.3f}")
    print(f"{args.steps} Adam steps (lr {args.lr}, clip {args.clip}) on fresh batches of {args.batch}, hidden "
          f"{args.hidden}, gate bias {args.gate_bias:+g} on the LSTM's forget and the GRU's update gate; scored on "
          f"{tasks.DEFAULTS['eval_batch']} held-out sequences")
    from pylstm.checkpoint import Checkpoint, CheckpointError
    from pylstm.training import Interrupts, Loop

    ck_path = os.path.join(args.out, f"task-{args.task}.npz")
    # What a resumed run must share with the one that wrote the checkpoint (--lr, --clip and --steps may change).
    config = dict(task=args.task, cells=",".join(cells), length=length, hidden=args.hidden, batch=args.batch,
                  copies=args.copies, gate_bias=float(args.gate_bias), seed=args.seed)
    series, results = {}, {}
    # Per cell: the held-out curve so far, the time spent, the running loss; the cells before the current one are
    # finished.
    progress = {cell: {"steps": [], "loss": [], "score": [], "secs": 0.0} for cell in cells}
    first_cell, ema, resumed = 0, None, None
    if args.resume:
        try:
            resumed = Checkpoint.load(ck_path, {}, None, config=config, kind="pylstm task", resume=True,
                                      allow_empty=True)
        except CheckpointError as e:
            raise SystemExit(f"pylstm task --resume: {e}") from None
        first_cell = int(resumed.extra["cell_index"])
        for cell in cells:
            for key in ("steps", "loss", "score"):
                progress[cell][key] = resumed.history[f"{cell}/{key}"].tolist()
            progress[cell]["secs"] = float(resumed.extra[f"{cell}/secs"])
        print(f"resuming from {ck_path}: {cells[first_cell]} at step {resumed.step}")
    saved_step = 0
    with Interrupts() as stop:
        for i, cell in enumerate(cells):
            p = progress[cell]
            if i < first_cell:  # finished before the interruption
                results[cell] = (p["loss"][-1], p["score"][-1], p["secs"])
                series[cell.upper()] = (p["steps"], p["loss"])
                continue
            try:
                run = tasks.Task(args.task, cell, length, hidden=args.hidden, batch=args.batch, lr=args.lr,
                                 clip=args.clip, seed=args.seed, copies=args.copies, gate_bias=args.gate_bias)
            except ValueError as e:
                raise SystemExit(f"pylstm task: --{e}") from None
            modules = {"rnn": run.rnn, "head": run.head}
            generators = {"data": run.rng, "dropout": run.rnn._dropout_rng}
            start = 1
            if resumed is not None and i == first_cell and resumed.step > 0:  # step 0: the cell had not begun
                try:
                    ck = Checkpoint.load(ck_path, modules, run.opt, generators=generators, config=config,
                                         kind="pylstm task")
                except CheckpointError as e:
                    raise SystemExit(f"pylstm task --resume: {e}") from None
                run.opt.lr = args.lr
                start, saved_step = ck.step + 1, ck.step
                ema = float(ck.extra["ema"]) if np.isfinite(ck.extra["ema"]) else None
            else:
                ema = None

            def save(step):
                Checkpoint(modules, run.opt, step=step, generators=generators, config=config, kind="pylstm task",
                           history={f"{c}/{k}": progress[c][k] for c in cells for k in ("steps", "loss", "score")},
                           extra={"cell_index": i, "ema": np.nan if ema is None else ema,
                                  **{f"{c}/secs": progress[c]["secs"] for c in cells}}).save(ck_path)

            loop = Loop(stop, start=start, total=args.steps, desc=f"{args.task} {cell}", checkpoint=ck_path,
                        every=args.checkpoint_every, save=save, argv=args.argv, saved_step=saved_step,
                        where=lambda step: f"{cell} step {step}")
            t0 = time.perf_counter() - p["secs"]
            for step in loop:
                loss, norm = run.gradients()
                if loop.diverged(step, loss, norm, lr=run.opt.lr, clip=args.clip, prefix=f"{cell}: "):
                    return 1
                run.opt.step()
                ema = loss if ema is None else 0.95 * ema + 0.05 * loss
                loop.update(loss=f"{ema:.4f}")
                if step % args.eval_every == 0 or step == args.steps:
                    p["steps"].append(step)
                    for key, value in zip(("loss", "score"), run.evaluate()):
                        p[key].append(value)
                p["secs"] = time.perf_counter() - t0
                code = loop.save_if_due(step)
                if code is not None:
                    return code
            loop.close()
            results[cell] = (p["loss"][-1], p["score"][-1], p["secs"])
            series[cell.upper()] = (p["steps"], p["loss"])
            saved_step = 0
            if i + 1 < len(cells):  # the next cell starts from scratch: a resume from here begins it
                Checkpoint({}, None, step=0, config=config, kind="pylstm task",
                           history={f"{c}/{k}": progress[c][k] for c in cells for k in ("steps", "loss", "score")},
                           extra={"cell_index": i + 1, "ema": np.nan,
                                  **{f"{c}/secs": progress[c]["secs"] for c in cells}}).save(ck_path)
    if args.task == "adding":
        print(f"{'cell':5} {'MSE':>9} {'solved':>7} {'MSE vs no memory':>17} {'time':>7}")
        for cell, (mse, solved, secs) in results.items():
            print(f"{cell:5} {mse:9.4f} {100 * solved:6.1f}% {base_loss / mse:16.1f}x {secs:6.1f}s")
    else:
        print(f"{'cell':5} {'loss':>9} {'accuracy':>9} {'chance':>7} {'time':>7}")
        for cell, (ce, acc, secs) in results.items():
            print(f"{cell:5} {ce:9.4f} {100 * acc:8.1f}% {100 * base_score:6.1f}% {secs:6.1f}s")
    os.makedirs(args.out, exist_ok=True)
    series["no memory"] = ([1, args.steps], [base_loss, base_loss])
    _plot(os.path.join(args.out, f"task-{args.task}.png"), series, "training step",
          "held-out MSE" if args.task == "adding" else "held-out cross-entropy (nats)",
          f"adding problem, length {length}" if args.task == "adding" else f"copy task, delay {length}",
          logy=args.task == "adding", baselines=("no memory",))
    return 0

