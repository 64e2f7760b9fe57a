"""pylstm inspect: the features, correlations and saturation it computes; the activations against the compiled layer;
a hand-built LSTM whose planted units it must find; the page in headless Chromium (coloured, and the picker changes
the colouring); the PNG; and its errors."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from pylstm import cli, nn
from pylstm.checkpoint import Checkpoint
from pylstm.cli import inspect

TEXT = "call(x, y) now\nand (a b) then\n" * 12 + 'say "hi" (once)\n'
START = __import__("time").time()


def page_data(path):
    with open(path, encoding="utf-8") as f:
        html = f.read()
    start = html.index("const DATA = ") + len("const DATA = ")
    return json.loads(html[start:html.index(";\n(function", start)].replace("<\\/", "</"))


def test_text_features():
    f = inspect.text_features('a"b(c)\nd"')
    assert f["inside double quotes"].tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 0]
    assert f["inside brackets"].tolist() == [0, 0, 0, 1, 1, 0, 0, 0, 0]
    assert f["position in the line"].tolist() == [0, 1, 2, 3, 4, 5, 6, 0, 1]
    assert f["just after a newline"].tolist() == [0, 0, 0, 0, 0, 0, 1, 0, 0]
    assert inspect.text_features(")(")["inside brackets"].tolist() == [0, 1]  # an unmatched closer is ignored


def test_correlations_are_pearson_and_zero_where_constant():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((2, 5, 3, 40)).astype(np.float32)
    feats = {name: rng.standard_normal(40) for name in inspect.FEATURES}
    feats["inside double quotes"] = np.zeros(40)  # a text without quotes
    acts[1, 2, 0] = 0.5  # a gate that never moves
    r = inspect.correlations(acts, feats)
    assert r.shape == (2, 5, 3, 4)
    for k, s, u, j in [(0, 0, 0, 1), (1, 4, 2, 3), (0, 3, 1, 2)]:
        want = np.corrcoef(acts[k, s, u], feats[inspect.FEATURES[j]])[0, 1]
        assert abs(r[k, s, u, j] - want) < 1e-6
    assert (r[..., 0] == 0).all() and (r[1, 2, 0] == 0).all()


def test_saturation_counts_each_units_steps():
    acts = np.full((1, 5, 2, 10), 0.5, np.float32)
    acts[0, 2, 0, :3] = 0.05   # i, unit 0: 3 of 10 steps below 0.1
    acts[0, 3, 1, :] = 0.95    # f, unit 1: always above 0.9
    acts[0, 4, 0, 5:] = 0.1    # o, unit 0: exactly 0.1 is not saturated
    s = inspect.saturation(acts)
    assert s.shape == (1, 3, 2, 2)
    assert s[0, 0, 0].tolist() == [0.3, 0.0] and s[0, 1, 1].tolist() == [0.0, 1.0] and s[0, 2, 0].tolist() == [0, 0]
    assert s.sum() == pytest.approx(1.3)


def test_activations_agree_with_the_compiled_layer():
    rnn, _ = nn.recurrent_model("lstm", 7, 6, 7, 2, seed=3)
    ids = np.random.default_rng(1).integers(0, 7, 50)
    acts = inspect.activations(rnn, ids, 7)
    assert acts.shape == (2, 5, 6, 50)
    rnn.eval()
    out, (h_n, c_n) = rnn(np.eye(7, dtype=np.float32)[ids][:, None, :])
    np.testing.assert_allclose(acts[1, 1].T, out[:, 0], atol=1e-5)          # the top layer's h at every step
    np.testing.assert_allclose(acts[:, 0, :, -1], c_n[:, 0], atol=1e-5)     # each layer's last cell state
    np.testing.assert_allclose(acts[:, 1, :, -1], h_n[:, 0], atol=1e-5)
    o = acts[:, 4]
    np.testing.assert_allclose(acts[:, 1], o * np.tanh(acts[:, 0]), atol=1e-6)  # h = o * tanh(c)
    assert ((acts[:, 2:] > 0) & (acts[:, 2:] < 1)).all()


def planted(path, text=TEXT):
    """A 1-layer LSTM of 4 units with two planted units: unit 1's cell state is 1 inside brackets and 0 outside
    (it writes +1 at "(" and -1 at ")" and always remembers); unit 2's is 1 right after a newline and 0 elsewhere
    (it always forgets). Every input gate is always open (right-saturated); unit 2's forget gate always shut."""
    vocab = sorted(set(text))
    V, H = len(vocab), 4
    rnn, head = nn.recurrent_model("lstm", V, H, V, 1, seed=0)
    big = 10.0
    with rnn.edit_parameters() as p:
        for key in p:
            p[key][...] = 0
        p["bias_ih_l0"][0:H] = big                      # i
        p["bias_ih_l0"][H + 1], p["bias_ih_l0"][H + 2] = big, -big  # f: unit 1 remembers, unit 2 forgets
        p["bias_ih_l0"][3 * H:] = big                   # o
        g = 2 * H
        p["weight_ih_l0"][g + 1, vocab.index("(")] = big
        p["weight_ih_l0"][g + 1, vocab.index(")")] = -big
        p["weight_ih_l0"][g + 2, vocab.index("\n")] = big
    Checkpoint({"rnn": rnn, "head": head}, None, step=0, kind="pylstm train",
               extra=dict(vocab=np.array([ord(c) for c in vocab], np.int32), config=np.array([H, 1], np.int64),
                          cell=np.array("lstm"))).save(path)
    return path


@pytest.fixture
def planted_page(tmp_path, capsys):
    ck = planted(str(tmp_path / "planted.npz"))
    (tmp_path / "text.txt").write_text(TEXT)
    assert cli.main(["inspect", "--checkpoint", ck, "--text", str(tmp_path / "text.txt"), "--out",
                     str(tmp_path / "out")]) == 0
    return tmp_path / "out", capsys.readouterr().out


def test_the_planted_units_are_found(planted_page):
    out, printed = planted_page
    data = page_data(out / "inspect.html")
    assert data["text"] == TEXT and data["steps"] == len(TEXT) and data["units"] == 4 and data["layers"] == 1
    best = {f: (rows[0]["layer"], rows[0]["signal"], rows[0]["unit"], rows[0]["r"]) for f, rows in data["top"].items()}
    assert best["inside brackets"][:3] == (0, "c", 1) and best["inside brackets"][3] > 0.99
    assert best["just after a newline"][:3] == (0, "c", 2) and best["just after a newline"][3] > 0.99
    assert data["initial"] == {"layer": 0, "signal": "c", "unit": 2}  # the strongest correlation of a cell state
    sat = np.array(data["saturation"])  # (layer, gate i/f/o, unit, left/right)
    assert (sat[0, 0, :, 1] == 1).all() and (sat[0, 0, :, 0] == 0).all()
    assert sat[0, 1, 1].tolist() == [0, 1] and sat[0, 1, 2].tolist() == [1, 0] and sat[0, 1, 0].tolist() == [0, 0]
    # The shipped values decode to the activations: unit 1's tanh(c) is tanh(1) inside brackets, 0 outside.
    q = np.frombuffer(__import__("base64").b64decode(data["values"]), np.uint8).reshape(1, 5, 4, len(TEXT))
    inside = inspect.text_features(TEXT)["inside brackets"] > 0
    tc = q[0, 0, 1] / 127.5 - 1
    assert np.abs(tc[inside] - np.tanh(1)).max() < 0.02 and np.abs(tc[~inside]).max() < 0.03
    assert "inside brackets        layer 0 c unit 1: +1.00" in printed
    assert "saved " + str(out / "inspect.html") in printed


def act(br, script):
    """Runs a script that changes the page's address, and returns once the page has handled the change."""
    br.evaluate("new Promise(done => { addEventListener('hashchange', () => setTimeout(done, 0), {once: true}); "
                + script + "; })")


def coloured(img):
    """The fraction of pixels that are clearly coloured (not white, grey or black)."""
    img = img.astype(np.int32)
    return float(((img.max(axis=2) - img.min(axis=2)) > 60).mean())


def test_the_png_shows_the_same_view(planted_page, tmp_path):
    pytest.importorskip("matplotlib", reason="matplotlib is not installed; the PNG needs pip install pylstm[plot]")
    from browser import decode_png

    out, printed = planted_page  # opened at unit 2, which lights up only the newlines
    assert "saved " + str(out / "inspect.png") in printed
    newline = decode_png((out / "inspect.png").read_bytes())
    assert cli.main(["inspect", "--checkpoint", str(tmp_path / "planted.npz"), "--text", str(tmp_path / "text.txt"),
                     "--unit", "1", "--out", str(tmp_path / "unit1")]) == 0
    brackets = decode_png((tmp_path / "unit1" / "inspect.png").read_bytes())
    assert brackets.shape == newline.shape and brackets.shape[0] > 300 and brackets.shape[1] > 600
    assert coloured(brackets) > 0.02 and coloured(brackets) > 3 * coloured(newline)


def test_without_matplotlib_the_page_is_written_and_the_png_explained(tmp_path):
    ck = planted(str(tmp_path / "planted.npz"))
    (tmp_path / "t.txt").write_text(TEXT)
    code = ("import sys; sys.modules['matplotlib'] = None; from pylstm.cli import main; "
            f"sys.exit(main(['inspect', '--checkpoint', {ck!r}, '--text', {str(tmp_path / 't.txt')!r}, '--out', "
            f"{str(tmp_path / 'o')!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert r.returncode == 0, r.stderr
    assert 'pip install "pylstm[plot]"' in r.stdout
    assert (tmp_path / "o" / "inspect.html").exists() and not (tmp_path / "o" / "inspect.png").exists()


def test_the_page_in_headless_chromium(planted_page):
    from browser import Browser, chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not rendered")
    out, _ = planted_page
    url = (out / "inspect.html").as_uri()
    with Browser(width=1000, height=700) as br:
        br.open(url + "#layer=0&signal=c&unit=1")
        assert br.evaluate("document.body.dataset.view") == "0/c/1"
        shot = br.screenshot()
        assert coloured(shot) > 0.01, "the page drew no coloured characters"
        # The colours are the data: inside brackets unit 1 is red, outside white.
        styles = br.evaluate("Array.from(document.querySelectorAll('#text span')).map("
                             "s => getComputedStyle(s).backgroundColor)")
        assert len(styles) == len(TEXT)
        inside = inspect.text_features(TEXT)["inside brackets"] > 0
        rgb = np.array([[int(v) for v in s[s.index("(") + 1:s.index(")")].split(",")[:3]] for s in styles])
        assert (rgb[inside, 0] == 255).all() and (rgb[inside, 1] < 130).all()  # tanh(1) ≈ 0.76 of full red
        assert (rgb[~inside] > 245).all()
        # The picker: the signal menu, then the next-unit button; each changes the address and the colouring.
        act(br, "const s = document.getElementById('signal'); s.value = 'f'; s.dispatchEvent(new Event('change'))")
        assert br.evaluate("document.body.dataset.view") == "0/f/1"
        assert br.evaluate("location.hash") == "#layer=0&signal=f&unit=1"
        shot_f = br.screenshot()
        assert (shot_f != shot).any(axis=2).mean() > 0.01
        act(br, "document.getElementById('next').click()")
        assert br.evaluate("document.body.dataset.view") == "0/f/2"
        assert (br.screenshot() != shot_f).any(axis=2).mean() > 0.01
        # A unit from the table of top units, by its link ("layer signal unit: r").
        link = br.evaluate("document.querySelectorAll('#top tr')[2].querySelector('a').textContent")
        act(br, "document.querySelectorAll('#top tr')[2].querySelector('a').click()")
        layer, signal, unit = link.split(":")[0].split()
        assert br.evaluate("document.body.dataset.view") == f"{layer}/{signal}/{unit}" and unit == "1"
        # An address the page cannot show leaves the view as it was.
        act(br, "location.hash = '#layer=3&signal=c&unit=99'")
        shown = br.evaluate("(v => `${v.layer}/${v.signal}/${v.unit}`)(pylstmInspect.view())")
        assert shown == f"{layer}/{signal}/{unit}"
        assert br.evaluate("document.getElementById('unit').value") == unit


def test_a_text_with_markup_and_astral_characters(tmp_path):
    """Text that could end the page's script ("</script>", "<!--<script>") is data, and characters outside the
    BMP (which JavaScript strings count twice) keep every later character's colour in place."""
    from browser import Browser, chromium

    text = "a (b) <!--<script> c\n</script> & \U0001f600 (d)\n\u2028e\n" * 3
    ck = planted(str(tmp_path / "p.npz"), text)
    (tmp_path / "t.txt").write_text(text, encoding="utf-8")
    assert cli.main(["inspect", "--checkpoint", ck, "--text", str(tmp_path / "t.txt"), "--out", str(tmp_path),
                     "--unit", "1"]) == 0
    html = (tmp_path / "inspect.html").read_text(encoding="utf-8")
    script = html[html.index("const DATA = "):]
    assert "</script>" not in script[:script.index("(function")] and "<!--" not in script[:script.index("(function")]
    assert page_data(tmp_path / "inspect.html")["text"] == text
    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not rendered")
    with Browser(width=800, height=600) as br:
        br.open((tmp_path / "inspect.html").as_uri())
        assert br.evaluate("document.body.dataset.view") == "0/c/1"
        spans = br.evaluate("Array.from(document.querySelectorAll('#text span')).map(s => s.textContent)")
        assert len(spans) == len(text)
        assert "".join("\n" if s == "\u21b5" else s for s in spans) == text
        styles = br.evaluate("Array.from(document.querySelectorAll('#text span')).map("
                             "s => getComputedStyle(s).backgroundColor)")
        inside = inspect.text_features(text)["inside brackets"] > 0
        rgb = np.array([[int(v) for v in s[s.index("(") + 1:s.index(")")].split(",")[:3]] for s in styles])
        assert (rgb[inside, 0] == 255).all() and (rgb[inside, 1] < 130).all() and (rgb[~inside] > 245).all()


def save_model(path, cell, vocab, hidden, layers, seed=0):
    rnn, head = nn.recurrent_model(cell, len(vocab), hidden, len(vocab), layers, seed=seed)
    Checkpoint({"rnn": rnn, "head": head}, None, step=0, kind="pylstm train",
               extra=dict(vocab=np.array([ord(c) for c in vocab], np.int32),
                          config=np.array([hidden, layers], np.int64), cell=np.array(cell))).save(str(path))
    return rnn


@pytest.mark.parametrize("cell, signals, gates", [("gru", ["h", "r", "z", "n"], ["r", "z"]), ("rnn", ["h"], [])])
def test_gru_and_rnn_checkpoints(cell, signals, gates, tmp_path, capsys):
    vocab = sorted(set(TEXT))
    rnn = save_model(tmp_path / "m.npz", cell, vocab, 6, 2)
    (tmp_path / "t.txt").write_text(TEXT)
    args = ["inspect", "--checkpoint", str(tmp_path / "m.npz"), "--text", str(tmp_path / "t.txt"), "--out",
            str(tmp_path)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert f"{cell.upper()} with 2 layer(s) of 6 units" in printed and ("gate saturation" in printed) == bool(gates)
    data = page_data(tmp_path / "inspect.html")
    assert data["cell"] == cell.upper() and data["signals"] == signals and data["gates"] == gates
    assert data["initial"]["signal"] == "h"
    assert np.array(data["saturation"]).shape == ((2, len(gates), 6, 2) if gates else (2, 0))
    ids = np.array([vocab.index(ch) for ch in TEXT])
    acts = inspect.activations(rnn, ids, len(vocab))
    rnn.eval()
    out, h_n = rnn(np.eye(len(vocab), dtype=np.float32)[ids][:, None, :])
    np.testing.assert_allclose(acts[1, 0].T, out[:, 0], atol=1e-5)      # the top layer's h at every step
    np.testing.assert_allclose(acts[:, 0, :, -1], h_n[:, 0], atol=1e-5)  # each layer's last h
    if cell == "gru":  # h_t = (1 - z) n + z h_{t-1}
        h, z, n = acts[:, 0], acts[:, 2], acts[:, 3]
        np.testing.assert_allclose(h[..., 1:], (1 - z[..., 1:]) * n[..., 1:] + z[..., 1:] * h[..., :-1], atol=1e-6)
        assert ((acts[:, 1:3] > 0) & (acts[:, 1:3] < 1)).all()
    with pytest.raises(SystemExit, match=f"--signal c is not one of the {cell.upper()}'s: {', '.join(signals)}"):
        cli.main(args + ["--signal", "c"])
    from browser import Browser, chromium

    if chromium() is None:
        pytest.skip("chromium is not installed (apt-get install -y chromium); the page was not rendered")
    with Browser(width=900, height=700) as br:
        br.open((tmp_path / "inspect.html").as_uri())  # the first view: the unit most correlated with a feature
        first = data["initial"]
        assert br.evaluate("document.body.dataset.view") == f"{first['layer']}/h/{first['unit']}"
        assert br.evaluate("document.getElementById('title').textContent") == f"What the {cell.upper()}'s units do"
        assert br.evaluate("document.querySelectorAll('#plots svg').length") == len(gates)
        # Every character's colour is its value's: h in [-1, 1] from white to red (above 0) or blue (below).
        styles = br.evaluate("Array.from(document.querySelectorAll('#text span')).map("
                             "s => getComputedStyle(s).backgroundColor)")
        got = np.array([[int(v) for v in c[c.index("(") + 1:c.index(")")].split(",")[:3]] for c in styles])
        q = np.frombuffer(__import__("base64").b64decode(data["values"]), np.uint8)
        q = q.reshape(2, len(signals), 6, len(TEXT))[first["layer"], 0, first["unit"]]
        a = np.minimum(1, np.abs(q / 127.5 - 1))
        pos = q / 127.5 - 1 >= 0
        want = np.where(pos[:, None], np.stack([255 + 0 * a, 255 - 210 * a, 255 - 210 * a], 1),
                        np.stack([255 - 215 * a, 255 - 165 * a, 255 + 0 * a], 1))
        assert np.abs(got - want).max() <= 1 and np.ptp(got) > 20  # and not all one colour
        assert coloured(br.screenshot()) > 0


def test_errors_are_clear(tmp_path, capsys):
    text = tmp_path / "t.txt"
    text.write_text(TEXT)
    with pytest.raises(SystemExit, match="is not a file"):
        cli.main(["inspect", "--checkpoint", str(tmp_path / "none.npz"), "--text", str(text), "--out", str(tmp_path)])
    ck = planted(str(tmp_path / "p.npz"))
    with pytest.raises(SystemExit, match="--text .* is not a readable file"):
        cli.main(["inspect", "--checkpoint", ck, "--text", str(tmp_path / "missing.txt"), "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="--unit 4 is out of range: the layers have 4 units, 0..3"):
        cli.main(["inspect", "--checkpoint", ck, "--text", str(text), "--unit", "4", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match=r"--layer 1 is out of range: the model has 1 layer\(s\)"):
        cli.main(["inspect", "--checkpoint", ck, "--text", str(text), "--layer", "1", "--out", str(tmp_path)])
    inspect.MAX_PAGE_BYTES, real = 2000, inspect.MAX_PAGE_BYTES  # 4 units × 5 signals × 4/3 bytes per character
    try:
        with pytest.raises(SystemExit, match="would hold 0 MB of activations, more than a browser handles well; use "
                           "--chars 74 or fewer"):
            cli.main(["inspect", "--checkpoint", ck, "--text", str(text), "--out", str(tmp_path)])
    finally:
        inspect.MAX_PAGE_BYTES = real
    other = tmp_path / "other.txt"
    other.write_text("\u00e9\u00e8\u00ea")
    with pytest.raises(SystemExit, match="the text has 0 characters the model knows"):
        cli.main(["inspect", "--checkpoint", ck, "--text", str(other), "--out", str(tmp_path)])
    (tmp_path / "bad.npz").write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit, match="pylstm inspect: "):
        cli.main(["inspect", "--checkpoint", str(tmp_path / "bad.npz"), "--text", str(text), "--out", str(tmp_path)])
    assert not os.path.exists(tmp_path / "inspect.html")  # nothing was written by the failed calls
    assert not os.path.exists("pylstm-out/inspect.html") or os.path.getmtime("pylstm-out/inspect.html") < START
