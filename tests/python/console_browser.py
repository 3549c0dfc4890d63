"""The admin console in a real browser: Playwright driving Debian's
chromium against a running `narrowgate serve` (tests/console_browser.rs
starts it). Prints one JSON object of what it saw; the Rust test judges.

    console_browser.py API_URL PROXY_URL SCREENSHOT_DIR
    NG_ADMIN_TOKEN: the bootstrap (master) admin token
"""

import json
import os
import sys
import urllib.error
import urllib.request

from playwright.sync_api import sync_playwright

API, PROXY, SHOTS = sys.argv[1], sys.argv[2], sys.argv[3]
ADMIN = os.environ["NG_ADMIN_TOKEN"]
CHROMIUM = os.environ.get("NG_CHROMIUM", "/usr/bin/chromium")
result = {}


def http(method, url, token=None, body=None):
    req = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body is not None else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    if body is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            text = r.read().decode()
            return r.status, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read().decode()
        return e.code, (json.loads(text) if text.startswith("{") else text)


def proxy_status(path, token):
    return http("GET", PROXY + path, token)[0]


def shot(page, name, mask=()):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True, mask=list(mask))


def sign_in(page, token):
    page.goto(API + "/console")
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()
    if not page.url.endswith("/console/tokens"):
        notice = page.locator(".notice")
        raise SystemExit("not signed in: " + page.url + ": " + (notice.inner_text() if notice.count() else page.content()[:500]))


with sync_playwright() as p:
    browser = p.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-quic"],
    )
    context = browser.new_context(viewport={"width": 1280, "height": 900},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    console_errors = []
    # Script errors and CSP violations; not the HTTP statuses of refused
    # forms or the browser's own favicon request.
    page.on("console", lambda m: console_errors.append(m.text)
            if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda e: console_errors.append(str(e)))

    # Sign-in with the bootstrap admin; the token never reaches the page.
    page.goto(API + "/console/tokens")
    result["unsigned_redirect"] = page.url.endswith("/console/sign-in")
    shot(page, "sign-in")
    sign_in(page, ADMIN)
    result["signed_in_heading"] = page.get_by_role("heading", level=1).inner_text()
    result["admin_token_in_page"] = ADMIN in page.content()
    cookies = context.cookies()
    result["cookie"] = [{"name": c["name"], "httpOnly": c["httpOnly"], "sameSite": c["sameSite"], "path": c["path"],
                         "holds_token": ADMIN in c["value"]} for c in cookies]
    result["storage_has_token"] = page.evaluate(
        "t => JSON.stringify(localStorage).includes(t) || JSON.stringify(sessionStorage).includes(t)", ADMIN)

    # Markup in a name is shown as text, in the list.
    http("POST", API + "/v1/tokens", ADMIN, {"name": "<img src=x id=injected>", "lifetime": "1h"})
    page.goto(API + "/console/tokens")
    result["markup_as_text"] = page.get_by_text("<img src=x id=injected>").count() > 0
    result["markup_as_element"] = page.locator("#injected").count()
    shot(page, "tokens")

    # Create a reference token with an access rule picked from the manifest.
    page.get_by_role("link", name="New token").click()
    page.get_by_label("Name", exact=True).fill("browser-reader")
    page.get_by_label("Form").select_option("reference")
    page.get_by_label("Expires").select_option("24h")
    page.locator("#a0-account-management-getAccount").check()
    page.locator("#a0-role-reader").check()
    page.locator("#a0-resources").fill("account:demo-account-1")
    result["master_offered_to_master"] = page.locator("#master").count()
    shot(page, "new-token")
    page.get_by_role("button", name="Create").click()
    reference = page.locator("#secret").input_value()
    result["reference_prefix"] = reference[:4]
    shot(page, "created", mask=[page.locator("#secret")])
    page.get_by_role("button", name="Copy to the clipboard").click()
    page.get_by_role("button", name="Copied").wait_for(timeout=5000)
    result["copy_button"] = page.evaluate("() => navigator.clipboard.readText()") == reference
    page.get_by_role("link", name="Its details").click()
    reference_url = page.url
    result["reference_in_details"] = reference in page.content()
    page.reload()
    result["reference_after_reload"] = reference in page.content()
    shot(page, "token")
    result["reference_on_proxy"] = [proxy_status("/users/current/accounts/demo-account-1", reference),
                                    proxy_status("/users/current/accounts/other-account", reference)]

    # Narrow the reference token; the preview (an htmx partial update)
    # says what the child may call, and the proxy then does exactly that.
    page.goto(reference_url)
    page.get_by_role("link", name="Narrow…").click()
    page.get_by_label("Resources").fill("account:demo-account-1")
    page.get_by_label("Valid for (hours; empty: 24, within the parent's expiry)").fill("1")
    url_before = page.url
    page.get_by_role("button", name="Preview").click()
    page.locator(".preview-row").first.wait_for(timeout=5000)
    result["preview_in_place"] = page.url == url_before
    rows = page.locator(".preview-row").evaluate_all(
        "rows => rows.map(r => [r.dataset.method, r.dataset.path, Number(r.dataset.status)])")
    shot(page, "narrow")
    page.get_by_role("button", name="Create the narrowed token").click()
    child = page.locator("#secret").input_value()
    result["preview"] = rows
    result["child_on_proxy"] = [[m, path, status, http(m, PROXY + path, child)[0]] for m, path, status in rows]

    # A JWT with tenant permissions.
    page.goto(API + "/console/tokens/new")
    page.get_by_label("Name", exact=True).fill("browser-tenants")
    page.get_by_label("Expires").select_option("1h")
    page.get_by_label("Tenant 1").fill("acme")
    page.locator("#t0-READ_TENANT").check()
    page.locator("#t0-MANAGE_PROFILES").check()
    page.get_by_role("button", name="Create").click()
    jwt = page.locator("#secret").input_value()
    result["jwt_parts"] = len(jwt.split("."))
    status, listed = http("GET", API + "/v1/tokens?name=browser-tenants", ADMIN)
    result["jwt_tenants"] = listed["tokens"][0].get("tenantPermissions") if status == 200 else None

    # A forged form (its CSRF field removed) is refused.
    page.goto(reference_url)
    page.get_by_role("link", name="Revoke…").click()
    shot(page, "revoke")
    page.evaluate("() => document.querySelectorAll('main input[name=csrf]').forEach(e => e.remove())")
    page.get_by_role("button", name="Revoke", exact=True).click()
    result["forged_heading"] = page.get_by_role("heading", level=1).inner_text()
    result["after_forged_on_proxy"] = proxy_status("/users/current/accounts/demo-account-1", reference)

    # Revoked for real: the proxy refuses it at once.
    page.goto(reference_url)
    page.get_by_role("link", name="Revoke…").click()
    page.get_by_role("button", name="Revoke", exact=True).click()
    result["revoked_notice"] = page.locator(".notice").inner_text()
    result["revoked_on_proxy"] = proxy_status("/users/current/accounts/demo-account-1", reference)
    result["child_after_parent_revoked"] = proxy_status("/users/current/accounts/demo-account-1", child)

    # A non-master admin is not offered master, and is refused if it
    # posts it anyway.
    status, ops = http("POST", API + "/v1/tokens", ADMIN, {"name": "browser-ops", "role": "admin", "lifetime": "1h"})
    other = browser.new_context()
    page2 = other.new_page()
    sign_in(page2, ops["token"])
    page2.goto(API + "/console/tokens/new")
    result["master_offered_to_admin"] = page2.locator("#master").count()
    page2.get_by_label("Name", exact=True).fill("sneaky")
    page2.get_by_label("Form").select_option("reference")
    page2.get_by_label("Tenant 1").fill("acme")
    page2.locator("#t0-READ_TENANT").check()
    page2.evaluate("""() => {
        const box = document.createElement('input');
        box.type = 'checkbox'; box.name = 'master'; box.value = 'on'; box.checked = true;
        document.querySelector('main form').appendChild(box);
    }""")
    page2.get_by_role("button", name="Create").click()
    result["sneaky_notice"] = page2.locator(".notice").first.inner_text()
    status, listed = http("GET", API + "/v1/tokens?name=sneaky", ADMIN)
    result["sneaky_minted"] = len(listed["tokens"]) if status == 200 else None

    # Keyboard: the skip link is the first stop and takes focus visibly.
    page.goto(API + "/console/tokens")
    page.keyboard.press("Tab")
    result["first_tab_stop"] = page.evaluate("() => document.activeElement.textContent")

    # Sign-out ends the session.
    page.get_by_role("button", name="Sign out").click()
    page.goto(API + "/console/tokens")
    result["after_sign_out"] = page.url.split("/console/")[1]
    result["console_errors"] = console_errors

    browser.close()

print(json.dumps(result))
