"""pylstm.torch's weight_drop (issue 27): masks from torch's generator, masks= in training calls, gradcheck with the
masks fixed, a plain torch training loop, and the state_dict of torch.nn."""

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


@pytest.mark.parametrize("name", KINDS)
def test_gradcheck_with_the_masks_fixed(name):
    torch.manual_seed(2)
    m = KINDS[name](2, 3, bidirectional=True, weight_drop=0.5, dtype=torch.float64)
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


def test_trains_in_a_plain_torch_loop():
    torch.manual_seed(3)
    lstm = pt.LSTM(1, 16, batch_first=True, weight_drop=0.3)
    head = torch.nn.Linear(16, 1)
    opt = torch.optim.Adam([*lstm.parameters(), *head.parameters()], lr=1e-2)
    t = torch.linspace(0, 12, 40)
    x = torch.sin(t)[None, :-1, None].repeat(8, 1, 1)
    y = torch.sin(t)[None, 1:, None].repeat(8, 1, 1)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        out, _ = lstm(x)
        loss = torch.nn.functional.mse_loss(head(out), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
