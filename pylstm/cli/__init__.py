"""The `pylstm` command: one parser over the subcommands, each family in its own module (charlm: train and sample;
tasks: task and gradflow; seq2seq; inspect; activations; forecast; bench: bench and selfcheck). `pylstm` alone runs
the self-check."""

from __future__ import annotations

import argparse
import difflib
import os
import sys

from .charlm import stdlib_docstrings  # noqa: F401  (examples/ddp_charlm.py reads the corpus through pylstm.cli)
from .common import (  # noqa: F401
    CELLS,
    _HelpWithDefaults,
    _non_negative_int,
    _plot,
    _positive,
    _probability,
    positive,
    quantize_option,
    seed_and_out,
    training_options,
)

COMMANDS = ("selfcheck", "train", "sample", "task", "seq2seq", "inspect", "gradflow", "activations", "forecast",
            "bench")


def build_parser():
    p = argparse.ArgumentParser(prog="pylstm", description="Recurrent networks on the CPU. Without a subcommand, "
                                "`pylstm` runs the self-check (see `pylstm selfcheck --help`).")
    sub = p.add_subparsers(dest="command", metavar="{" + ",".join(COMMANDS) + "}")

    def command(name, summary, description):
        return sub.add_parser(name, help=summary, description=description, formatter_class=_HelpWithDefaults)

    c = command("selfcheck", "check the compiled kernels against the NumPy reference, and time them",
                "Checks every output and gradient of a small LSTM layer (float64 and float32) of the compiled kernels "
                "against the NumPy reference, prints the errors and the configuration, times a larger layer with "
                "both, and exits 1 if a check fails. `pylstm` without a subcommand runs this.")
    positive(c, "--rounds", int, 5, "timing rounds per case")
    seed_and_out(c, out=False)
    t = command("train", "train a character-level language model",
                "Trains a character-level language model (one-hot input, a recurrent stack, a softmax output layer; "
                "Adam with gradient-norm clipping; truncated BPTT with the state carried between chunks; 5 % of "
                "the text held out). Without --data the text is the docstrings of the Python standard library's "
                "source files, gathered with ast (nothing is imported) and cached in ~/.cache/pylstm. Writes "
                "OUT/CELL.npz (every --checkpoint-every steps, atomically; it holds all that --resume needs) and "
                "OUT/CELL-loss.png. Ctrl-C or SIGTERM stops after the current step, saves, prints the command that "
                "resumes, and exits with 130 or 143. A NaN or infinite loss or gradient stops training and leaves "
                "the last good checkpoint as it was.")
    t.add_argument("--data", help="a UTF-8 text file to train on (default: the docstrings)")
    t.add_argument("--cell", choices=CELLS, default="lstm", help="recurrent cell")
    positive(t, "--hidden", int, 256, "hidden units per layer")
    positive(t, "--layers", int, 1, "recurrent layers")
    positive(t, "--seq-len", int, 64, "BPTT chunk length")
    positive(t, "--batch", int, 32, "parallel streams over the text")
    training_options(t, steps=2500, steps_help="training steps (one chunk of every stream each)", lr=3e-3, clip=1.0,
                     checkpoint_every=250, checkpoint="OUT/CELL.npz", resume_help="continue the run saved in "
                     "OUT/CELL.npz (after Ctrl-C, say) to --steps, bit for bit as if it had not stopped")
    positive(t, "--eval-every", int, 500, "steps between validation losses and samples")
    t.add_argument("--weight-drop", type=_probability, default=0.0, metavar="P",
                   help="weight-drop on the recurrent weights W_hh, DropConnect (Merity et al. 2017): each training "
                   "step runs on a mask of W_hh that keeps each weight with probability 1 - P")
    t.add_argument("--recurrent-dropout", type=_probability, default=0.0, metavar="P",
                   help="recurrent (variational) dropout (Gal & Ghahramani 2016): each training step draws one mask "
                   "per stream that keeps each unit of h with probability 1 - P where it enters the recurrent "
                   "product, the same at every time step")
    t.add_argument("--zoneout", type=_probability, default=0.0, metavar="Z",
                   help="zoneout (Krueger et al. 2016) of c and h: in training each unit keeps its previous state "
                   "with probability Z at each step; evaluation uses the expectation (lstm and gru)")
    t.add_argument("--layer-norm", action="store_true",
                   help="the layer-norm LSTM (Ba et al. 2016): each gate product and c normalised over its row, with "
                   "learned gains (lstm only)")
    quantize_option(t)
    seed_and_out(t)
    s = command("sample", "generate text from a `pylstm train` checkpoint",
                "Feeds the prompt to a `pylstm train` checkpoint and draws characters one at a time. Prompt "
                "characters outside the checkpoint's vocabulary are skipped, with a note.")
    s.add_argument("--checkpoint", default=os.path.join("pylstm-out", "lstm.npz"), help="a `pylstm train` .npz")
    s.add_argument("--prompt", default="The ", help="text to start from")
    positive(s, "--length", int, 300, "characters to generate")
    s.add_argument("--temperature", type=float, default=0.8, help="softmax temperature (> 0; lower is safer)")
    seed_and_out(s, out=False)
    from pylstm.tasks import DEFAULTS as TD

    k = command("task", "the adding problem and the copy task: long-range memory, cell against cell",
                "Trains each cell (or --cell) on a classic long-range memory benchmark of the LSTM literature and "
                "prints the held-out score it reached, against what a model without memory gets. adding: the sum "
                "of two marked values in a sequence (the form of Le et al. 2015 and Arjovsky et al. 2016, after "
                "Hochreiter & Schmidhuber 1997); copy: repeat symbols seen before a delay of --length blanks "
                "(Arjovsky et al. 2016). Every batch is fresh random data. Writes OUT/task-TASK.png.")
    k.add_argument("task", choices=("adding", "copy"), help="which benchmark")
    k.add_argument("--cell", choices=(*CELLS, "all"), default="all", help="recurrent cell")
    k.add_argument("--length", type=_positive(int), help=f"sequence length (adding, default "
                   f"{TD['length']['adding']}) or delay (copy, default {TD['length']['copy']})")
    training_options(k, steps=TD["steps"], steps_help="Adam steps per cell", lr=TD["lr"], clip=TD["clip"],
                     checkpoint_every=250, checkpoint="OUT/task-TASK.npz")
    positive(k, "--hidden", int, TD["hidden"], "hidden units")
    positive(k, "--batch", int, TD["batch"], "sequences per step")
    k.add_argument("--gate-bias", type=float, default=TD["gate_bias"],
                   help="added to the LSTM's forget-gate and the GRU's update-gate bias at the start, so that they "
                   "begin by remembering (0 is PyTorch's initialisation)")
    positive(k, "--copies", int, TD["copies"], "symbols to copy (copy task)")
    positive(k, "--eval-every", int, 100, "steps between held-out scores (the curve in the PNG)")
    seed_and_out(k)
    q = command("seq2seq", "an encoder-decoder that learns addition (or reversing, sorting) from examples",
                "Trains a sequence-to-sequence model: an encoder LSTM (or GRU) reads the question one character at a "
                "time, its final state starts a decoder that writes the answer (teacher forcing in training, greedy "
                "decoding through the decoder's stream to the end symbol in evaluation). The default task is "
                "Keras's addition example, '535+61' -> '596'. Reports exact-match and per-character accuracy on "
                "held-out questions that training never sees, against a baseline that ignores the question. Writes "
                "OUT/seq2seq-TASK.npz (every --checkpoint-every steps; --resume continues) and OUT/seq2seq-TASK.png. "
                "Ctrl-C or SIGTERM saves and exits with 130 or 143.")
    q.add_argument("--task", choices=("add", "reverse", "sort"), default="add", help="what to learn")
    positive(q, "--digits", int, 3, "most digits of each number (add) or letters of the string")
    q.add_argument("--reverse-input", action="store_true", help="read the question backwards (Sutskever et al. 2014)")
    q.add_argument("--cell", choices=("lstm", "gru"), default="lstm", help="encoder and decoder cell")
    q.add_argument("--attention", action="store_true", help="the decoder attends to every encoder output at each "
                   "step (Luong et al. 2015's global attention, dot scores)")
    positive(q, "--hidden", int, 128, "hidden units of encoder and decoder")
    positive(q, "--batch", int, 128, "questions per step")
    training_options(q, steps=6000, steps_help="training steps", lr=3e-3, clip=1.0, checkpoint_every=500,
                     checkpoint="OUT/seq2seq-TASK.npz")
    q.add_argument("--held-out", type=_positive(int), help="distinct held-out questions, at most 10 %% of each kind "
                   "(digit counts, length) (default: 2000, or all that allows: 111 for reverse and sort at --digits 3)")
    positive(q, "--eval-every", int, 500, "steps between held-out scores")
    quantize_option(q)
    seed_and_out(q)
    n = command("inspect", "a web page (and a PNG) of what a trained LSTM's (GRU's, RNN's) units do on a text",
                "Runs a `pylstm train` checkpoint over a text and writes OUT/inspect.html, one self-contained page "
                "(no network): the text with each character coloured by a chosen unit's signal (LSTM: cell state "
                "tanh c, hidden state h, input, forget and output gates; GRU: h, reset and update gates, candidate "
                "n; RNN: h), with a picker over layers, signals and units whose "
                "choice is kept in the address (#layer=0&signal=c&unit=5); the units most correlated with simple "
                "features of the text (inside double quotes, inside brackets, position in the line, just after a "
                "newline); and how often each unit's gates are saturated (below 0.1 or above 0.9), as in Karpathy, "
                "Johnson and Fei-Fei, \"Visualizing and Understanding Recurrent Networks\" (2015). Also writes "
                "OUT/inspect.png, the same view for people without a browser (with matplotlib).")
    n.add_argument("--checkpoint", default=os.path.join("pylstm-out", "lstm.npz"), help="a `pylstm train` .npz")
    n.add_argument("--text", help="a UTF-8 text file to run the model over (default: the end of the standard "
                   "library's docstrings, the part `pylstm train` holds out)")
    positive(n, "--chars", int, 2000, "characters of the text to show (from its start)")
    n.add_argument("--layer", type=_non_negative_int, help="the layer shown first (default: that of the unit "
                   "most correlated with a feature)")
    n.add_argument("--signal", choices=("c", "h", "i", "f", "o", "r", "z", "n"), default=None,
                   help="the signal shown first (default: the state, the LSTM's c or the GRU's and RNN's h)")
    n.add_argument("--unit", type=_non_negative_int, help="the unit shown first (default: the one whose state is "
                   "most correlated with a feature, within --layer when given)")
    n.add_argument("--out", default="pylstm-out", help="output folder")
    g = command("gradflow", "the vanishing-gradient picture: |dL/dx_t| for RNN, GRU and LSTM",
                "For RNN, GRU and LSTM of the same size on random input (float64), prints and plots the norm of "
                "dL/dx_t against the distance between step t and a loss at the last step; also the LSTM and GRU "
                "with a +3 forget- or update-gate bias. Writes OUT/gradflow.png.")
    positive(g, "--length", int, 200, "sequence length")
    positive(g, "--hidden", int, 64, "input and hidden size")
    positive(g, "--batch", int, 16, "batch")
    seed_and_out(g)
    from . import activations, forecast

    activations.register(command)
    forecast.register(command)
    b = command("bench", "a quick timing table: pylstm against the NumPy reference, torch and ONNX Runtime",
                "Times one layer of each cell, inference and training (forward plus backward), with pylstm, the "
                "NumPy reference and, where installed, torch and ONNX Runtime (inference only). For the full "
                "benchmark suite see benchmarks/ in the source tree.")
    positive(b, "--length", int, 100, "sequence length")
    positive(b, "--batch", int, 32, "batch")
    positive(b, "--hidden", int, 256, "input and hidden size")
    positive(b, "--rounds", int, 5, "timed calls per case (the median is shown)")
    seed_and_out(b, out=False)
    return p


def _run(argv):
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv = ["selfcheck", *argv]  # `pylstm` alone, or `pylstm --rounds 3`
    parser = build_parser()
    if not argv[0].startswith("-") and argv[0] not in COMMANDS:
        # argparse's own message, with the nearest subcommand when one is close (argparse has this from Python 3.14)
        close = difflib.get_close_matches(argv[0], COMMANDS, n=1, cutoff=0.6)
        parser.error(f"argument command: invalid choice: {argv[0]!r} (choose from {', '.join(COMMANDS)})"
                     + (f"; did you mean {close[0]!r}?" if close else ""))
    args = parser.parse_args(argv)
    args.argv = list(argv)
    from . import activations, bench, charlm, forecast, inspect, seq2seq, tasks

    run = {"selfcheck": bench.selfcheck_command, "train": charlm.train, "sample": charlm.sample, "task": tasks.task,
           "gradflow": tasks.gradflow, "bench": bench.bench, "seq2seq": seq2seq.command,
           "inspect": inspect.command, "activations": activations.command,
           "forecast": forecast.command}[args.command]
    # No thread limit is needed around the commands: NumPy's products run on pylstm's pool (share_threads_with_numpy).
    return run(args)


def main(argv=None):
    """The console script: `pylstm [SUBCOMMAND] [OPTIONS]`; returns the exit code."""
    try:
        return _run(sys.argv[1:] if argv is None else list(argv))
    except BrokenPipeError:
        # The reader went away (`pylstm sample | head`): stop quietly, and keep Python's exit flush from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
