"""A page as a reader's browser shows it: headless Chromium (Debian's `chromium`) loads it, runs its scripts and
gives back the DOM; `hovered` moves the mouse over every point of every interactive figure and reads the labels."""

import html
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="needs Debian's chromium (.ci/run installs it)")

# hovers every point that has a value, as a mouse would, and keeps the label plotly shows, in <body data-hovered>:
# figure id -> [[trace name, point index, label text], ...]; and clicks the first legend entry of each figure,
# keeping what that trace's `visible` became (data-toggled: figure id -> value)
HOVER = """<script>
// plotly draws one hover per 50 ms, and acts on a click on a legend entry once no second click came (300 ms, and then some)
const pause = (ms = 60) => new Promise((done) => setTimeout(done, ms));
window.addEventListener('load', async () => { const hovered = {}, toggled = {};
  for (const gd of document.querySelectorAll('.plotly-graph-div')) {
    hovered[gd.id] = [];
    for (const [curveNumber, trace] of gd.data.entries()) {
      for (const [i, x] of (trace.x || []).entries()) {
        if (x === null || trace.y[i] === null) continue;
        Plotly.Fx.hover(gd, [{curveNumber, pointNumber: i}], (trace.xaxis || 'x') + (trace.yaxis || 'y'));
        await pause();
        hovered[gd.id].push([trace.name, i, gd.querySelector('.hoverlayer').textContent]);
      }
    }
    Plotly.Fx.unhover(gd);
    const entry = gd.querySelector('.legend .traces .legendtoggle');
    if (entry) {
      const box = entry.getBoundingClientRect(), at = {bubbles: true, clientX: box.x + 2, clientY: box.y + 2};
      entry.dispatchEvent(new MouseEvent('mousedown', at));
      entry.dispatchEvent(new MouseEvent('mouseup', at));
      await pause(1000);
      toggled[gd.id] = String(gd.data[0].visible);
    }
  }
  document.body.dataset.hovered = JSON.stringify(hovered);
  document.body.dataset.toggled = JSON.stringify(toggled);
});
</script>"""


def browse(page: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """The page's DOM after Chromium, with no network, loaded it and ran its scripts (stdout); its console
    (stderr)."""
    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--host-resolver-rules=MAP * ~NOTFOUND",  # offline: a page that fetched anything would break f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=30000", "--enable-logging=stderr", "--v=0", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom


class Body(HTMLParser):
    """The attributes of a DOM's <body>."""

    def __init__(self):
        super().__init__()
        self.attrs = {}

    def handle_starttag(self, tag, attrs):
        if tag == "body":
            self.attrs = dict(attrs)


def hovered(page: Path, tmp_path: Path) -> tuple[dict, dict, dict]:
    """(figure id -> [[trace, point, label]], figure id -> its first trace's visibility after a legend click, <body>
    attributes) of a copy of `page` with `HOVER` added."""
    probe = tmp_path / "hovered.html"
    probe.write_text(page.read_text().replace("</body>", HOVER + "</body>"))
    body = Body()
    body.feed(browse(probe, tmp_path).stdout)
    return (json.loads(html.unescape(body.attrs["data-hovered"])), json.loads(html.unescape(body.attrs["data-toggled"])),
            body.attrs)
