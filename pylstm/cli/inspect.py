"""`pylstm inspect`: what a trained character-level LSTM's (or GRU's, RNN's) units do on a text, as one self-contained
web page and a PNG of the same view (after Karpathy, Johnson and Fei-Fei, "Visualizing and Understanding Recurrent
Networks", 2015): the text coloured by one unit's state or gate, the units most correlated with simple features of
the text, and how often each unit's gates are saturated."""

from __future__ import annotations

import base64
import json
import os
import warnings
from importlib import resources

import numpy as np

# Per cell: its signals (the order of the signal axis in the page's data), its gates, and the state whose units the
# page opens on. The gates are in [0, 1]; the other signals in [-1, 1] (the cell state c shown as tanh c).
CELLS = {"LSTM": (("c", "h", "i", "f", "o"), ("i", "f", "o"), "c"),
         "GRU": (("h", "r", "z", "n"), ("r", "z"), "h"),
         "RNN": (("h",), (), "h")}
SIGNAL_NAMES = {"c": "cell state, tanh(c)", "h": "hidden state h", "i": "input gate i", "f": "forget gate f",
                "o": "output gate o", "r": "reset gate r", "z": "update gate z", "n": "candidate n"}
GATE_SIGNALS = {"i", "f", "o", "r", "z"}
FEATURES = ("inside double quotes", "inside brackets", "position in the line", "just after a newline")
MAX_PAGE_BYTES = 64e6  # the activations a page may carry
SATURATED = (0.1, 0.9)  # a gate is left-saturated below the first, right-saturated above the second (as in 2015)


def text_features(text):
    """{feature: (T,) float64}, each describing the text up to and including character t: the state the model is in
    after reading it. Quotes are double quotes (apostrophes make single quotes ambiguous); brackets are (), [] and
    {}, with unmatched closers ignored; the position in the line counts from 0."""
    quote, depth, col = False, 0, 0
    out = np.zeros((len(FEATURES), len(text)))
    for t, ch in enumerate(text):
        if ch == '"':
            quote = not quote
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(depth - 1, 0)
        out[:, t] = (quote, depth > 0, col, ch == "\n")
        col = 0 if ch == "\n" else col + 1
    return dict(zip(FEATURES, out))


def activations(rnn, ids, vocab_size):
    """(L, S, H, T) float32: for each layer the cell's signals (CELLS order: LSTM c, h, i, f, o; GRU h, r, z, n; RNN
    h) after each character, from the NumPy reference run over the one-hot ids (batch 1, from zero state)."""
    from pylstm import reference

    cell = type(rnn).__name__
    params = rnn.state_dict()
    T, H = len(ids), rnn.hidden_size
    x = np.eye(vocab_size, dtype=rnn.dtype)[ids][:, None, :]
    out = np.empty((rnn.num_layers, len(CELLS[cell][0]), H, T), np.float32)
    for k in range(rnn.num_layers):
        w = [params.get(f"{name}_l{k}") for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
        # The training caches hold what backward differentiates from (layouts shared with the compiled kernels, see
        # reference.lstm_cache_size): the LSTM's activated gates and c, the GRU's r, z, n (and its recurrent n-term).
        if cell == "LSTM":
            x, _, _, cache = reference.lstm_forward(x, None, None, *w, training=True)
            gates, c, _ = reference._cache_views(cache, T, 1, H)
            gates = gates[:, 0]
            parts = [c[:, 0], x[:, 0], gates[:, :H], gates[:, H:2 * H], gates[:, 3 * H:]]
        elif cell == "GRU":
            x, _, cache = reference.gru_forward(x, None, *w, linear_before_reset=rnn.linear_before_reset,
                                                training=True)
            rows = cache.reshape(T, 4 * H)
            parts = [x[:, 0], rows[:, :H], rows[:, H:2 * H], rows[:, 2 * H:3 * H]]
        else:
            x, _, _ = reference.rnn_forward(x, None, *w, nonlinearity=rnn.nonlinearity, training=False)
            parts = [x[:, 0]]
        for j, part in enumerate(parts):
            out[k, j] = part.T
    return out


def correlations(acts, features):
    """(L, S, H, F): the Pearson correlation of every unit's signal with every feature over the text; 0 where either
    is constant (a text without quotes, a gate that never moves)."""
    a = acts - acts.mean(axis=-1, keepdims=True)
    f = np.stack([features[name] for name in FEATURES])
    f = f - f.mean(axis=1, keepdims=True)
    num = np.einsum("lsht,ft->lshf", a.astype(np.float64), f)
    den = np.sqrt((a.astype(np.float64) ** 2).sum(-1))[..., None] * np.sqrt((f ** 2).sum(1))
    return np.divide(num, den, out=np.zeros_like(num), where=den > 1e-12)


def saturation(acts, cell="LSTM"):
    """(L, gates, H, 2): for each gate of the cell (LSTM i, f, o; GRU r, z; RNN none) of every unit, the fraction of
    steps below 0.1 and above 0.9."""
    signals, gates, _ = CELLS[cell]
    g = acts[:, [signals.index(s) for s in gates]]
    return np.stack([(g < SATURATED[0]).mean(-1), (g > SATURATED[1]).mean(-1)], axis=-1)


def top_units(corr, cell="LSTM", n=8):
    """{feature: [(layer, signal, unit, r)]}: the n units of the cell's states (LSTM c and h; GRU, RNN h) with the
    largest |r| per feature."""
    all_signals = CELLS[cell][0]
    signals = [s for s in ("c", "h") if s in all_signals]
    out = {}
    for j, name in enumerate(FEATURES):
        rows = [(k, s, u, float(corr[k, all_signals.index(s), u, j])) for k in range(corr.shape[0]) for s in signals
                for u in range(corr.shape[2])]
        out[name] = sorted((r for r in rows if r[3] != 0), key=lambda r: -abs(r[3]))[:n]
    return out


def quantize(acts, cell="LSTM"):
    """uint8 of the displayed values: the gates in [0, 1] as v·255, the rest (tanh c, h, n) in [-1, 1] as
    (v + 1)·127.5."""
    q = np.empty(acts.shape, np.uint8)
    for j, s in enumerate(CELLS[cell][0]):
        v = np.tanh(acts[:, j]) if s == "c" else acts[:, j]
        q[:, j] = np.rint(np.clip(v, 0, 1) * 255) if s in GATE_SIGNALS else np.rint((np.clip(v, -1, 1) + 1) * 127.5)
    return q


def page(text, acts, corr, sat, view, source, checkpoint, cell="LSTM"):
    """The HTML: the template shipped with the package with the data in one JSON object."""
    L, S, H, T = acts.shape
    signals, gates, _ = CELLS[cell]
    data = dict(cell=cell, text=text, layers=L, units=H, steps=T, signals=list(signals), gates=list(gates),
                gateSignals=sorted(GATE_SIGNALS), signalNames=SIGNAL_NAMES, features=list(FEATURES),
                saturated=list(SATURATED), initial=view, source=source, checkpoint=checkpoint,
                values=base64.b64encode(quantize(acts, cell).tobytes()).decode("ascii"),
                corr=np.round(corr, 3).tolist(), saturation=np.round(sat, 4).tolist(),
                top={name: [dict(layer=k, signal=s, unit=u, r=round(r, 3)) for k, s, u, r in rows]
                     for name, rows in top_units(corr, cell).items()})
    # Inside an inline script the text must not open or close tags or comments ("</script>", "<!--"): every <, >
    # and & goes in as a JSON escape, which JSON.parse and the script read back as the character.
    blob = (json.dumps(data, ensure_ascii=False).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))
    template = resources.files("pylstm.cli").joinpath("inspect.html").read_text(encoding="utf-8")
    marker = "/*PYLSTM-DATA*/null"
    if marker not in template:  # a broken install, not a user error
        raise RuntimeError("pylstm/cli/inspect.html has no data marker")
    return template.replace(marker, blob)


def figure(text, acts, corr, sat, view, cell="LSTM", max_chars=1200, width=100):
    """The same view for people without a browser: the start of the text coloured by the chosen unit, its
    correlations, and the three gates' saturation plots. Returns a matplotlib Figure, or None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    width = min(width, max(len(line) for line in text[:max_chars].split("\n")) + 1)  # no wider than the text
    k, s, u = view["layer"], view["signal"], view["unit"]
    signals, gates, _ = CELLS[cell]
    si = signals.index(s)
    values = acts[k, si, u]
    shown = np.tanh(values) if s == "c" else (2 * values - 1 if s in GATE_SIGNALS else values)
    # Lay the text out as the page does: a new row at each newline and every `width` characters.
    cells, row, col = [], 0, 0
    for t, ch in enumerate(text[:max_chars]):
        if col == width:
            row, col = row + 1, 0
        cells.append((row, col, ch, shown[t]))
        if ch == "\n":
            row, col = row + 1, 0
        else:
            col += 1
    rows = row + 1
    grid = np.full((rows, width), np.nan)
    for r, c_, _, v in cells:
        grid[r, c_] = v
    below = 4.2 if gates else 0.3  # inches under the text: the saturation plots
    height = 0.19 * rows + below + 0.4
    fig = plt.figure(figsize=(max(9.0, 0.13 * width), height))
    top = fig.add_axes([0.02, (below - 0.3 if gates else below) / height, 0.96, 0.19 * rows / height])
    top.imshow(grid, cmap="coolwarm", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    for r, c_, ch, _ in cells:
        if ch not in " \n\t":
            top.text(c_, r, ch, ha="center", va="center", fontsize=7, family="monospace")
        elif ch == "\n":
            top.text(c_, r, "\u21b5", ha="center", va="center", fontsize=6, color="0.4")
    top.set_xticks([])
    top.set_yticks([])
    rs = ", ".join(f"{name} {corr[k, si, u, j]:+.2f}" for j, name in enumerate(FEATURES))
    top.set_title(f"layer {k}, {SIGNAL_NAMES[s]}, unit {u} (blue low, red high)\nr with: {rs}", fontsize=9)
    colours = plt.get_cmap("tab10")
    for j, gate in enumerate(gates):
        ax = fig.add_axes([0.06 + 0.32 * j, 0.4 / height, 0.25, 2.9 / height])
        for layer in range(sat.shape[0]):
            ax.scatter(sat[layer, j, :, 0], sat[layer, j, :, 1], s=8, alpha=0.7, color=colours(layer),
                       label=f"layer {layer}")
        ax.plot([0, 1], [1, 0], color="0.7", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"fraction of steps {gate} < {SATURATED[0]}", fontsize=8)
        ax.set_ylabel(f"fraction of steps {gate} > {SATURATED[1]}", fontsize=8)
        ax.set_title(f"{SIGNAL_NAMES[gate]}: saturation per unit", fontsize=9)
        ax.tick_params(labelsize=7)
        if sat.shape[0] > 1:
            ax.legend(fontsize=7)
    return fig


def _default_view(corr, cell="LSTM", layer=None):
    """The unit whose state (the LSTM's c; the GRU's and RNN's h) is most correlated (in |r|) with any of the
    features, within `layer` if given."""
    signals, _, state = CELLS[cell]
    si = signals.index(state)
    c = np.abs(corr[:, si]) if layer is None else np.abs(corr[layer:layer + 1, si])
    k, u, _ = np.unravel_index(np.argmax(c), c.shape)
    return dict(layer=int(k) if layer is None else layer, signal=state, unit=int(u))


def command(args):
    from pylstm.checkpoint import save_figure, save_text

    from .charlm import load_model, stdlib_docstrings

    rnn, _, vocab = load_model(args.checkpoint, "inspect")
    cell = type(rnn).__name__
    signals, gates, _ = CELLS[cell]
    if args.signal is not None and args.signal not in signals:
        raise SystemExit(f"pylstm inspect: --signal {args.signal} is not one of the {cell}'s: {', '.join(signals)}")
    if args.text is not None:
        if not os.path.isfile(args.text):
            raise SystemExit(f"pylstm inspect: --text {args.text!r} is not a readable file")
        with open(args.text, encoding="utf-8", errors="replace") as f:
            text = f.read()
        source = os.path.basename(args.text)
    else:
        corpus = stdlib_docstrings()
        text = corpus[int(len(corpus) * 0.95):]
        source = "the held-out end of the Python standard library's docstrings"
    index = {ch: i for i, ch in enumerate(vocab)}
    kept, unknown = [], set()
    for ch in text:  # the first --chars characters the model knows; the others are left out
        if len(kept) == args.chars:
            break
        (kept.append if ch in index else unknown.add)(ch)
    text, unknown = "".join(kept), sorted(unknown)
    if unknown:
        print(f"note: the checkpoint's vocabulary has no {', '.join(map(repr, unknown[:10]))}"
              f"{' ...' if len(unknown) > 10 else ''}; those characters are left out of the text")
    if len(text) < 2:
        raise SystemExit(f"pylstm inspect: the text has {len(text)} characters the model knows; it needs at least 2")
    per_char = len(signals) * rnn.num_layers * rnn.hidden_size * 4 / 3  # bytes of base64 per character of text
    if len(text) * per_char > MAX_PAGE_BYTES:
        size = len(text) * per_char / 1e6
        raise SystemExit(f"pylstm inspect: a page of {len(text):,} characters would hold {size:.0f} MB of "
                         f"activations, more than a browser handles well; use --chars "
                         f"{int(MAX_PAGE_BYTES // per_char):,} or fewer")
    acts = activations(rnn, np.array([index[ch] for ch in text]), len(vocab))
    features = text_features(text)
    corr = correlations(acts, features)
    sat = saturation(acts, cell)
    if args.layer is not None and args.layer >= rnn.num_layers:
        raise SystemExit(f"pylstm inspect: --layer {args.layer} is out of range: the model has "
                         f"{rnn.num_layers} layer(s), 0..{rnn.num_layers - 1}")
    view = _default_view(corr, cell, args.layer)
    for key in ("signal", "unit"):
        if getattr(args, key) is not None:
            view[key] = getattr(args, key)
    if view["unit"] >= rnn.hidden_size:
        raise SystemExit(f"pylstm inspect: --unit {view['unit']} is out of range: the layers have "
                         f"{rnn.hidden_size} units, 0..{rnn.hidden_size - 1}")

    print(f"{len(text):,} characters of {source}; {cell} with {rnn.num_layers} layer(s) of {rnn.hidden_size} units")
    states = "cell state c or hidden state h" if cell == "LSTM" else "hidden state h"
    print(f"units most correlated with each feature ({states}; Pearson r over the text):")
    for name, rows in top_units(corr, cell, n=3).items():
        shown = ", ".join(f"layer {k} {s} unit {u}: {r:+.2f}" for k, s, u, r in rows) or "(constant in this text)"
        print(f"  {name:22} {shown}")
    if gates:
        print(f"gate saturation (fraction of units' steps below {SATURATED[0]} / above {SATURATED[1]}, mean over "
              "units):")
    for j, gate in enumerate(gates):
        print("  " + gate + ": " + "; ".join(f"layer {k} {sat[k, j, :, 0].mean():.2f} / {sat[k, j, :, 1].mean():.2f}"
                                              for k in range(sat.shape[0])))
    html_path = os.path.join(args.out, "inspect.html")
    save_text(html_path, page(text, acts, corr, sat, view, source, os.path.basename(args.checkpoint), cell))
    print(f"saved {html_path} (opens at layer {view['layer']}, signal {view['signal']}, unit {view['unit']})")
    fig = figure(text, acts, corr, sat, view, cell)
    if fig is None:
        print('matplotlib is not installed: pip install "pylstm[plot]" to get the PNG')
        return 0
    import matplotlib.pyplot as plt

    png_path = os.path.join(args.out, "inspect.png")
    try:
        with warnings.catch_warnings():  # a character the font lacks is drawn as a box; that needs no warning
            warnings.filterwarnings("ignore", message="Glyph .* missing from font")
            save_figure(png_path, fig, dpi=100)
    finally:
        plt.close(fig)
    print(f"saved {png_path}")
    return 0
