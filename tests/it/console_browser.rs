//! The console in a real browser: `narrowgate serve` with SQLite, and
//! Playwright (from the test environment's PyPI packages) driving
//! Debian's chromium through tests/python/console_browser.py. With
//! `NARROWGATE_SCREENSHOTS=DIR` the screenshots are kept there (how
//! `docs/console/` is made); otherwise they go to a temporary directory.

use crate::support;
use crate::support::python;

use serde_json::{Value, json};

#[tokio::test]
#[ignore = "needs chromium and Playwright: scripts/test installs them"]
async fn the_console_works_in_a_real_browser() {
    let dir = tempfile::tempdir().expect("tempdir");
    let upstream = narrowgate::echo::EchoUpstream::start("127.0.0.1:0".parse().expect("addr")).await.expect("echo");
    let config = support::process_config(
        dir.path(),
        "console",
        upstream.addr,
        "store:\n  sqlite:\n    path: data/ng.db\n    bootstrap_token_file: data/admin-token\n    create_if_missing: true\n\
         console:\n  enabled: true\n",
    );
    let gateway = support::serve_process(&config).await;
    // Unattended (stdout is not a terminal): the token is in its file only.
    let admin = std::fs::read_to_string(dir.path().join("data/admin-token")).expect("the bootstrap admin token");
    let admin = admin.trim().to_string();
    let shots =
        std::env::var("NARROWGATE_SCREENSHOTS").map_or_else(|_| dir.path().join("shots"), std::path::PathBuf::from);
    std::fs::create_dir_all(&shots).expect("screenshot dir");

    let run = tokio::process::Command::new(python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/console_browser.py"))
        .arg(format!("http://{}", gateway.api.expect("api")))
        .arg(format!("http://{}", gateway.proxy))
        .arg(&shots)
        .env("NG_ADMIN_TOKEN", &admin)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(180), run)
        .await
        .expect("the browser run finishes within 3 minutes")
        .expect("run the browser script");
    assert!(out.status.success(), "the browser script failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).expect("the script prints JSON");

    assert_eq!(r["unsigned_redirect"], true, "{r}");
    assert_eq!(r["signed_in_heading"], "Tokens");
    assert_eq!(r["admin_token_in_page"], false, "the sign-in token is never rendered");
    assert_eq!(r["storage_has_token"], false, "nor kept in the browser's storage");
    assert_eq!(
        r["cookie"],
        json!([{"name": "ng_console", "httpOnly": true, "sameSite": "Strict", "path": "/console", "holds_token": false}])
    );
    assert_eq!(
        (r["markup_as_text"].clone(), r["markup_as_element"].clone()),
        (json!(true), json!(0)),
        "markup in a name is text"
    );
    assert_eq!(r["master_offered_to_master"], 1);
    assert_eq!(r["reference_prefix"], "ngr_");
    assert_eq!(r["copy_button"], true, "the copy button copies the value (console.js under the CSP)");
    assert_eq!(r["reference_in_details"], false, "the value is shown once");
    assert_eq!(r["reference_after_reload"], false);
    assert_eq!(r["reference_on_proxy"], json!([200, 403]), "allowed for its account, denied for another");
    assert_eq!(r["preview_in_place"], true, "the preview is a partial update (htmx)");
    let rows = r["preview"].as_array().expect("preview rows");
    assert!(rows.iter().any(|row| row[2] == 200) && rows.iter().any(|row| row[2] == 403), "{r}");
    for row in r["child_on_proxy"].as_array().expect("rows") {
        assert_eq!(row[3], row[2], "the proxy does what the preview said: {row}");
    }
    assert_eq!(r["child_after_parent_revoked"], 401, "the child dies with its parent");
    assert_eq!(r["jwt_parts"], 3);
    assert_eq!(r["jwt_tenants"], json!([{"tenant": "acme", "allowedActions": ["READ_TENANT", "MANAGE_PROFILES"]}]));
    assert_eq!(r["forged_heading"], "Refused", "a form without its CSRF token is refused");
    assert_eq!(r["after_forged_on_proxy"], 200, "and nothing was revoked");
    assert_eq!(r["revoked_notice"], "Revoked.");
    assert_eq!(r["revoked_on_proxy"], 401, "revoked on the proxy at once");
    assert_eq!(r["master_offered_to_admin"], 0, "a non-master admin is not offered master");
    assert!(r["sneaky_notice"].as_str().is_some_and(|n| n.contains("Not created") && n.contains("master")), "{r}");
    assert_eq!(r["sneaky_minted"], 0);
    assert_eq!(r["first_tab_stop"], "Skip to content", "keyboard users start at the skip link");
    assert_eq!(r["after_sign_out"], "sign-in");
    assert_eq!(r["console_errors"], json!([]), "no script or CSP errors in the browser console");
    for name in ["sign-in", "tokens", "new-token", "created", "token", "narrow", "revoke"] {
        assert!(shots.join(format!("{name}.png")).exists(), "screenshot {name}");
    }
    drop(gateway);
}
