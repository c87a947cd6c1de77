"""Drive headless Chromium from a test with the standard library only: the DevTools protocol over
--remote-debugging-pipe (JSON messages ended by a NUL byte; Chromium reads fd 3 and writes fd 4), so no websocket
client and no browser-automation package are needed."""

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time

CHROMIUM_CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser']


def find_chromium():
    """Path of a system Chromium, or None."""
    for path in CHROMIUM_CANDIDATES + [shutil.which('chromium') or '', shutil.which('chromium-browser') or '']:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _move_above_9(fd):
    """A copy of fd numbered 10 or more (close-on-exec, as os.pipe's); the original is closed."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class ChromiumPipe:
    """A headless Chromium process and one page in it. Use as a context manager."""

    def __init__(self, binary, user_data_dir, timeout=60.0):
        self.timeout = timeout
        self.next_id = 0
        self.buffer = b''
        to_browser_r, self.to_browser = os.pipe()
        self.from_browser, from_browser_w = os.pipe()
        # Move the child's ends above 9, so that renumbering them to 3 and 4 below cannot clobber one another.
        to_browser_r, from_browser_w = (_move_above_9(fd) for fd in (to_browser_r, from_browser_w))
        args = [binary, '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
                '--disable-component-update', '--disable-sync', '--no-first-run', '--no-default-browser-check',
                f'--user-data-dir={user_data_dir}', '--remote-debugging-pipe', '--window-size=1100,700', 'about:blank']
        # A small Python trampoline renumbers our pipe ends to the fds Chromium expects (3 in, 4 out), then becomes
        # Chromium. (Not a shell: dash cannot name fds above 9; not preexec_fn: unsafe with the server's threads.)
        trampoline = ('import os, sys; r, w = int(sys.argv[1]), int(sys.argv[2]); os.dup2(r, 3); os.dup2(w, 4); '
                      'os.close(r); os.close(w); os.execv(sys.argv[3], sys.argv[3:])')
        command = [sys.executable, '-c', trampoline, str(to_browser_r), str(from_browser_w)] + args
        self.process = subprocess.Popen(command, pass_fds=(to_browser_r, from_browser_w),
                                        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        os.close(to_browser_r)
        os.close(from_browser_w)
        self.session_id = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        try:
            self.send('Browser.close', session=False)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for fd in (self.to_browser, self.from_browser):
            try:
                os.close(fd)
            except OSError:
                pass

    def _read_message(self, deadline):
        while b'\0' not in self.buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError('Chromium did not answer in time')
            ready, _, _ = select.select([self.from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self.from_browser, 1 << 20)
                if not chunk:
                    raise RuntimeError(f'Chromium closed the pipe (exit code {self.process.poll()})')
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b'\0', 1)
        return json.loads(message)

    def send(self, method, params=None, session=True):
        """One DevTools command; returns its result (events in between are dropped). session=True sends it to the
        page opened by open()."""
        self.next_id += 1
        message = dict(id=self.next_id, method=method, params=params or {})
        if session and self.session_id is not None:
            message['sessionId'] = self.session_id
        os.write(self.to_browser, json.dumps(message).encode() + b'\0')
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._read_message(deadline)
            if reply.get('id') == self.next_id:
                if 'error' in reply:
                    raise RuntimeError(f'{method}: {reply["error"]}')
                return reply.get('result', {})

    def open(self, url):
        """Open url in a new page and attach to it (later commands go to that page)."""
        target = self.send('Target.createTarget', dict(url=url), session=False)
        self.session_id = self.send('Target.attachToTarget', dict(targetId=target['targetId'], flatten=True),
                                    session=False)['sessionId']

    def evaluate(self, expression):
        """Value of a JavaScript expression in the page (promises are awaited)."""
        result = self.send('Runtime.evaluate', dict(expression=expression, returnByValue=True, awaitPromise=True))
        if 'exceptionDetails' in result:
            raise RuntimeError(f'page script failed: {result["exceptionDetails"]}')
        return result['result'].get('value')

    def wait_for(self, expression, timeout=60.0):
        """Poll a JavaScript expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise TimeoutError(f'page never satisfied {expression!r}')

    def press_key(self, key, code, key_code):
        """A real key press (keyDown + keyUp) on the focused element."""
        for kind in ('keyDown', 'keyUp'):
            self.send('Input.dispatchKeyEvent', dict(type=kind, key=key, code=code, windowsVirtualKeyCode=key_code))

    def screenshot(self):
        """PNG bytes of the page."""
        return base64.b64decode(self.send('Page.captureScreenshot', dict(format='png'))['data'])
