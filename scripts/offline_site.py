#!/usr/bin/env python3
"""Make the site of `asv publish` work without internet access.

asv's pages load jQuery, flot, bootstrap and a few plugins from public CDNs; on an offline
GPU cluster (or a sandbox) the page then shows only "Can not determine continental origin
of swallow".  This copies the same libraries from an npm install into the site and points
the pages at the copies:

    npm install --prefix .asv/vendor jquery@3.3.1 flot@0.8.3 flot-orderbars@1.0.0 \\
        stupid-table-plugin blueimp-md5@2.19.0 bootstrap@3.1.1
    python scripts/offline_site.py .asv/html --node-modules .asv/vendor/node_modules
"""
from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

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
CDN = re.compile(r'(src|href)="https://[^"]*/([^/"]+\.(?:js|css))"')
TAG = re.compile(r"<(?:script|link)\b[^>]*>")
# The local copies are other builds of the same versions, so the CDN's integrity hashes cannot match.
INTEGRITY = re.compile(r'\s(?:integrity|crossorigin|referrerpolicy)(?:="[^"]*")?')


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--node-modules", type=Path, required=True)
    args = ap.parse_args(argv)
    vendor = args.html_dir / "vendor"
    vendor.mkdir(exist_ok=True)
    missing = [p for p in LIBRARIES.values() if not (args.node_modules / p).is_file()]
    if missing:
        print(f"{args.node_modules}: missing {', '.join(missing)} (see the npm install line in --help)",
              file=sys.stderr)
        return 2
    for name, src in LIBRARIES.items():
        shutil.copyfile(args.node_modules / src, vendor / name)

    def local(tag: re.Match) -> str:
        url = CDN.search(tag.group(0))
        if not url or url.group(2) not in LIBRARIES:
            return tag.group(0)
        text = tag.group(0).replace(url.group(0), f'{url.group(1)}="vendor/{url.group(2)}"')
        return INTEGRITY.sub("", text)

    pages = list(args.html_dir.glob("*.html"))
    for page in pages:
        page.write_text(TAG.sub(local, page.read_text()))
    left = [m.group(0) for p in pages for m in CDN.finditer(p.read_text())]
    print(f"{len(pages)} pages rewritten to vendor/; {len(left)} external references left: {left}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
