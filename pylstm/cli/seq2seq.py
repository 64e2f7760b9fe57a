"""`pylstm seq2seq`: trains an encoder-decoder (pylstm.seq2seq) on a task, reports held-out accuracy against the
baseline, writes the curve and checkpoints; Ctrl-C saves, --resume continues."""

from __future__ import annotations

import os
import time

import numpy as np

from pylstm.checkpoint import Checkpoint
from pylstm.seq2seq import TASKS, Seq2Seq, baseline, held_out_pairs, held_out_room, scores, training_pairs
from pylstm.training import Interrupts, Loop, resume_from

from .common import _plot, quantize_label, quantize_refusal


def command(args):
    """`pylstm seq2seq`: trains, reports held-out accuracy against the baseline, writes the curve and checkpoint."""
    refusal = quantize_refusal(args, "seq2seq")
    if refusal:
        raise SystemExit(refusal)
    try:
        model = Seq2Seq(args.task, args.cell, args.hidden, args.digits, args.reverse_input, args.seed, args.lr,
                        args.clip, attention=args.attention)
    except ValueError as e:
        raise SystemExit(f"pylstm seq2seq: {e}") from None
    if args.held_out is None:  # 2000, or all that 10 % of each kind allows (reverse and sort with few letters)
        args.held_out = min(2000, held_out_room(args.task, args.digits))
    try:
        held = held_out_pairs(args.task, np.random.default_rng([args.seed, 1]), args.held_out, args.digits)
    except ValueError as e:
        raise SystemExit(f"pylstm seq2seq: {e}") from None
    held_q = {q for q, _ in held}
    held_answers = [a for _, a in held]
    rng = np.random.default_rng([args.seed, 2])
    base = baseline([a for _, a in training_pairs(args.task, np.random.default_rng([args.seed, 3]), 5000,
                                                  args.digits, held_q)], held_answers)
    print(f"task {args.task}: {TASKS[args.task][1].format(digits=args.digits)}"
          f"{'; the question is read reversed' if args.reverse_input else ''}. {args.cell.upper()} encoder and "
          f"decoder, {args.hidden} units{', Luong attention' if args.attention else ''}; {args.held_out} distinct "
          "held-out questions (at most 10 % of each kind), never trained on")
    print(f"baseline (one answer for every question, from the training answers' commonest characters): exact "
          f"{100 * base[0]:.1f} %, per character {100 * base[1]:.1f} %")
    ck_path = os.path.join(args.out, f"seq2seq-{args.task}.npz")
    config = dict(task=args.task, cell=args.cell, hidden=args.hidden, digits=args.digits, batch=args.batch,
                  reverse_input=bool(args.reverse_input), held_out=args.held_out, seed=args.seed,
                  attention=bool(args.attention), held_out_set="distinct, at most 10 % of each kind")
    history = {"step": [], "loss": [], "eval_step": [], "exact": [], "char": []}
    start, saved_step = 1, 0
    if args.resume:
        start, saved_step, history = resume_from(ck_path, model.modules, model.opt, generators={"data": rng},
                                                 config=config, kind="pylstm seq2seq", lr=args.lr, history=history,
                                                 command="seq2seq")
        if saved_step >= args.steps:
            print(f"the run is already at step {saved_step}: raise --steps (now {args.steps}) to train on")
            return 0

    def save(step):
        Checkpoint(model.modules, model.opt, step=step, generators={"data": rng}, history=history, config=config,
                   kind="pylstm seq2seq").save(ck_path)

    def evaluate(step):
        predicted = model.answer([q for q, _ in held])
        exact, char = scores(predicted, held_answers)
        history["eval_step"].append(step)
        history["exact"].append(exact)
        history["char"].append(char)
        shown = "; ".join(f"{q} -> {p}" + ("" if p == a else f" (not {a})")
                          for (q, a), p in list(zip(held, predicted))[:3])
        return (f"step {step}: held-out exact {100 * exact:.1f} %, per character {100 * char:.1f} % (baseline "
                f"{100 * base[0]:.1f} / {100 * base[1]:.1f} %); {shown}")

    def plot():
        steps = max(args.steps, history["step"][-1] if history["step"] else 1)
        _plot(os.path.join(args.out, f"seq2seq-{args.task}.png"),
              {"held-out exact match": (history["eval_step"], history["exact"]),
               "held-out per character": (history["eval_step"], history["char"]),
               "baseline exact": ([1, steps], [base[0], base[0]]),
               "baseline per character": ([1, steps], [base[1], base[1]])},
              "training step", "accuracy", f"seq2seq {args.task} ({args.cell.upper()}, {args.hidden} units)",
              baselines=("baseline exact", "baseline per character"))

    t0, ema = time.perf_counter(), None
    with Interrupts() as stop:
        loop = Loop(stop, start=start, total=args.steps, desc=f"seq2seq {args.task}", checkpoint=ck_path,
                    every=args.checkpoint_every, save=save, argv=args.argv, saved_step=saved_step)
        for step in loop:
            questions, answers = zip(*training_pairs(args.task, rng, args.batch, args.digits, held_q))
            loss, norm = model.gradients(questions, answers)
            if loop.diverged(step, loss, norm, lr=model.opt.lr, clip=args.clip):
                return 1
            model.opt.step()
            ema = loss if ema is None else 0.95 * ema + 0.05 * loss
            history["step"].append(step)
            history["loss"].append(loss)
            loop.update(loss=f"{ema:.3f}")
            if step % args.eval_every == 0 or step == args.steps:
                loop.write(evaluate(step))
            code = loop.save_if_due(step)
            if code is not None:
                plot()
                return code
        loop.close()
    if history["exact"]:
        print(f"held-out exact match {100 * history['exact'][-1]:.1f} %, per character {100 * history['char'][-1]:.1f} "
              f"% (baseline {100 * base[0]:.1f} / {100 * base[1]:.1f} %), {time.perf_counter() - t0:.0f} s")
    if args.quantize:
        from pylstm import quantize

        exact32, char32 = scores(model.answer([q for q, _ in held]), held_answers)
        enc, dec = model.encoder, model.decoder
        for dtype in dict.fromkeys(args.quantize):
            model.encoder, model.decoder = quantize(enc, dtype), quantize(dec, dtype)
            try:
                exact8, char8 = scores(model.answer([q for q, _ in held]), held_answers)
            finally:
                model.encoder, model.decoder = enc, dec
            print(f"{quantize_label(dtype)}, encoder and decoder: held-out exact {100 * exact8:.1f} %, per character "
                  f"{100 * char8:.1f} % against float32's {100 * exact32:.1f} / {100 * char32:.1f} %")
    print(f"saved {ck_path}")
    plot()
    return 0
