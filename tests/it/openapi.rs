//! The OpenAPI document: generated from the code, checked in, served, and
//! every operation it documents is one the token service routes.

use crate::support;

use support::Harness;

#[test]
fn the_checked_in_document_is_the_generated_one() {
    let checked_in = include_str!("../../docs/openapi.json");
    let generated = narrowgate::api::openapi::document();
    assert!(
        checked_in == generated,
        "docs/openapi.json is stale: run `cargo run -- openapi > docs/openapi.json` and commit it"
    );
}

#[tokio::test]
async fn the_served_document_is_complete_and_every_operation_is_routed() {
    let h = Harness::start().await;
    let served = h.api_request("GET", "/v1/openapi.json", &[]).await;
    assert_eq!((served.status, served.header("content-type")), (200, Some("application/json")));
    assert_eq!(served.body, narrowgate::api::openapi::document());

    let doc = served.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    let mut operations = 0;
    for (path, item) in paths {
        for method in item.as_object().expect("path item").keys() {
            let target = path.replace("{id}", "some-id");
            let resp = h.api_request(&method.to_uppercase(), &target, &[]).await;
            let unrouted = resp.status == 405 || (resp.status == 404 && resp.json()["message"] == "no such endpoint");
            assert!(!unrouted, "{method} {path} is documented but not routed ({})", resp.status);
            let documented = item[method]["responses"].as_object().expect("responses");
            assert!(
                documented.contains_key(&resp.status.to_string()),
                "{method} {path}: status {} without credentials is not documented",
                resp.status
            );
            operations += 1;
        }
    }
    assert_eq!(operations, 17, "every operation of the token service is documented");
    // Both ways of presenting a token are declared.
    let schemes = doc["components"]["securitySchemes"].as_object().expect("security schemes");
    assert!(schemes.contains_key("bearer") && schemes.contains_key("auth-token"));
    h.shutdown().await;
}
