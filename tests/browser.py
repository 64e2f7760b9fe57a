"""Test helpers for pages: headless Chromium driven through the DevTools protocol over a pipe (no network, no
websocket), and a small PNG decoder so that screenshots can be checked without Pillow."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import zlib

import numpy as np


def chromium():
    """The path of a Chromium (or Chrome) executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """One headless Chromium with one page, spoken to over --remote-debugging-pipe: the browser reads commands from
    its fd 3 and writes replies and events to its fd 4, each a JSON text ended by a NUL byte."""

    def __init__(self, width=1100, height=900, timeout=60):
        exe = chromium()
        if exe is None:
            raise RuntimeError("no chromium on PATH")
        to_browser, self._write = os.pipe()
        self._read, from_browser = os.pipe()

        def on_fds():  # in the child, before exec: the pipe ends become fds 3 and 4
            # Copies first: a pipe end may already be fd 3 or 4, and dup2 onto itself would keep it close-on-exec.
            src, dst = os.dup(to_browser), os.dup(from_browser)
            os.dup2(src, 3)
            os.dup2(dst, 4)

        # Its own profile folder, and its own process group, so that close() can end the renderers too.
        self._profile = tempfile.TemporaryDirectory(prefix="pylstm-chromium-")
        try:
            self.proc = subprocess.Popen(
                [exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--remote-debugging-pipe",
                 "--no-first-run", "--no-default-browser-check", f"--user-data-dir={self._profile.name}",
                 f"--window-size={width},{height}", "about:blank"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=on_fds,
                close_fds=False, start_new_session=True)
        except BaseException:
            for fd in (to_browser, from_browser, self._write, self._read):
                os.close(fd)
            self._profile.cleanup()
            raise
        os.close(to_browser)  # the browser's ends; ours stay open
        os.close(from_browser)
        self._closed = False
        self._buf = b""
        self._id = 0
        self._events = []
        self.timeout = timeout
        try:
            targets = self.call("Target.getTargets")["targetInfos"]
            page = next(t for t in targets if t["type"] == "page")
            self.session = self.call("Target.attachToTarget", targetId=page["targetId"], flatten=True)["sessionId"]
            self.call("Page.enable", session=True)
        except BaseException:
            self.close()
            raise

    def _message(self, deadline=None):
        import select

        while b"\0" not in self._buf:
            wait = self.timeout if deadline is None else deadline - time.monotonic()
            ready, _, _ = select.select([self._read], [], [], max(wait, 0))
            if not ready:
                raise TimeoutError(f"no answer from chromium within {self.timeout} s")
            chunk = os.read(self._read, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method, session=False, **params):
        """Sends one command (to the page's session when `session`) and returns its result."""
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session
        os.write(self._write, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            m = self._message(deadline)
            if m.get("id") == self._id:
                if "error" in m:
                    raise RuntimeError(f"{method}: {m['error']}")
                return m["result"]
            self._events.append(m)

    def wait_for(self, event):
        deadline = time.monotonic() + self.timeout
        while True:
            for n, m in enumerate(self._events):
                if m.get("method") == event:
                    del self._events[n]
                    return m.get("params", {})
            self._events.append(self._message(deadline))

    def open(self, url):
        self._events.clear()
        self.call("Page.navigate", session=True, url=url)
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression):
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        r = self.call("Runtime.evaluate", session=True, expression=expression, returnByValue=True,
                      awaitPromise=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails']}")
        return r["result"].get("value")

    def screenshot(self):
        """The visible page as an (height, width, 3) uint8 array, after the next two frames have been drawn."""
        self.evaluate("new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        data = base64.b64decode(self.call("Page.captureScreenshot", session=True, format="png")["data"])
        return decode_png(data)

    def close(self):
        if self._closed:
            return
        self._closed = True
        try:
            if self.proc.poll() is None:
                try:
                    self._id += 1
                    os.write(self._write, json.dumps({"id": self._id, "method": "Browser.close"}).encode() + b"\0")
                    self.proc.wait(timeout=10)
                except (OSError, subprocess.TimeoutExpired):
                    pass
            try:  # the renderers and helpers too
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait()
        finally:
            for fd in (self._read, self._write):
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._profile.cleanup()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def decode_png(data):
    """(height, width, 3) uint8 from an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, header = 8, [], None
    while pos < len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + length
    width, height = int.from_bytes(header[:4], "big"), int.from_bytes(header[4:8], "big")
    depth, colour, interlace = header[8], header[9], header[12]
    if depth != 8 or colour not in (2, 6) or interlace:
        raise ValueError(f"unsupported PNG: depth {depth}, colour type {colour}, interlace {interlace}")
    bpp = 3 if colour == 2 else 4
    stride = width * bpp
    raw = zlib.decompress(b"".join(idat))
    out = np.zeros((height, stride), np.uint8)
    prev = np.zeros(stride, np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        row = np.frombuffer(raw, np.uint8, stride, y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            cur = row
        elif kind == 1:  # Sub: a running sum along each channel
            cur = np.cumsum(row.reshape(width, bpp), axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            cur = (row + prev) & 255
        elif kind in (3, 4):  # Average, Paeth: each byte needs the finished byte to its left
            cur = row.copy()
            r, p = cur.tolist(), prev.tolist()
            for i in range(stride):
                a = r[i - bpp] if i >= bpp else 0
                b = p[i]
                if kind == 3:
                    r[i] = (r[i] + ((a + b) >> 1)) & 255
                else:
                    c = p[i - bpp] if i >= bpp else 0
                    pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                    r[i] = (r[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
            cur = np.array(r, np.int32)
        else:
            raise ValueError(f"bad PNG filter {kind} in row {y}")
        out[y] = cur
        prev = cur
    return out.reshape(height, width, bpp)[:, :, :3]
