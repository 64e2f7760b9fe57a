"""What the subcommands share: the line plots, the argument types and the help formatter (the training loop's
scaffolding is pylstm.training.Loop)."""

from __future__ import annotations

import argparse

CELLS = ("lstm", "gru", "rnn")


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None, after saying how to get pictures, when it is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print('matplotlib is not installed: pip install "pylstm[plot]" to get the pictures')
        return None
    return plt


def _save(plt, fig, path):
    """Writes the figure to path (atomically: pylstm.checkpoint.save_figure), closes it and says so."""
    from pylstm.checkpoint import save_figure

    try:
        save_figure(path, fig, dpi=100)
    finally:
        plt.close(fig)
    print(f"saved {path}")


def _plot(path, series, xlabel, ylabel, title, logy=False, baselines=()):
    """Saves a line plot, the series named in `baselines` dashed; returns False (and says how to get pictures) when
    matplotlib is missing."""
    plt = _pyplot()
    if plt is None:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, (x, y) in series.items():
        ax.plot(x, y, label=label, **({"linestyle": "--", "color": "0.4"} if label in baselines else {}))
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    _save(plt, fig, path)
    return True


def _non_negative_int(s):
    v = int(s)
    if v < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {s}")
    return v


def _positive(kind):
    def parse(s):
        v = kind(s)
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {s}")
        return v
    return parse


def _probability(s):
    v = float(s)
    if not 0 <= v < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {s}")
    return v


def positive(parser, flag, kind, default, text):
    """An option that takes a number > 0."""
    parser.add_argument(flag, type=_positive(kind), default=default, help=text)


def seed_and_out(parser, out=True):
    """--out (the output folder) unless `out` is False, and --seed."""
    if out:
        parser.add_argument("--out", default="pylstm-out", help="output folder")
    parser.add_argument("--seed", type=_non_negative_int, default=0, help="seed of every random draw")


def training_options(parser, *, steps, steps_help, lr, clip, checkpoint_every, checkpoint, resume_help=None):
    """What every training command takes: --steps, --lr, --clip (Adam with gradient-norm clipping),
    --checkpoint-every and --resume; `checkpoint` names the file, as OUT/NAME.npz."""
    positive(parser, "--steps", int, steps, steps_help)
    positive(parser, "--lr", float, lr, "Adam learning rate")
    positive(parser, "--clip", float, clip, "max gradient norm")
    positive(parser, "--checkpoint-every", int, checkpoint_every, f"steps between checkpoints ({checkpoint}, "
             "written atomically)")
    parser.add_argument("--resume", action="store_true",
                        help=resume_help or f"continue the run saved in {checkpoint} to --steps")


def quantize_option(parser):
    """--quantize DTYPE: after training, score the model again with its LSTM layers through pylstm.quantize."""
    parser.add_argument("--quantize", action="append", choices=("int8", "bfloat16"), metavar="DTYPE",
                        help="after training, also score the model with its LSTM layers through pylstm.quantize(..., "
                        "DTYPE), int8 or bfloat16 (inference only), beside float32; give it twice for both")


def quantize_refusal(args, command):
    """The message for --quantize with what pylstm.quantize cannot take here, before any work; None when fine."""
    dtypes = getattr(args, "quantize", None) or []
    if dtypes and args.cell != "lstm":
        return f"pylstm {command}: --quantize needs --cell lstm (pylstm.quantize takes the LSTM in this version)"
    if "bfloat16" in dtypes:
        import pylstm

        if pylstm.config()["bf16"] == "none":
            from pylstm.quantized import _bf16_missing

            return f"pylstm {command}: --quantize bfloat16 needs bfloat16 products, and {_bf16_missing()}"
    return None


def quantize_label(dtype):
    """Which products ran, for the line that reports a quantized score: "int8 (pylstm.quantize, avx512-vnni)"."""
    import pylstm

    return f"{dtype} (pylstm.quantize, {pylstm.config()['int8' if dtype == 'int8' else 'bf16']})"


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Shows "(default: ...)" after every option's help, except where there is no default value to show."""

    def _get_help_string(self, action):
        return action.help if action.default is None else super()._get_help_string(action)

