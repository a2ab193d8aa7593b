"""The published site in headless Chromium: opened as a file it draws its graphs; served over
http it keeps asv's fetches."""
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from test_site import publish
from test_site_history import GPU_MACHINE, N, SUITE, git_history, history_value, write_results


# The site opened in a browser -------------------------------------------------------------------

def chromium_binary():
    return next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)


# What a double-click gives: none of the flags that let a file:// page read files by XHR
# (--allow-file-access-from-files, --disable-web-security).  These only keep a headless run
# quiet, offline and alone (a fresh --user-data-dir each time).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,900"]
# The grid, a graph, the list and the regressions page: each reads other JSON files of the site.
VIEWS = {"grid": "", "graph": "#bench.Stages.track_mfu", "list": "#/summarylist", "regressions": "#/regressions"}


def browse(url: str, scratch: Path, *output) -> str:
    """Chromium's stdout for url, once the page has loaded what it asks for.

    --virtual-time-budget lets the page run 10 s of its own time (timers, loads) and skips the
    idle waits, so the DOM dumped or the screenshot taken is the page as a reader sees it.
    """
    assert not {"--allow-file-access-from-files", "--disable-web-security"} & set(CHROMIUM_FLAGS)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=scratch)
    done = subprocess.run([chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           "--virtual-time-budget=10000", *output, url], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def text_of(dom: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", dom))


def assert_drawn(doms: dict, commits: list) -> None:
    """The views of the crafted history, drawn from its data, as asv draws them over http."""
    for view, dom in doms.items():
        # asv's modal when a fetch failed: what a file:// page showed before X.json.js
        assert "Error fetching content" not in dom, view
    # grid: a flot plot in each benchmark's thumbnail (made only once its summary JSON came)
    for name in SUITE:
        thumbnail = re.search(rf'id="summarygrid-{re.escape(name)}"[^>]*>(.*?)</div>', doms["grid"])
        assert thumbnail and '<canvas class="flot-base"' in thumbnail.group(1), name
    # graph: the legend names the series drawn, the x axis the commits of the history (index.json)
    assert re.findall(r'class="legendLabel">([^<]*)<', doms["graph"]) == ["n_gpus-1; stage-dnabert",
                                                                        "n_gpus-1; stage-esm2"]
    ticks = re.findall(r'class="flot-tick-label[^"]*"[^>]*>([^<]*)<', doms["graph"])
    assert commits[0][:7] in ticks and commits[-1][:7] in ticks
    # list: rows with the last values of the crafted history (graphs/**/summary.json)
    listed = text_of(doms["list"])
    assert "bench.Stages.track_mfu ('dnabert', 1) 0.320 fraction" in listed
    assert "bench.Stages.track_throughput ('esm2', 1) 70.0 sequences/s" in listed
    # regressions: the three of regressions.json
    found = text_of(doms["regressions"])
    for entry in ("bench.Stages.track_mfu('dnabert', 1)", "bench.Stages.track_throughput('esm2', 1)",
                  "bench.Predict.time_predict(1, False)"):
        assert entry in found


@pytest.fixture(scope="module")
def site_to_browse(tmp_path_factory):
    if chromium_binary() is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the site is not opened in a browser")
    tmp_path = tmp_path_factory.mktemp("browse")
    commits = git_history(tmp_path / "repo", N)
    write_results(tmp_path / "results", GPU_MACHINE, list(enumerate(commits)), history_value)
    code, site = publish(tmp_path, "--results", str(tmp_path / "results"), "--repo", str(tmp_path / "repo"),
                         "--local", str(tmp_path / "none"))
    assert code == 0
    return site, commits, tmp_path


def test_the_site_opened_as_a_file_draws_its_graphs(site_to_browse):
    """A double-click on index.html: Chromium refuses XHR to file:// pages, so asv's own pages
    showed "Error fetching content" and no graph; the site's X.json.js load as scripts instead."""
    site, commits, tmp_path = site_to_browse
    index = (site / "index.html").as_uri()
    assert_drawn({view: browse(index + anchor, tmp_path, "--dump-dom") for view, anchor in VIEWS.items()}, commits)

    # and the graph's lines are on the screen: pixels of asv's line colours in the plot
    Image = pytest.importorskip("PIL.Image")
    browse(index + VIEWS["graph"], tmp_path, f"--screenshot={tmp_path / 'graph.png'}")
    shot = Image.open(tmp_path / "graph.png").convert("RGB")
    plot = shot.crop((220, 120, shot.width, shot.height))  # right of the side panel, below the legend
    # asv's blue and red are saturated; the axes, grid lines and labels are grey
    coloured = sum(plot.convert("HSV").getchannel("S").histogram()[128:])
    assert coloured > 300, f"{coloured} coloured pixels in the plot: no lines drawn"


def test_the_site_served_over_http_still_fetches_its_json(site_to_browse):
    """asv preview or any web server: the pages keep asv's XHR of the JSON files, not the scripts."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    site, commits, tmp_path = site_to_browse
    asked = []

    class Handler(SimpleHTTPRequestHandler):
        def log_message(self, format, *args):
            asked.append(self.path.split("?")[0])

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        index = f"http://127.0.0.1:{server.server_address[1]}/index.html"
        doms = {view: browse(index + anchor, tmp_path, "--dump-dom") for view, anchor in VIEWS.items()}
    finally:
        server.shutdown()
        server.server_close()
    assert_drawn(doms, commits)
    assert {"/index.json", "/info.json", "/regressions.json"} <= set(asked)
    assert [p for p in asked if p.startswith("/graphs/") and p.endswith(".json")]
    assert not [p for p in asked if p.endswith(".json.js")]
