"""python-tuf's ngclient (tuf 7.0.1, from the venv scripts/test.sh makes) against a repository
written by the server's TUF primitives into a directory, or served by a running server
(tests/tests/e2e/tuf.rs).

Reads a JSON spec on stdin: {"client": an empty folder (or one a previous run used),
"target": the target name}, and either {"dir": repository folder with metadata/ and targets/},
refreshing from metadata/1.root.json, or {"url": the repository's base URL
(http://host/tuf/public/), "root": the pinned root file, "token": a bearer token or null}: with
a token, through a custom fetcher that sends it (python-tuf has no option for headers);
without, through python-tuf's own default fetcher. Downloads and verifies the target, and
prints {"ok": true, "sha256": ..., "canonical_root": ..., "root_version": ...} or
{"ok": false, "error": "<exception class>", "message": ...}, with "fetched": every path asked
for, in order (server mode with a token only: the default fetcher is not watched).
"""

import hashlib
import json
import os
import sys

from tuf.api.exceptions import DownloadHTTPError
from tuf.api.metadata import Metadata
from tuf.api.serialization.json import CanonicalJSONSerializer
from tuf.ngclient import FetcherInterface, Updater, Urllib3Fetcher
from tuf.ngclient._internal.proxy import ProxyEnvironment

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


class BearerFetcher(Urllib3Fetcher):
    """python-tuf's urllib3 fetcher, sending `Authorization: Bearer <token>` (urllib3 drops it
    on a redirect to another host, as a presigned storage URL needs)."""

    def __init__(self, base, token):
        super().__init__()
        self.base = base
        self.fetched = []
        self._proxy_env = ProxyEnvironment(
            headers={"User-Agent": "tooltool-tests", "Authorization": f"Bearer {token}"}
        )

    def _fetch(self, url):
        self.fetched.append(url.removeprefix(self.base))
        return super()._fetch(url)


def main():
    spec = json.load(sys.stdin)
    if "url" in spec:
        base, root_path = spec["url"], spec["root"]
        fetcher = BearerFetcher(base, spec["token"]) if spec.get("token") else None
    else:
        base, root_path = BASE, os.path.join(spec["dir"], "metadata", "1.root.json")
        fetcher = DirFetcher(spec["dir"])
    with open(root_path, "rb") as f:
        root = f.read()
    canonical = CanonicalJSONSerializer().serialize(Metadata.from_bytes(root).signed)
    out = {"canonical_root": hashlib.sha256(canonical).hexdigest()}
    try:
        updater = Updater(
            metadata_dir=spec["client"],
            metadata_base_url=base + "metadata/",
            target_dir=spec["client"],
            target_base_url=base + "targets/",
            fetcher=fetcher,
            bootstrap=root,
        )
        updater.refresh()
        out["root_version"] = updater._trusted_set.root.version
        info = updater.get_targetinfo(spec["target"])
        if info is None:
            out.update(ok=False, error="NotFound", message=spec["target"])
        else:
            path = updater.download_target(info)
            with open(path, "rb") as f:
                out.update(ok=True, sha256=hashlib.sha256(f.read()).hexdigest())
    except Exception as e:  # noqa: BLE001 - the class name is the answer
        out.update(ok=False, error=type(e).__name__, message=str(e))
    out["fetched"] = fetcher.fetched if fetcher else []
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
