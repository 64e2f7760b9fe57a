"""`pylstm forecast`: an LSTM (or GRU) on a real time series, scored on a held-out tail against the naive,
seasonal-naive and autoregressive baselines from the same rolling origins (pylstm.forecasting); the series is one
that ships with statsmodels, or any CSV file (pylstm.data)."""

from __future__ import annotations

import csv
import io
import os
import time
import zlib

import numpy as np

from .common import (
    _positive,
    _pyplot,
    _save,
    positive,
    quantize_label,
    quantize_option,
    quantize_refusal,
    seed_and_out,
    training_options,
)


def register(command):
    """Adds `pylstm forecast` and its options to the CLI's parser (`command` makes the subparser)."""
    from pylstm.data import BUILTIN

    f = command("forecast", "an LSTM on a real time series, scored against naive, seasonal-naive and AR forecasts",
                "Trains an LSTM (or GRU) to forecast the next --horizon steps of a series from the last --window "
                "steps, on the series without its held-out tail (the scale too is fitted without it). The tail is "
                "cut into consecutive blocks of --horizon steps, each forecast from the true history before it, so "
                "every held-out step is forecast once, at most --horizon steps ahead. The same origins give the "
                "baselines: naive (the origin's value), seasonal naive (the value one season earlier) and a linear "
                "autoregression fitted by least squares. Prints MASE (scaled by the in-sample seasonal-naive error, "
                "Hyndman & Koehler 2006) and sMAPE for each; writes OUT/forecast-NAME.csv (one row per held-out "
                "step), OUT/forecast-NAME.png and the checkpoint OUT/forecast-NAME.npz (--resume continues it; "
                "Ctrl-C or SIGTERM saves and exits with 130 or 143). The default series ships with statsmodels: "
                "pip install \"pylstm[data]\".")
    f.add_argument("--series", choices=tuple(BUILTIN), help="a real series shipped with statsmodels (default: co2): "
                   + "; ".join(f"{k}: {v[1]}" for k, v in BUILTIN.items()))
    f.add_argument("--data", metavar="FILE.csv", help="your own series instead: a CSV file with a header row, the "
                   "time in the first column (written back as read)")
    f.add_argument("--column", help="the column of --data to forecast (default: the second)")
    f.add_argument("--season", type=_count, help="steps per season (1: none); inferred when the times are monthly "
                   "(12), quarterly (4), weekly (52) or daily (7) dates, required otherwise")
    f.add_argument("--horizon", type=_count, help="steps forecast from each origin (default: the season, at least 6)")
    f.add_argument("--window", type=_count, help="steps the model reads before each origin (default: 2 x horizon)")
    f.add_argument("--test", type=_count, help="held-out steps at the end (default: the larger of 2 x horizon and "
                   "10 %% of the series)")
    f.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="recurrent cell")
    positive(f, "--hidden", int, 64, "hidden units per layer")
    positive(f, "--layers", int, 1, "recurrent layers")
    positive(f, "--batch", int, 64, "training windows per step")
    training_options(f, steps=1000, steps_help="Adam steps", lr=3e-3, clip=1.0, checkpoint_every=250,
                     checkpoint="OUT/forecast-NAME.npz")
    quantize_option(f)
    seed_and_out(f)


_count = _positive(int)


def _fail(message):
    return SystemExit(f"pylstm forecast: error: {message}")


def load(args):
    """(name, description, Series) of the chosen series; every problem is a one-line SystemExit."""
    from pylstm.data import BUILTIN, SeriesError, builtin_series, read_series

    if args.data is None:
        if args.column is not None:
            raise _fail("--column needs --data (the built-in series have one column)")
        name = args.series or "co2"
        try:
            return name, BUILTIN[name][1], builtin_series(name)
        except ImportError as e:
            raise _fail(str(e)) from None
    if args.series is not None:
        raise _fail("give --series or --data, not both")
    try:
        series = read_series(args.data, args.column)
    except SeriesError as e:
        raise _fail(str(e)) from None
    name = os.path.splitext(os.path.basename(args.data))[0] or "data"
    return name, f"column {series.name!r} of {args.data}", series


def plan(args, series, where):
    """(season, horizon, window, test) from the options and the series, checked against its length."""
    from pylstm.forecasting import ar_order, default_test_size, mase_scale

    season = args.season or series.season
    if season is None:
        raise _fail(f"{where}: the times are not monthly, quarterly, weekly or daily dates, so the season cannot "
                    "be inferred: give --season (1 for none)")
    n = len(series.values)
    horizon = args.horizon or max(season, 6)
    window = args.window or 2 * horizon
    if window < 2:
        raise _fail("--window must be at least 2")
    test = args.test or default_test_size(n, horizon)
    if test >= n:
        raise _fail(f"{where}: --test {test} leaves nothing to train on ({n} steps)")
    # Training windows need window + horizon + 1 steps; the AR baseline (one season of lags) and MASE's scale need
    # more than 2 x its order.
    windows, order = window + horizon + 1, ar_order(season)
    need = max(windows, 2 * order + 1)
    if n - test < need:
        shorten = "--window, --horizon or --test" if windows >= 2 * order + 1 else f"--season ({season}) or --test"
        raise _fail(f"{where}: {n} steps are too few: {test} held out plus at least {need} to train on (window "
                    f"{window} + horizon {horizon} + 1, and more than 2 x {order}, the AR baseline's lags) are "
                    f"needed; shorten {shorten}")
    try:
        mase_scale(series.values[:n - test], season)
    except ValueError as e:
        raise _fail(f"{where}: {e}") from None
    return season, horizon, window, test


def command(args):
    """Loads the series, trains (or resumes), forecasts the held-out tail, prints the scores and writes the CSV,
    the picture and the checkpoint."""
    from pylstm import forecasting as F
    from pylstm.checkpoint import Checkpoint, save_text
    from pylstm.training import Interrupts, Loop, resume_from

    refusal = quantize_refusal(args, "forecast")
    if refusal:
        raise _fail(refusal.split(": ", 1)[1])
    name, description, series = load(args)
    season, horizon, window, test = plan(args, series, args.data or name)
    y = series.values
    n = len(y)
    train = y[:n - test]
    print(f"series {name}: {description}; {n} steps, season {season}")
    for note in series.notes:
        print(f"note: {note}")
    model = F.Forecaster(train, season=season, window=window, horizon=horizon, cell=args.cell, hidden=args.hidden,
                         layers=args.layers, lr=args.lr, clip=args.clip, batch=args.batch, seed=args.seed)
    blocks = F.origins(n, test, horizon)
    print(f"held out: the last {test} steps, never trained on (nor used for the scale); forecast in {len(blocks)} "
          f"block(s) of at most {horizon} steps, each from the true history before it. {args.cell.upper()} "
          f"({args.layers} x {args.hidden} units) reads {window} steps and writes the next {horizon}; "
          f"{len(model.train_origins)} training windows")
    ck_path = os.path.join(args.out, f"forecast-{name}.npz")
    config = dict(series=name, series_crc32=int(zlib.crc32(np.ascontiguousarray(y).tobytes())), n=n, season=season,
                  horizon=horizon, window=window, test=test, cell=args.cell, hidden=args.hidden, layers=args.layers,
                  batch=args.batch, seed=args.seed)
    modules, generators = {"rnn": model.rnn, "head": model.head}, {"data": model.rng}
    history = {"step": [], "loss": []}
    start, saved_step = 1, 0
    if args.resume:
        start, saved_step, history = resume_from(ck_path, modules, model.opt, generators=generators, config=config,
                                                 kind="pylstm forecast", lr=args.lr, history=history,
                                                 command="forecast")
    os.makedirs(args.out, exist_ok=True)

    def save(step):
        Checkpoint(modules, model.opt, step=step, generators=generators, history=history, config=config,
                   kind="pylstm forecast").save(ck_path)

    t0, ema = time.perf_counter(), None
    with Interrupts() as stop:
        loop = Loop(stop, start=start, total=args.steps, desc=f"forecast {name}", checkpoint=ck_path,
                    every=args.checkpoint_every, save=save, argv=args.argv, saved_step=saved_step)
        for step in loop:
            loss, norm = model.gradients()
            if loop.diverged(step, loss, norm, lr=model.opt.lr, clip=args.clip):
                return 1
            model.opt.step()
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            history["step"].append(step)
            history["loss"].append(loss)
            loop.update(loss=f"{ema:.4f}")
            code = loop.save_if_due(step)
            if code is not None:
                return code
        loop.close()
    secs = time.perf_counter() - t0
    forecasts = {"model": np.concatenate([model.forecast(y[:o], k) for o, k in blocks]),
                 **F.baselines(y, test, horizon, season)}
    truth = y[n - test:]
    scores = {k: (F.mase(truth, v, train, season), F.smape(truth, v)) for k, v in forecasts.items()}
    label = args.cell.upper()
    names = {"model": label, **F.baseline_labels(season)}
    print(f"held-out scores over {test} steps ({args.steps} steps of training, {secs:.1f} s this run)")
    print(f"{'':24} {'MASE':>7} {'sMAPE %':>8}")
    for k, (m, s) in scores.items():
        print(f"{names[k]:24} {m:7.3f} {s:8.2f}")
    for dtype in dict.fromkeys(args.quantize or []):
        from pylstm import quantize

        rnn = model.rnn
        model.rnn = quantize(rnn, dtype)
        try:
            low = np.concatenate([model.forecast(y[:o], k) for o, k in blocks])
        finally:
            model.rnn = rnn
        print(f"{dtype + ' ' + label:24} {F.mase(truth, low, train, season):7.3f} {F.smape(truth, low):8.2f}   "
              f"({quantize_label(dtype)})")
    ours, theirs = scores["model"][0], scores["seasonal_naive"][0]
    if ours < theirs:
        print(f"the {label}'s MASE is {100 * (1 - ours / theirs):.0f} % below seasonal naive's ({ours:.3f} against "
              f"{theirs:.3f})")
    else:
        print(f"the {label} does not beat seasonal naive: MASE {ours:.3f} against {theirs:.3f}")
    columns = {("forecast" if k == "model" else k): v for k, v in forecasts.items()}
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["time", "truth", *columns])
    for i in range(test):
        w.writerow([series.times[n - test + i], _num(truth[i]), *(_num(v[i]) for v in columns.values())])
    csv_path = os.path.join(args.out, f"forecast-{name}.csv")
    save_text(csv_path, out.getvalue())
    print(f"saved {csv_path}")
    print(f"saved {ck_path}")
    _picture(os.path.join(args.out, f"forecast-{name}.png"), name, series.times, y, blocks, forecasts, scores, names,
             history)
    return 0


def _num(v):
    return f"{float(v):.10g}"


def _picture(path, name, times, y, blocks, forecasts, scores, names, history):
    """The held-out tail (with some history before it): truth, forecast and baselines; and the training loss."""
    plt = _pyplot()
    if plt is None:
        return
    n, test, horizon = len(y), len(y) - blocks[0][0], blocks[0][1]
    before = min(n - test, max(test, 2 * horizon))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [3, 1]})
    t = np.arange(n - test - before, n)
    ax.plot(t, y[n - test - before:], color="k", lw=1.2, label="truth")
    tail = np.arange(n - test, n)
    styles = {"model": dict(color="C3", lw=1.6), "naive": dict(color="0.6", ls=":"),
              "seasonal_naive": dict(color="C0", ls="--", lw=1), "linear_ar": dict(color="C2", ls="-.", lw=1)}
    for k, v in forecasts.items():
        ax.plot(tail, v, label=f"{names[k]}: MASE {scores[k][0]:.2f}", **styles[k])
    starts = [o for o, _ in blocks]
    for o in starts:
        ax.axvline(o, color="0.85", lw=0.8, zorder=0)
    shown = starts[::max(1, len(starts) // 6)]
    ax.set_xticks(shown, [times[o] for o in shown], fontsize=8)
    ax.set_xlabel("the forecast origins (grey lines), as the series' first column spells them")
    ax.set_title(f"{name}: the held-out {test} steps")
    ax.legend(fontsize=8)
    bx.plot(history["step"], history["loss"], lw=0.8)
    bx.set_yscale("log")
    bx.set_xlabel("training step")
    bx.set_title("training loss (scaled MSE)")
    fig.tight_layout()
    _save(plt, fig, path)
