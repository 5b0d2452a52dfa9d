"""Headless Chromium for the tests that look at a page as a reader does (the study explorer, the
documentation site): driven over the DevTools protocol on a pipe (--remote-debugging-pipe: fd 3 in,
fd 4 out, messages ended by NUL), so no port and no websocket library are needed."""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def chromium() -> str | None:
    """Debian's chromium, if installed."""
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def launch(profile: Path) -> Iterator[Browser]:
    """A browser for one test (a fixture's body): in CI (`CI` set; `.ci/run` installs chromium) a
    missing browser fails the test instead of skipping it."""
    path = chromium()
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the browser test: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium installed (Debian: apt install chromium)")
    browser = Browser(path, profile)
    yield browser
    browser.close()


def artefacts_folder(tmp_path: Path) -> Path:
    """Where a browser test saves its screenshots: $CULTURESIM_TEST_ARTEFACTS when set, else `tmp_path`."""
    folder = Path(os.environ.get("CULTURESIM_TEST_ARTEFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Browser:
    """One headless Chromium; `open` a page in a new tab, evaluate JavaScript, take screenshots, and
    list what went wrong on the page."""

    def __init__(self, chromium: str, profile: Path) -> None:
        child_in, self._out = os.pipe()
        self._in, child_out = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", f"--user-data-dir={profile}"]
        self.process = subprocess.Popen(
            ["bash", "-c", f'exec "$0" "$@" 3<&{child_in} 4>&{child_out}', chromium, *flags, "about:blank"],
            pass_fds=(child_in, child_out),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(child_in)
        os.close(child_out)
        self._buffer, self._id, self.events, self.session = b"", 0, [], None

    def send(self, method: str, **params) -> dict:
        self._id += 1
        message = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith("Target."):
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def _read(self, timeout: float = 60) -> dict:
        while b"\0" not in self._buffer:
            if not select.select([self._in], [], [], timeout)[0]:
                raise TimeoutError("Chromium sent nothing for a minute")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed its DevTools pipe")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def open(self, url: str, *, width: int = 1400, height: int = 2000, ready: str | None = None) -> None:
        """A new tab at `url` (the events of earlier pages forgotten), once its load event fired and,
        given `ready`, once that JavaScript condition holds."""
        self.events = []
        target = self.send("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.send(f"{domain}.enable")
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1, mobile=False)
        self.send("Page.navigate", url=url)
        while not any(e.get("method") == "Page.loadEventFired" for e in self.events):
            self.events.append(self._read())
        if ready is not None:
            assert self.wait(ready), f"{url}: {ready} never held"

    def js(self, expression: str):
        result = self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:80]}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def wait(self, condition: str, tries: int = 100) -> bool:
        """Whether `condition` holds within `tries` checks 0.1 s apart."""
        for _ in range(tries):
            if self.js(f"!!({condition})"):
                return True
            self.js("new Promise((done) => setTimeout(done, 100))")
        return False

    def mouse(self, x: float, y: float, *, click: bool) -> None:
        self.send("Input.dispatchMouseEvent", type="mouseMoved", x=x, y=y)
        if click:
            for kind in ("mousePressed", "mouseReleased"):
                self.send("Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1)

    def screenshot(self, path: Path, *, top: int = 0, height: int | None = None) -> None:
        """`height` pixels of the page from `top` (default: down to the end of its content, at most 4,000)."""
        width, bottom = self.js("[window.innerWidth, Math.ceil(document.body.getBoundingClientRect().bottom) + 16]")
        clip = {"x": 0, "y": top, "width": width, "height": height or min(bottom - top, 4000), "scale": 1}
        data = self.send("Page.captureScreenshot", format="png", clip=clip, captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def problems(self, origin: str = "file:") -> list[str]:
        """Console errors, uncaught exceptions, failed loads and any request that leaves `origin`."""
        found = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                found.append(f"console.{params['type']}: {params.get('args')}")
            elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
            elif method == "Network.requestWillBeSent":
                url = params["request"]["url"]
                if not url.startswith((origin, "data:", "blob:", "about:")):
                    found.append(f"network request: {url}")
            elif method == "Network.loadingFailed" and not params.get("canceled"):
                found.append(f"failed load: {params.get('errorText')}")
        return found

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        os.close(self._in)
        os.close(self._out)
