"""Writes N Hawk `Authorization` headers for one URL, one per line, each with its own nonce, signed
with temporary credentials the way a Taskcluster task's proxy signs them: the certificate made by
Taskcluster's Python client (`createTemporaryCredentials`, `makeHawkExt`), the header by mohawk.

Usage: hawk_headers.py N URL ISSUER_ID ISSUER_ACCESS_TOKEN SCOPE > headers.txt
The headers are good for the server's 60 s Hawk window from the moment they are written.
"""

import datetime
import sys

import mohawk
import taskcluster


def main():
    n, url, issuer, token, scope = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
    now = datetime.datetime.utcnow()
    creds = taskcluster.createTemporaryCredentials(
        issuer, token, now - datetime.timedelta(minutes=5), now + datetime.timedelta(hours=1), [scope])
    creds = {k: v.decode() if isinstance(v, bytes) else v for k, v in creds.items()}
    ext = taskcluster.Auth({"rootUrl": "https://tc.invalid", "credentials": dict(creds)}).makeHawkExt()
    ext = ext.decode() if isinstance(ext, bytes) else ext
    key = {"id": creds["clientId"], "key": creds["accessToken"], "algorithm": "sha256"}
    out = sys.stdout
    for _ in range(n):
        sender = mohawk.Sender(credentials=key, ext=ext, url=url, content="", content_type="", method="GET")
        h = sender.request_header
        out.write((h.decode() if isinstance(h, bytes) else h) + "\n")


if __name__ == "__main__":
    main()
