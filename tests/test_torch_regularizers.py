"""pylstm.torch's regularizers and layer norm (issue 27): masks from torch's generator, masks= in training calls,
gradcheck with the masks fixed, a plain torch training loop, and the state_dict of torch.nn (or, with layer norm, its
own)."""

import pytest

torch = pytest.importorskip("torch")

import pylstm.torch as pt  # noqa: E402

KINDS = {"LSTM": pt.LSTM, "GRU": pt.GRU, "RNN": pt.RNN}


@pytest.mark.parametrize("name", KINDS)
def test_masks_follow_torchs_generator_and_masks_fix_them(name):
    torch.manual_seed(0)
    m = KINDS[name](3, 5, num_layers=2, bidirectional=True, weight_drop=0.4)
    x = torch.randn(4, 2, 3)
    torch.manual_seed(1)
    out1, _ = m(x)
    masks = m.masks
    assert sorted(masks) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    values = torch.unique(masks["l0"]["weight_drop"]).tolist()
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / 0.6)
    torch.manual_seed(1)
    out2, _ = m(x)
    assert torch.equal(out1, out2)  # torch.manual_seed reproduces the masks
    out3, _ = m(x, masks=masks)
    assert torch.equal(out1, out3)
    plain = getattr(torch.nn, name)(3, 5, num_layers=2, bidirectional=True)
    plain.load_state_dict(m.state_dict())  # no added parameters: torch.nn's state_dict
    with torch.no_grad():
        for key, mk in masks.items():
            getattr(plain, "weight_hh_" + key).mul_(mk["weight_drop"])
    torch.testing.assert_close(plain(x)[0], out1, rtol=1e-5, atol=1e-6)
    m.eval()
    with pytest.raises(ValueError, match="masks are for training calls"):
        m(x, masks=masks)
    assert "weight_drop=0.4" in repr(m)


def _gradcheck_with_masks_fixed(m):
    """gradcheck of a float64 module's training call in x and every parameter, with the masks of one call fixed
    through masks= (so that each evaluation sees the same masks)."""
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    m(x)
    masks = m.masks
    params = dict(m.named_parameters())
    names = list(params)

    def f(x, *ps):
        out, _ = torch.func.functional_call(m, dict(zip(names, ps)), (x,), {"masks": masks})
        return out

    assert torch.autograd.gradcheck(f, (x, *[p.detach().clone().requires_grad_() for p in params.values()]),
                                    eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", KINDS)
def test_gradcheck_with_the_masks_fixed(name):
    torch.manual_seed(2)
    m = KINDS[name](2, 3, bidirectional=True, weight_drop=0.5, dtype=torch.float64)
    _gradcheck_with_masks_fixed(m)


def _train_on_a_sine(rnn):
    """60 Adam steps of rnn (1 input, 16 units, batch_first) and a Linear head on a sine's next value, in a plain
    torch loop: returns the inputs (for more checks) after asserting the loss fell below 0.3 of its start."""
    head = torch.nn.Linear(16, 1)
    opt = torch.optim.Adam([*rnn.parameters(), *head.parameters()], lr=1e-2)
    t = torch.linspace(0, 12, 40)
    x = torch.sin(t)[None, :-1, None].repeat(8, 1, 1)
    y = torch.sin(t)[None, 1:, None].repeat(8, 1, 1)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        out, _ = rnn(x)
        loss = torch.nn.functional.mse_loss(head(out), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    return x


def test_trains_in_a_plain_torch_loop():
    torch.manual_seed(3)
    _train_on_a_sine(pt.LSTM(1, 16, batch_first=True, weight_drop=0.3))


# ---- recurrent dropout ----

@pytest.mark.parametrize("name", KINDS)
def test_recurrent_dropout_masks_follow_torchs_generator_and_equal_the_numpy_api(name):
    import numpy as np

    import pylstm

    torch.manual_seed(0)
    m = KINDS[name](3, 5, num_layers=2, bidirectional=True, recurrent_dropout=0.4, weight_drop=0.2,
                    dtype=torch.float64)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    torch.manual_seed(1)
    out1, _ = m(x)
    masks = m.masks
    assert sorted(masks) == ["l0", "l0_reverse", "l1", "l1_reverse"]
    assert tuple(masks["l1_reverse"]["recurrent_dropout"].shape) == (6, 5)
    values = torch.unique(masks["l0"]["recurrent_dropout"]).tolist()
    assert len(values) == 2 and values[0] == 0 and values[1] == pytest.approx(1 / 0.6)
    torch.manual_seed(1)
    assert torch.equal(m(x)[0], out1)  # torch.manual_seed reproduces the masks
    assert torch.equal(m(x, masks=masks)[0], out1)
    # the NumPy API's module with the same weights and masks gives the same output and gradients
    npm = getattr(pylstm, name)(3, 5, num_layers=2, bidirectional=True, recurrent_dropout=0.4, weight_drop=0.2,
                                dtype="float64")
    npm.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    np_masks = {k: {o: v.numpy() for o, v in d.items()} for k, d in masks.items()}
    y, _ = npm(x.numpy(), masks=np_masks)
    np.testing.assert_allclose(out1.detach().numpy(), y, rtol=1e-12, atol=1e-13)
    assert "recurrent_dropout=0.4" in repr(m)
    with pytest.raises(ValueError, match="zoneout"):
        m(x, masks={"l0": {"zoneout": masks["l0"]["recurrent_dropout"]}})
    with pytest.raises(ValueError, match=r"must be a tensor of shape \(6, 5\)"):
        m(x, masks={**masks, "l0": {**masks["l0"], "recurrent_dropout": torch.ones(2, 5)}})


@pytest.mark.parametrize("name", KINDS)
def test_recurrent_dropout_gradcheck_with_the_masks_fixed(name):
    torch.manual_seed(2)
    m = KINDS[name](2, 3, num_layers=2, bidirectional=True, recurrent_dropout=0.5, dtype=torch.float64)
    x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    hx = (h0, torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)) if name == "LSTM" else h0
    m(x, hx)
    masks = m.masks
    assert (masks["l0"]["recurrent_dropout"] == 0).any()
    params = dict(m.named_parameters())
    names = list(params)

    def f(x, h0, *ps):
        state = (h0, hx[1]) if name == "LSTM" else h0
        out, _ = torch.func.functional_call(m, dict(zip(names, ps)), (x, state), {"masks": masks})
        return out

    assert torch.autograd.gradcheck(f, (x, h0, *[p.detach().clone().requires_grad_() for p in params.values()]),
                                    eps=1e-6, atol=1e-6)


def test_recurrent_dropout_with_a_packed_sequence_keeps_the_callers_row_order():
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(4)
    m = pt.GRU(3, 4, recurrent_dropout=0.5, dtype=torch.float64)
    x = torch.randn(5, 3, 3, dtype=torch.float64)
    lengths = [2, 5, 3]
    m(pack_padded_sequence(x, lengths, enforce_sorted=False))
    masks = m.masks
    out, _ = m(pack_padded_sequence(x, lengths, enforce_sorted=False), masks=masks)
    from torch.nn.utils.rnn import pad_packed_sequence
    padded, _ = pad_packed_sequence(out)
    for n, length in enumerate(lengths):
        row = {"l0": {"recurrent_dropout": masks["l0"]["recurrent_dropout"][n:n + 1]}}
        alone, _ = m(x[:length, n:n + 1], masks=row)
        torch.testing.assert_close(padded[:length, n:n + 1], alone, rtol=1e-12, atol=1e-13)


def test_recurrent_dropout_trains_in_a_plain_torch_loop_and_loads_into_torch_nn():
    torch.manual_seed(3)
    lstm = pt.LSTM(1, 16, batch_first=True, recurrent_dropout=0.25)
    x = _train_on_a_sine(lstm)
    plain = torch.nn.LSTM(1, 16, batch_first=True)
    plain.load_state_dict(lstm.state_dict())
    lstm.eval()
    torch.testing.assert_close(plain(x)[0], lstm(x)[0], rtol=1e-5, atol=1e-6)  # eval: the plain model
    with torch.no_grad():  # a training call without gradients still applies the masks
        lstm.train()
        a, _ = lstm(x)
        masks = lstm.masks
    b, _ = lstm(x, masks=masks)
    torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)


# ---- zoneout ----

@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_zoneout_masks_follow_torchs_generator_and_equal_the_numpy_api(name):
    import numpy as np

    import pylstm

    z = (0.3, 0.2) if name == "LSTM" else 0.2
    torch.manual_seed(0)
    m = KINDS[name](3, 5, num_layers=2, bidirectional=True, zoneout=z, recurrent_dropout=0.2, dtype=torch.float64)
    x = torch.randn(4, 6, 3, dtype=torch.float64)
    torch.manual_seed(1)
    out1, _ = m(x)
    masks = m.masks
    assert tuple(masks["l1_reverse"]["zoneout_h"].shape) == (4, 6, 5)
    assert ("zoneout_c" in masks["l0"]) == (name == "LSTM")
    torch.manual_seed(1)
    assert torch.equal(m(x)[0], out1)
    assert torch.equal(m(x, masks=masks)[0], out1)
    npm = getattr(pylstm, name)(3, 5, num_layers=2, bidirectional=True, zoneout=z, recurrent_dropout=0.2,
                                dtype="float64")
    npm.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    y, _ = npm(x.numpy(), masks={k: {o: v.numpy() for o, v in d.items()} for k, d in masks.items()})
    np.testing.assert_allclose(out1.detach().numpy(), y, rtol=1e-12, atol=1e-13)
    m.eval(), npm.eval()  # the expectation
    np.testing.assert_allclose(m(x)[0].detach().numpy(), npm(x.numpy())[0], rtol=1e-12, atol=1e-13)
    assert f"zoneout={z}" in repr(m)
    plain = getattr(torch.nn, name)(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64)
    plain.load_state_dict(m.state_dict())  # no added parameters
    with pytest.raises(ValueError, match="zoneout is an option of the LSTM and the GRU"):
        pt.RNN(3, 4, zoneout=0.1)
    with pytest.raises(ValueError, match="not combined with proj_size"):
        pt.LSTM(3, 4, proj_size=2, zoneout=0.1)


@pytest.mark.parametrize("name", ["LSTM", "GRU"])
def test_zoneout_gradcheck_with_the_masks_fixed_and_a_packed_sequence(name):
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(2)
    m = KINDS[name](2, 3, num_layers=2, bidirectional=True, zoneout=0.4, dtype=torch.float64)
    _gradcheck_with_masks_fixed(m)
    xs = torch.randn(4, 3, 2, dtype=torch.float64)
    packed = pack_padded_sequence(xs, [2, 4, 3], enforce_sorted=False)
    m(packed)
    pm = m.masks
    out, _ = m(packed, masks=pm)
    assert torch.equal(out.data, m(packed, masks=pm)[0].data)


def test_zoneout_trains_in_a_plain_torch_loop():
    torch.manual_seed(3)
    _train_on_a_sine(pt.GRU(1, 16, batch_first=True, zoneout=0.1))


def test_zoneout_in_eval_mode_with_gradients_uses_the_expectation():
    torch.manual_seed(5)
    m = pt.LSTM(2, 3, zoneout=(0.3, 0.5), dtype=torch.float64).eval()
    x = torch.randn(4, 2, 2, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        want, _ = m(x)
    out, _ = m(x)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-13)
    assert torch.autograd.gradcheck(lambda x: m(x)[0], (x,), eps=1e-6, atol=1e-6)


def test_zoneout_masks_round_trip_when_one_state_is_not_zoned():
    torch.manual_seed(6)
    m = pt.LSTM(3, 4, zoneout=(0.0, 0.3))
    x = torch.randn(5, 2, 3)
    out, _ = m(x)
    masks = m.masks
    assert not masks["l0"]["zoneout_c"].any()
    torch.testing.assert_close(m(x, masks=masks)[0], out, rtol=0, atol=0)


# ---- layer norm ----

def test_layer_norm_gradcheck_with_every_option_and_the_masks_fixed():
    torch.manual_seed(7)
    m = pt.LSTM(2, 3, num_layers=2, bidirectional=True, layer_norm=True, recurrent_dropout=0.3, weight_drop=0.2,
                zoneout=(0.3, 0.2), dtype=torch.float64)
    with torch.no_grad():  # γ and β away from their start
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    _gradcheck_with_masks_fixed(m)


def test_layer_norm_trains_in_a_plain_torch_loop():
    torch.manual_seed(3)
    _train_on_a_sine(pt.LSTM(1, 16, batch_first=True, layer_norm=True))


def test_layer_norm_state_dict_round_trips_and_equals_the_numpy_api():
    import numpy as np

    import pylstm

    torch.manual_seed(8)
    m = pt.LSTM(3, 4, num_layers=2, bidirectional=True, layer_norm=True, dtype=torch.float64)
    sd = m.state_dict()
    for sfx in ("_l0", "_l1_reverse"):
        assert torch.equal(sd["ln_weight_ih" + sfx], torch.ones(16, dtype=torch.float64))
        assert torch.equal(sd["ln_weight_hh" + sfx], torch.ones(16, dtype=torch.float64))
        assert torch.equal(sd["ln_weight_c" + sfx], torch.ones(4, dtype=torch.float64))
        assert torch.equal(sd["ln_bias_c" + sfx], torch.zeros(4, dtype=torch.float64))
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.startswith("ln_"):
                p.add_(0.3 * torch.randn_like(p))
    again = pt.LSTM(3, 4, num_layers=2, bidirectional=True, layer_norm=True, dtype=torch.float64)
    again.load_state_dict(m.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    assert torch.equal(m(x)[0], again(x)[0])
    numpy_lstm = pylstm.LSTM(3, 4, num_layers=2, bidirectional=True, layer_norm=True, dtype="float64")
    numpy_lstm.load_state_dict({k: v.detach().numpy() for k, v in m.state_dict().items()})
    np.testing.assert_allclose(numpy_lstm.eval()(x.numpy())[0], m(x)[0].detach().numpy(), rtol=1e-12, atol=1e-14)
    with pytest.raises(RuntimeError, match="Unexpected key"):  # torch.nn.LSTM has no layer norm
        torch.nn.LSTM(3, 4, num_layers=2, bidirectional=True, dtype=torch.float64).load_state_dict(m.state_dict())
    m.reset_parameters()  # torch's draw for the weights, the layer norm's start again
    assert torch.equal(m.ln_weight_c_l1, torch.ones(4, dtype=torch.float64)) and not m.ln_bias_c_l0.any()
    assert "layer_norm=True" in repr(m)
    with pytest.raises(ValueError, match="layer_norm is not combined"):
        pt.LSTM(3, 4, proj_size=2, layer_norm=True)
