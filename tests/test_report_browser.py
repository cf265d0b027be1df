"""The report in a real browser: headless Chromium loads it, every image decodes, the console stays clean.

Chromium is driven through the DevTools protocol over `--remote-debugging-pipe` (file descriptors 3
and 4, NUL-separated JSON, as Playwright does): no extra Python package and no network port.
Chromium is part of the test environment (`make browser` installs Debian's package), so a missing
browser fails the test rather than skipping it.
"""
from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-extensions", "--hide-scrollbars", "--remote-debugging-pipe",
]
# Chromium reads DevTools commands on fd 3 and writes replies on fd 4.
WIRE_PIPES = ("import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
              "os.execv(sys.argv[3], sys.argv[3:])")
# Collects what the page reports once loaded: every <img> with its decoded size.
IMAGES_JS = """JSON.stringify(Array.from(document.images).map(img => ({
    src: img.getAttribute('src').slice(0, 30), complete: img.complete,
    width: img.naturalWidth, height: img.naturalHeight, alt: img.alt})))"""


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    if os.path.exists("/usr/bin/chromium"):
        return "/usr/bin/chromium"
    pytest.fail("Chromium is not installed: run `make browser` (Debian: apt-get install chromium)")


def _high_fd(fd: int) -> int:
    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return high


class Browser:
    """A minimal DevTools-protocol client for one headless Chromium over pipes."""

    def __init__(self, profile: Path, timeout: float = 60.0) -> None:
        self.timeout = timeout
        # A small Python trampoline moves the pipe ends to fds 3 and 4 and execs Chromium (no
        # preexec_fn: the test process has threads). The ends are numbered 10 and up first, so that
        # moving one onto 3 or 4 can never clobber the other.
        to_chrome_r, self._to_chrome = (_high_fd(fd) for fd in os.pipe())
        self._from_chrome, from_chrome_w = (_high_fd(fd) for fd in os.pipe())
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WIRE_PIPES, str(to_chrome_r), str(from_chrome_w), chromium_binary(),
             *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(to_chrome_r, from_chrome_w),
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ protocol
    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        for event in self.events:
            if event.get("method") == method:
                return event
        while True:
            event = self._receive()
            self.events.append(event)
            if event.get("method") == method:
                return event

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"Chromium sent nothing for {self.timeout:.0f} s")
            ready, _, _ = select.select([self._from_chrome], [], [], left)
            if ready:
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError(f"Chromium closed the pipe (exit code {self.proc.poll()})")
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # ------------------------------------------------------------------ page
    def open(self, url: str) -> str:
        """Open `url` in a new tab, wait for its load event; returns the session id."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired")
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session=session)
        return result["result"].get("value")

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (e.g. a resource that failed to load)."""
        errors = []
        for e in self.events:
            method, params = e.get("method"), e.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                errors.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                errors.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                errors.append("log: " + params["entry"].get("text", ""))
        return errors

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def load_in_chromium(page: Path, profile: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """(images with their natural sizes, console errors) of `page` once loaded in headless Chromium."""
    browser = Browser(profile)
    try:
        session = browser.open(page.resolve().as_uri())
        images = json.loads(browser.evaluate(session, IMAGES_JS))
        time.sleep(0.2)  # let late console messages arrive
        browser.evaluate(session, "1")
        return images, browser.console_errors()
    finally:
        browser.close()


# ------------------------------------------------------------------------------------ tests
def test_the_checker_sees_broken_images_and_console_errors(tmp_path: Path) -> None:
    """The harness itself: a page with a broken image, a missing file and a console error is caught."""
    from onnxplain.engine.render.figures import render_confusion

    png = render_confusion(np.eye(2), tmp_path / "ok.png")
    page = tmp_path / "bad.html"
    page.write_text(
        "<!doctype html><html><head><link rel='icon' href='data:,'></head><body>"
        f"<img src='{png.name}'><img src='data:image/png;base64,iVBORw0KGgoAAAA='><img src='missing.png'>"
        "<script>console.error('boom')</script></body></html>", encoding="utf-8")
    images, errors = load_in_chromium(page, tmp_path / "profile")
    assert [img["width"] > 0 for img in images] == [True, False, False], images
    assert any("boom" in e for e in errors), errors
    assert any("missing.png" in e or "ERR_FILE_NOT_FOUND" in e or "Failed to load" in e for e in errors), errors


def test_report_loads_in_chromium_with_every_image(tiny_report: Path, tmp_path: Path) -> None:
    images, errors = load_in_chromium(tiny_report, tmp_path / "profile")
    numbers = json.loads((tiny_report.parent / "report.json").read_text())
    expected = sum(len(s["figures"]) for s in numbers["sections"].values())
    assert expected >= 10
    assert len(images) == expected
    broken = [img for img in images if not (img["complete"] and img["width"] > 0 and img["height"] > 0)]
    assert not broken, broken
    assert errors == []
