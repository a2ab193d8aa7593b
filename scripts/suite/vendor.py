"""Make a site of `asv publish` work without internet access.

asv's pages load jQuery, flot, bootstrap and a few plugins from public CDNs; on an offline GPU
cluster (or a sandbox) the page then shows only "Can not determine continental origin of
swallow".  This installs the same libraries from the npm registry, at the versions pinned in
scripts/site/package-lock.json, into a cache folder (once: `npm ci` runs again only when the
lock file changes), copies them into the site's vendor/ and points the pages at the copies.
Running it again on the same site changes nothing.  scripts/publish_site.py calls it, and
scripts/offline_site.py alone.
"""
from __future__ import annotations

import fcntl
import filecmp
import re
import shutil
import subprocess
from pathlib import Path

from suite import ROOT

LOCK = ROOT / "scripts" / "site"
# CDN file name -> path inside node_modules
LIBRARIES = {
    "jquery-3.3.1.min.js": "jquery/dist/jquery.min.js",
    "jquery.flot.min.js": "flot/jquery.flot.js",
    "jquery.flot.time.min.js": "flot/jquery.flot.time.js",
    "jquery.flot.selection.min.js": "flot/jquery.flot.selection.js",
    "jquery.flot.categories.min.js": "flot/jquery.flot.categories.js",
    "jquery.flot.orderBars.js": "flot-orderbars/js/jquery.flot.orderBars.js",
    "stupidtable.min.js": "stupid-table-plugin/stupidtable.min.js",
    "md5.min.js": "blueimp-md5/js/md5.min.js",
    "bootstrap.min.js": "bootstrap/dist/js/bootstrap.min.js",
    "bootstrap.min.css": "bootstrap/dist/css/bootstrap.min.css",
}
FONTS = "bootstrap/dist/fonts"  # bootstrap.min.css asks for ../fonts/glyphicons-*
CDN = re.compile(r'(src|href)="https?://[^"]*/([^/"]+\.(?:js|css))"')
TAG = re.compile(r"<(?:script|link)\b[^>]*>")
# The local copies are other builds of the same versions, so the CDN's integrity hashes cannot match.
INTEGRITY = re.compile(r'\s(?:integrity|crossorigin|referrerpolicy)(?:="[^"]*")?')


class VendorError(Exception):
    """The libraries could not be installed or the site is not one of asv's (exit 2)."""


def node_modules(cache: Path) -> Path:
    """The cache's node_modules, installed from the pinned lock file unless it already is."""
    cache.mkdir(parents=True, exist_ok=True)
    # Two publishes at once (test workers, two maintainers) must not run `npm ci` into one folder
    # together: npm removes node_modules first, and the other then finds it half gone.
    with open(cache / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _installed(cache)


def _installed(cache: Path) -> Path:
    installed = cache / "node_modules" / ".package-lock.json"
    current = (cache / "package-lock.json").is_file() and filecmp.cmp(LOCK / "package-lock.json",
                                                                       cache / "package-lock.json", shallow=False)
    if not (current and installed.is_file()):
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(LOCK / name, cache / name)
        npm = shutil.which("npm")
        if npm is None:
            raise VendorError("npm not found: the site's JavaScript libraries come from the npm registry "
                              "(install Node.js with npm)")
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", str(cache)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            (cache / "package-lock.json").unlink(missing_ok=True)  # so that the next run tries again
            raise VendorError(f"npm ci in {cache} failed: {done.stderr.strip()[-800:]}")
    missing = [p for p in LIBRARIES.values() if not (cache / "node_modules" / p).is_file()]
    if missing:
        raise VendorError(f"{cache}/node_modules lacks {', '.join(missing)}")
    return cache / "node_modules"


def vendor(html_dir: Path, cache: Path) -> list:
    """Copy the libraries into html_dir/vendor and rewrite its pages; the external references left."""
    pages = sorted(html_dir.glob("*.html"))
    if not (html_dir / "index.html").is_file():
        raise VendorError(f"{html_dir}: no index.html (not a site of asv publish)")
    modules = node_modules(cache)
    (html_dir / "vendor").mkdir(exist_ok=True)
    for name, src in LIBRARIES.items():
        shutil.copyfile(modules / src, html_dir / "vendor" / name)
    shutil.copytree(modules / FONTS, html_dir / "fonts", dirs_exist_ok=True)

    def local(tag: re.Match) -> str:
        url = CDN.search(tag.group(0))
        if not url or url.group(2) not in LIBRARIES:
            return tag.group(0)
        text = tag.group(0).replace(url.group(0), f'{url.group(1)}="vendor/{url.group(2)}"')
        return INTEGRITY.sub("", text)

    for page in pages:
        text = page.read_text()
        new = TAG.sub(local, text)
        if new != text:
            page.write_text(new)
    return [m.group(0) for p in pages for m in CDN.finditer(p.read_text())]
