"""Drive narrowgate's MetaApi facade with the real metaapi-cloud-sdk.

Usage: metaapi_sdk.py API_URL PROXY_URL
The parent token comes from the NG_PARENT_TOKEN environment variable (never
on the command line). Prints one JSON object with what the SDK returned and
what the proxy answered to each narrowed token; tests/metaapi.rs judges it.
"""

import asyncio
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request

from metaapi_cloud_sdk import MetaApi
from metaapi_cloud_sdk.clients.error_handler import ForbiddenException, ValidationException

API, PROXY = sys.argv[1], sys.argv[2]
PARENT = os.environ["NG_PARENT_TOKEN"]
TRADING = "trading-account-management-api"


def token_management(token):
    api = MetaApi(token, {"domain": "example.invalid"})
    tm = api.token_management_api
    # As compat.md says: point the SDK's client at narrowgate.
    tm._token_management_client._host = API
    return tm


def proxy(method, path, token):
    """The status the proxy answers, sending the token as MetaApi clients do."""
    req = urllib.request.Request(PROXY + path, method=method, headers={"auth-token": token})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code


def payload(token):
    return json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))


async def main():
    tm = token_management(PARENT)
    out = {}
    manifest = await tm.get_access_rules()
    out["manifest"] = [a["application"] for a in manifest]
    out["manifest_first"] = manifest[0]

    trading_a1 = "/users/current/accounts/a1"
    detailed = {
        "accessRules": [
            {
                "id": TRADING,
                "application": TRADING,
                "service": "rest",
                "methodGroups": [{"group": "account-management", "methods": [{"method": "getAccount"}]}],
                "roles": ["reader"],
                "resources": [{"entity": "account", "id": "a1"}],
            }
        ]
    }
    cases = {
        # name: (coroutine, allowed probe, denied probe)
        "applications": (
            tm.narrow_down_token_applications([TRADING]),
            ("GET", trading_a1),
            ("GET", "/metastats/users/current/accounts/a1/metrics"),
        ),
        "roles": (tm.narrow_down_token_roles(["reader"]), ("GET", trading_a1), ("PUT", trading_a1)),
        "resources": (
            tm.narrow_down_token_resources([{"entity": "account", "id": "a1"}], 0.5),
            ("GET", trading_a1),
            ("GET", "/users/current/accounts/a2"),
        ),
        "simplified": (
            tm.narrow_down_token(
                {"applications": [TRADING], "roles": ["reader"], "resources": [{"entity": "account", "id": "a1"}]},
                2,
            ),
            ("GET", trading_a1),
            ("PUT", trading_a1),
        ),
        "simplified_default_validity": (
            tm.narrow_down_token({"roles": ["reader"]}),
            ("GET", trading_a1),
            ("PUT", trading_a1),
        ),
        "detailed": (tm.narrow_down_token(detailed, 1.5), ("GET", trading_a1), ("GET", "/users/current/accounts")),
        "detailed_default_validity": (
            tm.narrow_down_token(detailed),
            ("GET", trading_a1),
            ("GET", "/users/current/accounts/a2"),
        ),
    }
    out["narrowed"] = {}
    for name, (call, allowed, denied) in cases.items():
        token = await call
        out["narrowed"][name] = {
            "token": token,
            "payload": payload(token),
            "resources_narrowed": tm.are_token_resources_narrowed_down(token),
            "allowed": proxy(*allowed, token),
            "denied": proxy(*denied, token),
        }
    out["parent_resources_narrowed"] = tm.are_token_resources_narrowed_down(PARENT)

    # Widening through the SDK: a ForbiddenException at once, not retries.
    child = token_management(out["narrowed"]["resources"]["token"])
    started = time.monotonic()
    try:
        await child.narrow_down_token_resources([{"entity": "account", "id": "a2"}])
        out["widen"] = {"raised": None}
    except ForbiddenException as e:
        out["widen"] = {"raised": "ForbiddenException", "message": str(e)}
    except Exception as e:  # anything else is a failure the test reports
        out["widen"] = {"raised": type(e).__name__, "message": str(e)}
    out["widen"]["seconds"] = time.monotonic() - started

    # An element the manifest does not know: a ValidationException naming it.
    try:
        await tm.narrow_down_token_applications(["no-such-api"])
        out["unknown"] = {"raised": None}
    except ValidationException as e:
        out["unknown"] = {"raised": "ValidationException", "message": str(e), "details": e.details}
    except Exception as e:
        out["unknown"] = {"raised": type(e).__name__, "message": str(e)}
    print(json.dumps(out))


asyncio.run(main())
