"""The long-range memory tasks: the generators make what their docstrings say, the task losses' gradients match finite
differences, and a short run on a short length learns far beyond a model without memory."""

import numpy as np
import pytest
from conftest import numerical_gradient

from pylstm import tasks


def test_adding_problem_marks_one_step_in_each_half_and_sums_them(rng):
    T, N = 11, 200
    x, y = tasks.adding_problem(rng, T, N)
    assert x.shape == (T, N, 2) and y.shape == (N,) and x.dtype == y.dtype == np.float32
    marks = x[:, :, 1]
    assert set(np.unique(marks)) == {0.0, 1.0} and (marks.sum(0) == 2).all()
    assert (marks[:T // 2].sum(0) == 1).all() and (marks[T // 2:].sum(0) == 1).all()
    np.testing.assert_array_equal(y, (x[:, :, 0] * marks).sum(0, dtype=np.float32))
    assert 0 <= x[:, :, 0].min() and x[:, :, 0].max() < 1
    with pytest.raises(ValueError, match="^length must be >= 2"):
        tasks.adding_problem(rng, 1, N)


def test_copy_task_layout(rng):
    delay, N, K, S = 7, 50, 8, 4
    x, y = tasks.copy_task(rng, delay, N, symbols=K, copies=S)
    assert x.shape == (delay + 2 * S, N, K + 2) and y.shape == (S, N)
    ids = x.argmax(-1)
    assert (x.sum(-1) == 1).all()
    np.testing.assert_array_equal(ids[:S], y)
    assert (ids[S:S + delay - 1] == K).all() and (ids[S + delay - 1] == K + 1).all() and (ids[S + delay:] == K).all()
    assert y.min() >= 0 and y.max() < K and len(np.unique(y)) == K


@pytest.mark.parametrize("name", ["adding", "copy"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_task_loss_gradients_match_finite_differences(name, cell):
    run = tasks.Task(name, cell, 5, hidden=4, batch=3, copies=2, symbols=3, eval_batch=3, dtype="float64", seed=1)
    rng = np.random.default_rng(2)
    x, y = (tasks.adding_problem(rng, 5, 3, "float64") if name == "adding"
            else tasks.copy_task(rng, 5, 3, symbols=3, copies=2, dtype="float64"))
    run.batch_loss(x, y, backward=True)

    def loss():
        return run.batch_loss(x, y)[0]

    for module in (run.rnn, run.head):
        for k, p in module.state_dict().items():
            np.testing.assert_allclose(module.grads[k], numerical_gradient(loss, p), rtol=1e-6, atol=1e-9,
                                       err_msg=f"{name} {cell} {k}")


def test_evaluate_leaves_gradients_and_training_mode_alone():
    run = tasks.Task("copy", "lstm", 4, hidden=8, copies=2, eval_batch=16)
    run.step()
    before = {k: v.copy() for m in (run.rnn, run.head) for k, v in m.grads.items()}
    run.evaluate()
    assert run.rnn.training
    after = {k: v for m in (run.rnn, run.head) for k, v in m.grads.items()}
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_layer_and_head_start_from_independent_draws():
    run = tasks.Task("adding", "rnn", 4, hidden=8)
    w_ih, w = run.rnn.state_dict()["weight_ih_l0"].ravel(), run.head.state_dict()["weight"].ravel()
    assert not np.allclose(w_ih[:w.size] / np.abs(w_ih).max(), w / np.abs(w).max(), atol=0.05)


@pytest.mark.parametrize("name, length, floor", [("adding", 8, 0.05), ("copy", 4, 0.5)])
def test_a_short_run_learns_far_beyond_no_memory(name, length, floor):
    run = tasks.Task(name, "gru", length, hidden=32, lr=1e-2, copies=3, eval_batch=500)
    loss0, _ = run.evaluate()
    for _ in range(300):
        run.step()
    loss, score = run.evaluate()
    base, _ = tasks.Task.baseline_of(name)
    assert loss0 > 0.8 * base
    # The held-out loss ends below `floor` times the no-memory baseline (MSE 1/6, or ln 8 nats).
    assert loss < floor * base, (loss0, loss, score)


def test_task_rejects_bad_names():
    with pytest.raises(ValueError, match="^name must be"):
        tasks.Task("sorting", "lstm", 5)
    with pytest.raises(ValueError, match="^cell must be"):
        tasks.Task("adding", "transformer", 5)
