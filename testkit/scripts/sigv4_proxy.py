"""A proxy in front of osmem-server that checks requests as Amazon OpenSearch does.

Run with the moto venv's Python (moto[server] brings botocore):

    python sigv4_proxy.py PORT

Each test registers a *route* (its upstream osmem, the access keys and API keys it
accepts) and points its sink at ``http://127.0.0.1:PORT/<route>``; the route prefix
is part of the signed path, and is removed before the request is forwarded.

For ``Authorization: AWS4-HMAC-SHA256 ...`` the signature is computed again with
botocore's ``SigV4Auth`` (not the signer under test) from the request as received
and the secret of its access key; ``x-amz-content-sha256`` is required, signed, and
checked against the body's hash; ``x-amz-date`` must be within 5 minutes of the
route's clock. Temporary keys are looked up in moto's STS records, and their
``x-amz-security-token`` must be the session token moto issued. For
``Authorization: ApiKey ...`` the key must be one of the route's. Anything else is
answered 403 (401 for API keys) with a body saying why; what passes is forwarded.
Every request is recorded (method, path, headers, verdict, the ``_bulk`` actions).

Control API (never forwarded):
    POST /_proxy/routes            {"upstream", "keys": {id: secret}, "api_keys": [..],
                                    "moto": url, "clock_offset": seconds} -> {"route"}
    GET  /_proxy/routes/<route>/log
    GET  /_proxy/health
The process ends when its parent does.
"""

import datetime
import gzip
import hashlib
import hmac
import http.client
import json
import os
import re
import sys
import threading
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

ROUTES = {}
LOCK = threading.Lock()
AUTH_RE = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request,\s*"
    r"SignedHeaders=([^,]+),\s*Signature=([0-9a-f]+)$"
)


class Refused(Exception):
    def __init__(self, status, message, **detail):
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail


def moto_temporary_key(moto, key_id):
    """The secret and session token moto's STS issued for key_id, if any."""
    with urllib.request.urlopen(moto + "/moto-api/data.json", timeout=10) as r:
        data = json.load(r)
    for role in data.get("sts", {}).get("AssumedRole", []):
        if role.get("access_key_id") == key_id:
            return role.get("secret_access_key"), role.get("session_token")
    return None, None


def check_sigv4(route, method, path, query, headers, body, authorization, now):
    m = AUTH_RE.match(authorization)
    if not m:
        raise Refused(403, "the Authorization header is not a SigV4 header: " + authorization[:80])
    key_id, day, region, service, signed, signature = m.groups()
    signed_list = signed.split(";")
    secret, token = route["keys"].get(key_id), None
    if secret is None and route.get("moto"):
        secret, token = moto_temporary_key(route["moto"], key_id)
    if secret is None:
        raise Refused(403, "The security token included in the request is invalid.",
                      why="unknown access key id " + key_id)
    if token is not None and headers.get("x-amz-security-token") != token:
        raise Refused(403, "The security token included in the request is invalid.",
                      why="x-amz-security-token is not the session token issued with " + key_id)
    for needed in ("host", "x-amz-date", "x-amz-content-sha256"):
        if needed not in signed_list:
            raise Refused(403, "the header `%s` must be signed" % needed, signed=signed)
    if "x-amz-security-token" in headers and "x-amz-security-token" not in signed_list:
        raise Refused(403, "x-amz-security-token is sent but not signed", signed=signed)
    missing = [h for h in signed_list if h not in headers]
    if missing:
        raise Refused(403, "signed headers not sent: " + ",".join(missing))
    digest = hashlib.sha256(body).hexdigest()
    if headers["x-amz-content-sha256"] != digest:
        raise Refused(403, "x-amz-content-sha256 is not the SHA-256 of the body as received",
                      header=headers["x-amz-content-sha256"], body_sha256=digest)
    amz_date = headers["x-amz-date"]
    sent = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()
    if abs(sent - now) > 300:
        # AWS's words, with its own time in brackets.
        stamp = lambda t: time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
        raise Refused(403, "Signature expired: %s is now earlier than %s (%s - 5 min.)"
                      % (amz_date, stamp(now - 300), stamp(now))
                      if sent < now else
                      "Signature not yet current: %s is still later than %s (%s + 5 min.)"
                      % (amz_date, stamp(now + 300), stamp(now)))
    if day != amz_date[:8]:
        raise Refused(403, "the credential scope's date is not x-amz-date's")
    url = "http://" + headers["host"] + path + ("?" + query if query else "")
    request = AWSRequest(method=method, url=url,
                         headers={h: headers[h] for h in signed_list}, data=body)
    request.context["timestamp"] = amz_date
    auth = SigV4Auth(Credentials(key_id, secret, token), service, region)
    canonical = auth.canonical_request(request)
    to_sign = auth.string_to_sign(request, canonical)
    expected = auth.signature(to_sign, request)
    if not hmac.compare_digest(expected, signature):
        raise Refused(403, "The request signature we calculated does not match the signature "
                      "you provided. Check your AWS Secret Access Key and signing method.",
                      canonical_request=canonical, string_to_sign=to_sign)
    return {"key_id": key_id, "region": region, "service": service, "signed": signed_list,
            "session_token": token is not None}


def bulk_actions(path, headers, body):
    if not path.rstrip("/").endswith("_bulk"):
        return None
    if headers.get("content-encoding") == "gzip":
        body = gzip.decompress(body)
    lines = [line for line in body.split(b"\n") if line.strip()]
    return [json.loads(line) for line in lines[0::2]]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    clock_offset = 0

    def log_message(self, *args):
        pass

    def date_time_string(self, timestamp=None):
        return super().date_time_string(time.time() + self.clock_offset)

    def answer(self, status, body, headers=()):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        sent = set()
        for k, v in headers:
            if k.lower() not in ("transfer-encoding", "connection", "content-length", "date",
                                 "server"):
                self.send_header(k, v)
                sent.add(k.lower())
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def control(self, method, parts, body):
        if parts == ["health"]:
            return self.answer(200, {"ok": True})
        if method == "POST" and parts == ["routes"]:
            spec = json.loads(body)
            with LOCK:
                name = "r%d" % (len(ROUTES) + 1)
                ROUTES[name] = {"upstream": spec["upstream"], "keys": spec.get("keys", {}),
                                "api_keys": spec.get("api_keys", []), "moto": spec.get("moto"),
                                "clock_offset": spec.get("clock_offset", 0), "log": []}
            return self.answer(200, {"route": name})
        if method == "GET" and len(parts) == 3 and parts[0] == "routes" and parts[2] == "log":
            with LOCK:
                log = list(ROUTES.get(parts[1], {}).get("log", []))
            return self.answer(200, log)
        return self.answer(404, {"message": "no such control call"})

    def handle_any(self):
        method = self.command
        target = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = target.path.strip("/").split("/")
        if parts[0] == "_proxy":
            return self.control(method, parts[1:], body)
        with LOCK:
            route = ROUTES.get(parts[0])
        if route is None:
            return self.answer(404, {"message": "no route " + parts[0]})
        self.clock_offset = route["clock_offset"]
        headers = {k.lower(): v for k, v in self.headers.items()}
        entry = {"method": method, "path": "/" + "/".join(parts[1:]), "query": target.query,
                 "headers": headers, "auth": None, "verdict": "ok", "status": None}
        try:
            entry["actions"] = bulk_actions(entry["path"], headers, body)
        except Exception as e:  # a body the sink should not send: recorded, still checked
            entry["actions"] = None
            entry["body_error"] = str(e)
        try:
            authorization = headers.get("authorization", "")
            if authorization.startswith("AWS4-HMAC-SHA256 "):
                entry["auth"] = check_sigv4(route, method, target.path, target.query, headers,
                                            body, authorization, time.time() + self.clock_offset)
            elif authorization.startswith("ApiKey "):
                if authorization[len("ApiKey "):] not in route["api_keys"]:
                    raise Refused(401, "unable to authenticate with provided credentials")
                entry["auth"] = {"api_key": True}
            else:
                raise Refused(403, "User: anonymous is not authorized to perform: es:ESHttpPost",
                              why="no SigV4 or ApiKey authorization")
        except Refused as refused:
            entry["verdict"] = refused.message
            entry["status"] = refused.status
            with LOCK:
                route["log"].append(entry)
            body = {"message": refused.message}
            body.update(refused.detail)
            return self.answer(refused.status, body)
        upstream = urllib.parse.urlsplit(route["upstream"])
        forward = {k: v for k, v in self.headers.items()
                   if k.lower() not in ("host", "authorization", "connection", "content-length")}
        conn = http.client.HTTPConnection(upstream.hostname, upstream.port, timeout=60)
        try:
            path = entry["path"] + ("?" + target.query if target.query else "")
            conn.request(method, path, body=body, headers=forward)
            response = conn.getresponse()
            data = response.read()
            entry["status"] = response.status
            with LOCK:
                route["log"].append(entry)
            return self.answer(response.status, data, response.getheaders())
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = handle_any


def watch_parent():
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)


if __name__ == "__main__":
    threading.Thread(target=watch_parent, daemon=True).start()
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    print(json.dumps({"url": "http://127.0.0.1:%d" % server.server_address[1]}), flush=True)
    server.serve_forever()
