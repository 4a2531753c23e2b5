"""``cavmae serve``: the page in a real headless Chromium (driven over the DevTools protocol
on a pipe), path traversal, range requests, upload limits and non-local binding.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it); without it the
browser test is skipped, saying so.
"""

import base64
import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
import torch

from processes import free_port, kill_group, subprocess_env
from speechbrain_cavmae.cli import main as cavmae
from test_search import HEADS, tiny_model, write_clip

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class DevTools:
    """A minimal Chrome DevTools protocol client over ``--remote-debugging-pipe``
    (requests on the browser's fd 3, answers and events on its fd 4, NUL-separated)."""

    def __init__(self, binary, profile, extra=()):
        to_browser, self._to_browser = os.pipe()
        self._from_browser, from_browser = os.pipe()

        def wire():  # in the child, before exec: the pipes become fds 3 and 4
            os.dup2(to_browser, 3)
            os.dup2(from_browser, 4)

        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--mute-audio",
                "--remote-debugging-pipe", "--autoplay-policy=no-user-gesture-required",
                "--no-first-run", f"--user-data-dir={profile}", *extra, "about:blank"]
        self.proc = subprocess.Popen(args, preexec_fn=wire, pass_fds=(3, 4),
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        os.close(to_browser)
        os.close(from_browser)
        self._buffer, self._next = b"", 0
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]

    def call(self, method, session=None, **params):
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        while True:
            while b"\0" not in self._buffer:
                chunk = os.read(self._from_browser, 1 << 16)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self._buffer += chunk
            raw, self._buffer = self._buffer.split(b"\0", 1)
            answer = json.loads(raw)
            if answer.get("id") == self._next:
                if "error" in answer:
                    raise RuntimeError(f"{method}: {answer['error']}")
                return answer["result"]

    def page(self, method, **params):
        return self.call(method, session=self.session, **params)

    def js(self, expression):
        result = self.page("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        return result["result"].get("value")

    def wait_for(self, expression, timeout=30):
        deadline = time.time() + timeout
        while time.time() < deadline:
            value = self.js(expression)
            if value:
                return value
            time.sleep(0.1)
        state = self.js("document.body.dataset.state + ': ' + "
                        "document.getElementById('status').textContent")
        raise AssertionError(f"timed out waiting for {expression}; page: {state!r}")

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        finally:
            kill_group(self.proc)
            os.close(self._to_browser)
            os.close(self._from_browser)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A served index of three clips on 127.0.0.1 (uploads under its own TMPDIR)."""
    root = tmp_path_factory.mktemp("serve")
    media = root / "media"
    media.mkdir()
    clips = [write_clip(media / f"clip{k}.mp4", k) for k in range(3)]
    ckpt = root / "model.pth"
    torch.save(tiny_model().state_dict(), ckpt)
    index = root / "index"
    assert cavmae(["index", str(media), "--model", str(ckpt), *HEADS, "--output",
                   str(index)]) == 0
    uploads = root / "tmp"
    uploads.mkdir()
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "speechbrain_cavmae", "serve", str(index), "--port",
         str(port), "--max_upload_mb", "1"],
        env=subprocess_env(TMPDIR=str(uploads)), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while True:
        try:
            urllib.request.urlopen(base + "/api/info", timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                kill_group(proc)
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode()}")
            time.sleep(0.2)
    yield {"base": base, "port": port, "clips": clips, "uploads": uploads, "root": root,
           "index": index}
    kill_group(proc)


def get(server, path, headers=None):
    """Raw GET of ``path`` as written (no client-side normalisation of ``..``)."""
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body, response


@pytest.mark.parametrize("path", [
    "/media/../../../../etc/passwd", "/media/..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/media/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/static/../../../../../etc/passwd",
    "/static/..%2f..%2f..%2f..%2f..%2fetc%2fpasswd", "/static/%2e%2e%2fstore.py",
    "/static/..%5c..%5cstore.py", "/thumb/..%2F..%2Fetc%2Fpasswd", "/media/-1",
    "/media/99999", "/media//etc/passwd", "/etc/passwd", "/media/1/../../../etc/passwd",
])
def test_no_path_outside_the_indexed_files(server, path):
    status, body, _ = get(server, path)
    assert status in (400, 404), (path, status)
    assert b"root:" not in body and b"sqlite" not in body


def test_media_by_id_with_range_requests(server):
    data = open(server["clips"][0], "rb").read()
    status, body, response = get(server, "/media/1", {"Range": "bytes=10-109"})
    assert status == 206 and body == data[10:110]
    assert response.getheader("Content-Range") == f"bytes 10-109/{len(data)}"
    status, body, _ = get(server, "/media/1")
    assert status == 200 and body == data


def post_file(server, name, content, fields):
    """multipart/form-data POST of a query file to /api/search."""
    boundary = "cavmae-test-boundary"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
             .encode() for k, v in fields.items()]
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 .encode() + content + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=60)
    conn.request("POST", "/api/search", body,
                 {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    response = conn.getresponse()
    out = response.status, json.loads(response.read() or b"{}")
    conn.close()
    return out


def test_uploads_are_limited_and_deleted(server):
    clip = server["clips"][1]
    status, answer = post_file(server, "../../evil name.mp4", open(clip, "rb").read(),
                               {"modality": "audio", "top_k": "3"})
    assert status == 200 and answer["hits"][0]["path"] == clip
    status, answer = post_file(server, "big.wav", b"\0" * (1024 * 1024 + 10), {})
    assert status == 413
    status, answer = post_file(server, "notes.txt", b"hello", {})
    assert status == 400 and "unsupported" in answer["error"]
    status, answer = post_file(server, "broken.mp4", b"not a video", {})
    assert status == 400 and "broken.mp4" in answer["error"]
    assert os.listdir(server["uploads"]) == []  # every query file is gone


def test_non_local_binding_is_refused(server, capsys):
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        with pytest.raises(SystemExit) as exc:
            cavmae(["serve", str(server["index"]), "--host", host])
        assert exc.value.code == 2
        assert "--allow_remote" in capsys.readouterr().err


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install "
                    "chromium; .ci/run does it)")
def test_page_runs_a_query_shows_hits_and_plays_one(server, tmp_path):
    browser = DevTools(CHROMIUM, tmp_path / "profile", ["--window-size=1100,1000"])
    try:
        clip = server["clips"][2]
        url = (f"{server['base']}/?path={urllib.request.quote(clip)}&t=1.5&modality=audio"
               "&autoplay=1&muted=1")
        browser.page("Page.navigate", url=url)
        state = browser.wait_for("document.body.dataset.state.startsWith('hits:') && "
                                 "document.body.dataset.state")
        cards = browser.js("[...document.querySelectorAll('.hit')].map(c => "
                           "[+c.dataset.segment, +c.dataset.start, +c.dataset.end, "
                           "c.querySelector('img') !== null])")
        assert state == f"hits:{len(cards)}" and len(cards) >= 3
        files = browser.js("[...document.querySelectorAll('.hit')].map(c => +c.dataset.file)")
        for i, (_, start, end, _) in enumerate(cards):  # distinct moments by default
            assert not any(f == files[i] and s < end and start < e
                           for f, (_, s, e, _) in zip(files[:i], cards[:i]))
        assert all(has_thumb for *_, has_thumb in cards)  # videos: thumbnails
        # the first hit is the query moment itself, and it plays, from its start
        playing = browser.wait_for("document.body.dataset.playing")
        segment, seconds = playing.split("@")
        first, start, end = cards[0][:3]
        assert int(segment) == first and start - 0.1 <= float(seconds) <= end + 0.5
        assert browser.js("document.getElementById('player').src").endswith(
            f"#t={start:.2f},{end:.2f}")
        # a query by upload through the page's own file input: the clip's sight
        browser.js("document.body.dataset.state = 'idle'; "
                   "document.getElementById('modality').value = 'visual'")
        node = browser.page("DOM.querySelector", selector="#file",
                            nodeId=browser.page("DOM.getDocument")["root"]["nodeId"])["nodeId"]
        browser.page("DOM.setFileInputFiles", files=[server["clips"][0]], nodeId=node)
        browser.wait_for("document.body.dataset.state.startsWith('hits:')")
        names = browser.js("[...document.querySelectorAll('.hit .name')].map(n => n.title)")
        assert names[0] == server["clips"][0]
        if os.environ.get("CAVMAE_SCREENSHOT"):  # docs/search.png
            browser.page("Page.navigate", url=url.replace("&muted=1", "") + "&top_k=8")
            browser.wait_for("document.body.dataset.playing", timeout=30)
            time.sleep(1.0)
            shot = browser.page("Page.captureScreenshot", format="png")["data"]
            with open(os.environ["CAVMAE_SCREENSHOT"], "wb") as handle:
                handle.write(base64.b64decode(shot))
    finally:
        browser.close()
