"""python-tuf's ngclient (tuf 7.0.1, from the venv scripts/test.sh makes) against a repository
written by the server's TUF primitives into a directory (tests/tests/e2e/tuf.rs).

Reads a JSON spec on stdin: {"dir": repository folder with metadata/ and targets/,
"client": an empty folder, "target": the target name}. Refreshes from metadata/1.root.json,
downloads and verifies the target, and prints {"ok": true, "sha256": ..., "canonical_root": ...}
or {"ok": false, "error": "<exception class>", "message": ...}, with "fetched": every path asked
for, in order.
"""

import hashlib
import json
import os
import sys

from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import CanonicalJSONSerializer
from tuf.ngclient import FetcherInterface, Updater

BASE = "http://repo/"


class DirFetcher(FetcherInterface):
    """Serves BASE<path> from a folder, 404 for a missing file."""

    def __init__(self, root):
        self.root = root
        self.fetched = []

    def _fetch(self, url):
        self.fetched.append(url.removeprefix(BASE))
        path = os.path.join(self.root, url.removeprefix(BASE))
        try:
            with open(path, "rb") as f:
                return iter([f.read()])
        except FileNotFoundError:
            raise DownloadHTTPError(f"{url} not found", 404)


def main():
    spec = json.load(sys.stdin)
    root_path = os.path.join(spec["dir"], "metadata", "1.root.json")
    with open(root_path, "rb") as f:
        root = f.read()
    canonical = CanonicalJSONSerializer().serialize(Metadata.from_bytes(root).signed)
    out = {"canonical_root": hashlib.sha256(canonical).hexdigest()}
    fetcher = DirFetcher(spec["dir"])
    try:
        updater = Updater(
            metadata_dir=spec["client"],
            metadata_base_url=BASE + "metadata/",
            target_dir=spec["client"],
            target_base_url=BASE + "targets/",
            fetcher=fetcher,
            bootstrap=root,
        )
        updater.refresh()
        info = updater.get_targetinfo(spec["target"])
        if info is None:
            out.update(ok=False, error="NotFound", message=spec["target"])
        else:
            path = updater.download_target(info)
            with open(path, "rb") as f:
                out.update(ok=True, sha256=hashlib.sha256(f.read()).hexdigest())
    except Exception as e:  # noqa: BLE001 - the class name is the answer
        out.update(ok=False, error=type(e).__name__, message=str(e))
    out["fetched"] = fetcher.fetched
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
