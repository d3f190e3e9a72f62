#!/usr/bin/env python3
"""The step-through page in a real browser: headless Chromium driven by
chromedriver over the W3C WebDriver protocol (plain HTTP + JSON, so the
standard library is enough). It writes the chain example's page, presses
keys as a reader would, and checks the highlighted op and the panel's text
at backward steps 0, 3 and the last, plus the forward walk, a button, the
slider, and a page opened at #step=3.

usage: browser_html.py CHAIN_EXECUTABLE [SCREENSHOT.png]

Exit status 77 (meson's "skipped") when Chromium or chromedriver is absent.
CHROMIUM and CHROMEDRIVER name other binaries.
"""
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SKIP = 77
KEYS = {'Right': '\ue014', 'Left': '\ue012', 'Home': '\ue011', 'End': '\ue010'}


def find(env, names):
    if os.environ.get(env):
        return shutil.which(os.environ[env])
    for n in names:
        if shutil.which(n):
            return shutil.which(n)
    return None


class Driver:
    """A chromedriver process and one browser session."""

    def __init__(self, chromedriver, chromium, profile):
        with socket.socket() as s:
            s.bind(('127.0.0.1', 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([chromedriver, '--port=%d' % self.port],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.base = 'http://127.0.0.1:%d' % self.port
        try:
            self.start(chromium, profile)
        except BaseException:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            raise

    def start(self, chromium, profile):
        for _ in range(100):
            try:
                if self.call('GET', '/status')['ready']:
                    break
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError('chromedriver did not start')
        args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
                '--disable-background-networking', '--disable-component-update',
                '--disable-sync', '--no-first-run', '--window-size=1280,900',
                '--user-data-dir=' + profile]
        caps = {'capabilities': {'alwaysMatch': {
            'browserName': 'chrome',
            'goog:chromeOptions': {'binary': chromium, 'args': args}}}}
        self.session = '/session/' + self.call('POST', '/session', caps)['sessionId']

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={'Content-Type': 'application/json'})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())['value']
        except urllib.error.HTTPError as e:
            raise RuntimeError('%s %s: %s' % (method, path, e.read().decode()[:500]))

    def s(self, method, path, body=None):
        return self.call(method, self.session + path, body)

    def go(self, url):
        self.s('POST', '/url', {'url': url})

    def press(self, key, times=1):
        value = KEYS.get(key, key)
        acts = []
        for _ in range(times):
            acts += [{'type': 'keyDown', 'value': value}, {'type': 'keyUp', 'value': value}]
        self.s('POST', '/actions', {'actions': [{'type': 'key', 'id': 'keyboard', 'actions': acts}]})

    def click(self, css):
        el = self.s('POST', '/element', {'using': 'css selector', 'value': css})
        self.s('POST', '/element/%s/click' % list(el.values())[0], {})

    def state(self):
        """What a reader sees: the step, the highlighted op, the panel, each tensor's grad."""
        return self.s('POST', '/execute/sync', {'args': [], 'script': '''
            var now = document.querySelectorAll('svg .op.now');
            var q = function (s) { return document.querySelector(s); };
            var grads = {};
            document.querySelectorAll('svg .tensor').forEach(function (g) {
              var t = g.querySelector('.grad');
              grads[g.querySelector('.head').firstChild.textContent] =
                  t ? t.textContent.replace(/^grad /, '') : null;
            });
            return {phase: document.body.dataset.phase, step: +document.body.dataset.step,
                    where: q('#where').textContent, hash: location.hash,
                    ops: now.length, op: now.length ? now[0].dataset.name : null,
                    opIndex: now.length ? +now[0].dataset.index : -1,
                    nowTensor: Array.from(document.querySelectorAll('svg .tensor.now'))
                                 .map(function (g) { return g.querySelector('.head').firstChild.textContent; }),
                    title: q('#step-title').textContent,
                    lines: Array.from(document.querySelectorAll('#lines li')).map(function (l) { return l.textContent; }),
                    grads: grads, tensors: document.querySelectorAll('svg .tensor').length,
                    slider: +q('#slider').value, sliderMax: +q('#slider').max};'''})

    def screenshot(self, path):
        import base64
        with open(path, 'wb') as f:
            f.write(base64.b64decode(self.s('GET', '/screenshot')))

    def close(self):
        try:
            self.s('DELETE', '')
        finally:
            self.proc.terminate()
            self.proc.wait(timeout=10)


failures = []


def check(cond, what, state):
    print(('ok   ' if cond else 'FAIL ') + what)
    if not cond:
        failures.append(what)
        print('     state: ' + json.dumps(state, ensure_ascii=False))


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    chromium = find('CHROMIUM', ['chromium', 'chromium-browser', 'google-chrome'])
    chromedriver = find('CHROMEDRIVER', ['chromedriver'])
    if not chromium or not chromedriver:
        print('SKIP: the browser test needs Chromium and chromedriver (Debian: apt-get install '
              'chromium chromium-driver); found chromium=%s chromedriver=%s'
              % (chromium, chromedriver))
        return SKIP
    with tempfile.TemporaryDirectory(prefix='ag_browser_') as tmp:
        page = os.path.join(tmp, 'chain.html')
        out = subprocess.run([sys.argv[1], '--steps', '0', '--html', page],
                             capture_output=True, text=True)
        if out.returncode != 0:
            print('FAIL: chain --html: ' + out.stderr)
            return 1
        url = 'file://' + page
        d = Driver(chromedriver, chromium, os.path.join(tmp, 'profile'))
        try:
            d.go(url)
            st = d.state()
            check(st['phase'] == 'forward' and st['step'] == 0 and st['ops'] == 0,
                  'opens at forward step 0, no op highlighted', st)
            check(st['tensors'] == 10 and st['sliderMax'] == 6 + 6 - 1,
                  '10 tensors drawn; the slider spans 6 forward and 6 backward frames', st)
            d.press('Right')
            st = d.state()
            check(st['op'] == 'mul' and st['opIndex'] == 0 and
                  'B = ab \u00d7 A = 0.5 \u00d7 3 = 1.5' in st['lines'],
                  'Right: forward step 1 highlights the first mul, B = ab x A = 0.5 x 3 = 1.5', st)

            d.press('b')   # the start of the backward pass
            st = d.state()
            check(st['phase'] == 'backward' and st['step'] == 0 and st['hash'] == '#step=0',
                  'B: backward step 0, address #step=0', st)
            check(st['ops'] == 0 and st['nowTensor'] == ['L'], 'step 0: no op, the output L highlighted', st)
            check(st['title'] == 'Backward step 0 of 5: the seed' and
                  'grad(L) = \u2202L/\u2202L = 1' in st['lines'],
                  'step 0 panel: the seed grad(L) = dL/dL = 1', st)
            check(st['grads']['L'] == '1 (seed)' and st['grads']['C'] == '?' and st['grads']['ab'] == '?',
                  "step 0: L's gradient is the seed, the others read ?", st)

            d.press('Right', 3)
            st = d.state()
            check(st['step'] == 3 and st['where'] == 'backward step 3 of 5', 'Right x3: backward step 3', st)
            check(st['ops'] == 1 and st['op'] == 'mul' and st['opIndex'] == 2,
                  'step 3 highlights the mul that makes D (op 2)', st)
            check(st['title'] == 'Backward step 3 of 5: mul \u2192 D passes grad(D) = -25 back to its inputs',
                  'step 3 title: mul -> D passes grad(D) = -25 back', st)
            check('grad(C) += grad(D) \u00d7 \u2202D/\u2202C = (-25) \u00d7 2 = -50' in st['lines'],
                  'step 3 panel: grad(C) += grad(D) x dD/dC = (-25) x 2 = -50', st)
            check('grad(cd) += grad(D) \u00d7 \u2202D/\u2202cd = (-25) \u00d7 2.25 = -56.25' in st['lines'],
                  'step 3 panel: grad(cd) += grad(D) x dD/dcd = (-25) x 2.25 = -56.25', st)
            check(st['grads']['C'] == '-50' and st['grads']['cd'] == '-56.25' and
                  st['grads']['B'] == '?' and st['grads']['D'] == '-25',
                  'step 3: grad(C) = -50, grad(cd) = -56.25 appear; grad(B) still ?', st)

            d.press('End')
            st = d.state()
            check(st['step'] == 5 and st['op'] == 'mul' and st['opIndex'] == 0,
                  'End: the last step (5) replays the first mul, which makes B', st)
            check('grad(ab) += grad(B) \u00d7 \u2202B/\u2202ab = (-75) \u00d7 3 = -225' in st['lines'],
                  'last step panel: grad(ab) += grad(B) x dB/dab = (-75) x 3 = -225', st)
            check(any(l.startswith('Every gradient is known now: grad(ab) = -225, grad(bc) = -75, '
                                   'grad(cd) = -56.25') for l in st['lines']),
                  'last step panel lists every gradient', st)
            check('?' not in st['grads'].values() and st['grads']['A'] is None,
                  'last step: no gradient reads ?, the constant A has none', st)

            d.press('Left')
            st = d.state()
            check(st['step'] == 4 and st['grads']['ab'] == '?', 'Left: back to step 4, grad(ab) unknown again', st)
            d.click('#next')
            st = d.state()
            check(st['step'] == 5, 'the next button: step 5', st)
            d.press('Home')
            st = d.state()
            check(st['phase'] == 'forward' and st['step'] == 0, 'Home: forward step 0', st)

            # The slider: a click in its middle jumps there; with it focused,
            # the arrow keys move it (the browser's own handling) and the page follows.
            def frame(st):
                return st['step'] + (6 if st['phase'] == 'backward' else 0)
            d.click('#slider')
            st = d.state()
            check(4 <= st['slider'] <= 7 and frame(st) == st['slider'],
                  'a click on the middle of the slider shows that frame', st)
            before = st['slider']
            d.press('Right')
            st = d.state()
            check(st['slider'] == before + 1 and frame(st) == before + 1,
                  'Right on the focused slider moves one frame', st)

            d.go(url + '#step=3')
            st = d.state()
            check(st['phase'] == 'backward' and st['step'] == 3 and st['opIndex'] == 2,
                  'a page opened at #step=3 shows backward step 3', st)
            if len(sys.argv) > 2:
                d.screenshot(sys.argv[2])
        finally:
            d.close()
    print('%d failure(s)' % len(failures))
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(main())
