#!/usr/bin/env python3
"""Make a site of `asv publish` work without internet access (suite/vendor.py): the JavaScript
libraries asv's pages load from CDNs, installed from npm at the versions pinned in
scripts/site/package-lock.json, copied into the site's vendor/.  Running it again changes nothing.

    python scripts/offline_site.py .asv/html [--cache .asv/vendor]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from suite import ROOT
from suite.vendor import VendorError, vendor


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("html_dir", type=Path)
    ap.add_argument("--cache", type=Path, default=ROOT / ".asv" / "vendor", help="npm install folder")
    args = ap.parse_args(argv)
    try:
        left = vendor(args.html_dir, args.cache)
    except VendorError as exc:
        print(f"offline_site: {exc}", file=sys.stderr)
        return 2
    print(f"{args.html_dir}: libraries in vendor/; external references left: {left or 'none'}")
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main())
