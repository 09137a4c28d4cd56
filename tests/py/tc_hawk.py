"""Signs one request exactly as a Taskcluster client does, for the e2e tests.

Reads a JSON object on stdin and prints one JSON object: the `Authorization` header made by
Taskcluster's own Python client (113.x: `createTemporaryCredentials`, `makeHawkExt`) and
mohawk, the Hawk library it signs with. None of tooltool's code is involved, so the server is
checked against the other side's implementation.

Input members:
  clientId, accessToken   the (issuing) client's credentials
  method, url             the request to sign
  contentType, body       the payload, when the request has one (hashed as Taskcluster does)
  temporary               optional: {"scopes": [...], "start": s, "expiry": s (offsets from
                          now in seconds), "name": optional, "beyond_31_days": true to get
                          past the client's own 31-day check} -> temporary credentials issued
                          by clientId
  authorizedScopes        optional list
  tamper                  optional: "signature" flips the certificate's signature
  ext                     optional: a raw ext string to send instead of Taskcluster's
  ts_offset               optional: seconds added to the header's timestamp
Output: {"authorization", "clientId", "accessToken", "certificate"} (the credentials signed with).
"""

import datetime
import json
import sys
import time

import mohawk
import taskcluster


class Lenient(datetime.datetime):
    """A datetime whose difference with another looks empty: gets a certificate longer than
    31 days past createTemporaryCredentials' own check, the signing itself untouched."""

    def __sub__(self, other):
        if isinstance(other, datetime.datetime):
            return datetime.timedelta(0)
        return super().__sub__(other)


def main():
    req = json.load(sys.stdin)
    creds = {"clientId": req["clientId"], "accessToken": req["accessToken"]}
    temp = req.get("temporary")
    if temp is not None:
        now = datetime.datetime.utcnow()
        start = now + datetime.timedelta(seconds=temp.get("start", -60))
        expiry = now + datetime.timedelta(seconds=temp.get("expiry", 3600))
        if temp.get("beyond_31_days"):
            expiry = Lenient.fromtimestamp(expiry.timestamp())
        made = taskcluster.createTemporaryCredentials(
            req["clientId"],
            req["accessToken"],
            start,
            expiry,
            temp["scopes"],
            name=temp.get("name"),
        )
        creds = {k: v.decode() if isinstance(v, bytes) else v for k, v in made.items()}
        if req.get("tamper") == "signature":
            cert = json.loads(creds["certificate"])
            sig = cert["signature"]
            cert["signature"] = ("A" if sig[0] != "A" else "B") + sig[1:]
            creds["certificate"] = json.dumps(cert, separators=(",", ":"))
    options = {"rootUrl": "https://tc.invalid", "credentials": dict(creds)}
    if "authorizedScopes" in req:
        options["authorizedScopes"] = req["authorizedScopes"]
    ext = req["ext"] if "ext" in req else taskcluster.Auth(options).makeHawkExt()
    if isinstance(ext, bytes):
        ext = ext.decode()
    body = req.get("body")
    sender = mohawk.Sender(
        credentials={"id": creds["clientId"], "key": creds["accessToken"], "algorithm": "sha256"},
        ext=ext if ext else {},
        url=req["url"],
        content=body if body is not None else "",
        content_type=req.get("contentType", "") if body is not None else "",
        method=req["method"],
        _timestamp=int(time.time()) + req.get("ts_offset", 0),
    )
    header = sender.request_header
    creds["authorization"] = header.decode() if isinstance(header, bytes) else header
    json.dump(creds, sys.stdout)


if __name__ == "__main__":
    main()
