"""`pylstm activations`: why a vanilla RNN's hidden state uses tanh and not sigmoid (or relu).

Three RNNs that differ only in their hidden activation (same seed, so the same initial weights; the same batches)
learn the same task with plain SGD: no momentum and no Adam, whose per-weight normalisation would hide the
zig-zag. Everything printed is measured in the run:
- the derivative's largest value on a fine grid (sigmoid's is 1/4, tanh's and relu's 1);
- the gradient that reaches step t from a loss at the last step, against the distance, at the initial weights;
- the training and held-out loss;
- the zig-zag: the share of steps in which every entry of a unit's W_hh gradient row (summed over the batch) has one
  sign, averaged over units, and the cosine between successive updates of W_hh. A unit's incoming gradient is
  δ_j · h_k summed over time; when every h_k is positive (sigmoid; relu's are non-negative) the entries of the row
  tend to share δ_j's sign, so all of a unit's weights move up together or down together.
"""

from __future__ import annotations

import os

import numpy as np

ACTIVATIONS = ("tanh", "sigmoid", "relu")


def derivative(name, a):
    """φ'(a) of the hidden activation, from its definition."""
    if name == "tanh":
        return 1 - np.tanh(a) ** 2
    if name == "sigmoid":
        s = 1 / (1 + np.exp(-a))
        return s * (1 - s)
    return (a > 0).astype(float)


def _same_sign_share(g):
    """The share of rows of g (a unit's incoming W_hh gradient) whose non-zero entries all have one sign."""
    pos, neg = (g > 0).any(axis=1), (g < 0).any(axis=1)
    return float(np.mean(pos ^ neg))


def compare(steps=4000, length=10, hidden=32, batch=64, lr=0.1, seed=0, distances=(0, 3, 6, 9)):
    """Trains one RNN per activation on the adding problem (`length` steps; the answer, at the last step, is the sum
    of two marked values) and returns what `pylstm activations` prints and draws, per activation."""
    import pylstm
    from pylstm import nn
    from pylstm.tasks import adding_problem

    data = np.random.default_rng([seed, 1])
    batches = [adding_problem(data, length, batch) for _ in range(steps)]
    x_eval, y_eval = adding_problem(np.random.default_rng([seed, 2]), length, 1000)
    grid = np.linspace(-6, 6, 12001)
    results = {}
    for name in ACTIVATIONS:
        layer_seed, head_seed = nn.seeds(seed, 2)  # the same weights for every activation
        layer = pylstm.RNN(2, hidden, nonlinearity=name, seed=layer_seed)
        head = nn.Linear(hidden, 1, seed=head_seed)
        # The gradient reaching each step from a loss at the last one (the head's output, averaged over the batch),
        # at the initial weights.
        x0, _ = batches[0]
        out, _ = layer(x0)
        dout = np.zeros_like(out)
        dout[-1] = head.state_dict()["weight"][0] / batch
        dx, _ = layer.backward(dout)
        reach = np.linalg.norm(dx.reshape(length, -1), axis=1)[::-1]  # index: distance from the loss
        layer.zero_grad()
        losses, shares, cosines, previous = [], [], [], None
        for xb, yb in batches:
            out, _ = layer(xb)
            pred = head(out[-1])[:, 0]
            err = pred - yb
            losses.append(float(np.mean(err ** 2)))
            dpred = (2 * err / batch)[:, None].astype(np.float32)
            dlast = head.backward(dpred)
            dout = np.zeros_like(out)
            dout[-1] = dlast
            layer.backward(dout, input_grad=False)
            g = layer.grads["weight_hh_l0"]
            shares.append(_same_sign_share(g))
            update = -lr * g.ravel().astype(np.float64)
            if previous is not None:
                cosines.append(float(update @ previous / (np.linalg.norm(update) * np.linalg.norm(previous) + 1e-30)))
            previous = update
            for module in (layer, head):  # plain SGD: p -= lr · g
                with module.edit_parameters() as params:
                    for k, p in params.items():
                        p -= lr * module.grads[k]
                module.zero_grad()
        layer.eval()
        out, _ = layer(x_eval)
        held_out = float(np.mean((head(out[-1])[:, 0] - y_eval) ** 2))
        d = derivative(name, grid)
        results[name] = dict(max_derivative=float(d.max()), argmax=float(grid[d.argmax()]), reach=reach,
                             reach_at={k: float(reach[k] / reach[0]) for k in distances if k < length},
                             losses=np.array(losses), held_out=held_out, same_sign=float(np.mean(shares)),
                             cosine=float(np.mean(cosines)))
    return results


def register(command):
    """Adds `pylstm activations` and its options to the CLI's parser (`command` makes the subparser)."""
    from .common import positive, seed_and_out

    a = command("activations", "why the RNN's hidden state uses tanh: tanh, sigmoid and relu trained side by side",
                "Trains three vanilla RNNs that differ only in their hidden activation (tanh, sigmoid, relu; same "
                "seed, weights and batches) on the adding problem with plain SGD, and prints, from the run: each "
                "derivative's largest value, the gradient that reaches earlier steps from a loss at the last one, the "
                "training and held-out loss, and the zig-zag (the share of steps in which a unit's W_hh gradient row "
                "has one sign, and the cosine between successive updates). Writes OUT/activations.png.")
    positive(a, "--steps", int, 4000, "SGD steps per activation")
    positive(a, "--length", int, 10, "sequence length of the adding problem")
    positive(a, "--hidden", int, 32, "hidden units")
    positive(a, "--batch", int, 64, "sequences per step")
    positive(a, "--lr", float, 0.1, "SGD learning rate (no momentum)")
    seed_and_out(a)


def command(args):
    """Runs the comparison, prints its table and writes the picture."""
    from pylstm.tasks import no_memory_score

    if args.length < 2:
        raise SystemExit("pylstm activations: error: --length must be at least 2 (the adding problem marks two steps)")
    distances = tuple(sorted({0, args.length // 3, 2 * args.length // 3, args.length - 1}))
    r = compare(args.steps, args.length, args.hidden, args.batch, args.lr, args.seed, distances)
    baseline, _ = no_memory_score("adding")
    print(f"vanilla RNN ({args.hidden} units) on the adding problem, {args.length} steps; {args.steps} plain SGD steps "
          f"(lr {args.lr}, batch {args.batch}), the same seed, weights and batches for each activation. Answering "
          f"the mean (no memory) scores MSE {baseline:.3f}.")
    last = max(1, args.steps // 10)
    head = "max phi'"
    print(f"\n{'':8} {head:>9} {'at a':>6}   gradient reaching d steps back (d = "
          f"{', '.join(map(str, distances[1:]))}), relative to d = 0   {'train MSE':>9} {'held-out':>9} "
          f"{'same-sign':>9} {'cos':>6}")
    for name, v in r.items():
        reach = "  ".join(f"{v['reach_at'][d]:9.1e}" for d in distances[1:])
        print(f"{name:8} {v['max_derivative']:9.3f} {v['argmax']:6.2f}   {reach:<58} "
              f"{v['losses'][-last:].mean():9.4f} {v['held_out']:9.4f} {v['same_sign']:9.3f} {v['cosine']:6.3f}")
    print(f"\ntrain MSE: the mean over the last {last} steps. same-sign: the share of steps in which all of a unit's "
          "incoming W_hh gradients had one sign, averaged over units. cos: the mean cosine between successive W_hh "
          "updates.")
    os.makedirs(args.out, exist_ok=True)
    _picture(os.path.join(args.out, "activations.png"), r, args)
    return 0


def _picture(path, r, args):
    from .common import _pyplot, _save

    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(2, 2, figsize=(11, 7.5))
    a = np.linspace(-6, 6, 1201)
    for name, v in r.items():
        line, = ax[0, 0].plot(a, derivative(name, a), label=name)
        ax[0, 0].plot([v["argmax"]], [v["max_derivative"]], "o", color=line.get_color())
        ax[0, 0].annotate(f"max {v['max_derivative']:.2f}", (v["argmax"], v["max_derivative"]),
                          textcoords="offset points", xytext=(6, -12 if name == "sigmoid" else 4), fontsize=8)
        reach = v["reach"]
        ax[0, 1].semilogy(np.arange(len(reach)), np.maximum(reach, 1e-300), label=name)
        steps = np.arange(1, len(v["losses"]) + 1)
        k = max(1, len(steps) // 100)  # a running mean, so that the curves are readable
        smooth = np.convolve(v["losses"], np.ones(k) / k, mode="valid")
        ax[1, 0].plot(steps[k - 1:], smooth, label=name)
    names = list(r)
    x = np.arange(len(names))
    ax[1, 1].bar(x - 0.2, [r[n]["same_sign"] for n in names], 0.4, label="same-sign share of W_hh rows")
    ax[1, 1].bar(x + 0.2, [r[n]["cosine"] for n in names], 0.4, label="cosine of successive updates")
    ax[1, 1].set_xticks(x, names)
    ax[1, 1].axhline(0, color="0.5", linewidth=0.8)
    from pylstm.tasks import no_memory_score

    ax[1, 0].axhline(no_memory_score("adding")[0], color="0.4", linestyle="--", label="no memory")
    titles = [("the derivative φ'(a)", "a", "φ'(a)"), ("gradient reaching earlier steps (initial weights)",
                                                         "steps back from the loss", "|dL/dx_t|"),
              (f"training loss (plain SGD, lr {args.lr})", "step", "MSE"), ("the zig-zag (plain SGD)", "", "")]
    for axis, (title, xl, yl) in zip(ax.ravel(), titles):
        axis.set_title(title)
        axis.set_xlabel(xl)
        axis.set_ylabel(yl)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    fig.tight_layout()
    _save(plt, fig, path)
    return True
