"""The soak's token-service side (benches/soak.sh), on the standard library.

    soak.py mint API ADMIN_TOKEN N          N tokens narrowed to reading account
                                            demo-account-1, one per line
    soak.py churn API ADMIN_TOKEN SECONDS TOKENS_FILE
                                            each second: narrow a token and
                                            revoke the one narrowed before; each
                                            10 s: revoke one of the load's
                                            tokens; prints what failed
"""

import base64
import http.client
import json
import sys
import time
import urllib.parse

NARROW = {
    "applications": ["trading-account-management-api"],
    "roles": ["reader"],
    "resources": [{"entity": "account", "id": "demo-account-1"}],
    "validityInHours": 2,
}


class Api:
    def __init__(self, url, admin):
        u = urllib.parse.urlparse(url)
        self.host, self.port = u.hostname, u.port
        self.admin = admin
        self.conn = None

    def call(self, method, path, body):
        for _ in range(2):
            try:
                if self.conn is None:
                    self.conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
                self.conn.request(method, path, json.dumps(body),
                                  {"Authorization": "Bearer " + self.admin, "Content-Type": "application/json"})
                r = self.conn.getresponse()
                return r.status, r.read()
            except (OSError, http.client.HTTPException):
                self.conn = None
        return 0, b""

    def narrow(self):
        status, body = self.call("POST", "/v1/tokens/narrow", NARROW)
        if status not in (200, 201):
            return None, status
        return json.loads(body)["token"], status

    def revoke(self, token):
        return self.call("POST", "/v1/revocations", {"jti": jti(token), "issuer": "narrowgate"})[0]


def jti(token):
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["jti"]


def mint(api, n):
    for _ in range(n):
        token, status = api.narrow()
        if token is None:
            sys.exit(f"narrowing failed: HTTP {status}")
        print(token)


def churn(api, seconds, tokens_file):
    with open(tokens_file) as f:
        load = [line.strip() for line in f if line.strip()]
    failed, narrowed, revoked, previous = 0, 0, 0, None
    end = time.monotonic() + seconds
    tick = 0
    while time.monotonic() < end:
        start = time.monotonic()
        token, _ = api.narrow()
        if token is None:
            failed += 1
        else:
            narrowed += 1
        if previous is not None:
            if api.revoke(previous) in (200, 201):
                revoked += 1
            else:
                failed += 1
        previous = token
        if tick % 10 == 9 and load:
            # One of the load's tokens: its requests are refused from now on.
            if api.revoke(load[(tick // 10) * 37 % len(load)]) in (200, 201):
                revoked += 1
            else:
                failed += 1
        tick += 1
        time.sleep(max(0.0, 1.0 - (time.monotonic() - start)))
    print(json.dumps({"narrowed": narrowed, "revoked": revoked, "failed": failed}))


if __name__ == "__main__":
    what, url, admin = sys.argv[1], sys.argv[2], sys.argv[3]
    api = Api(url, admin)
    if what == "mint":
        mint(api, int(sys.argv[4]))
    else:
        churn(api, float(sys.argv[4]), sys.argv[5])
