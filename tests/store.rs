//! The store suite against real SQLite files and a real PostgreSQL server.
//!
//! PostgreSQL: `.ci/run` starts a private server and exports
//! `NARROWGATE_TEST_PG_URL`; without it these tests fail, loudly, rather than
//! being skipped.

use std::sync::Arc;

use narrowgate::store::{PgStore, SqliteStore, TokenStore, testsuite};

async fn sqlite() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("data/narrowgate.db")).await.expect("open sqlite");
    (dir, store)
}

/// A fresh database on the test server for one test.
async fn postgres() -> PgStore {
    let url = std::env::var("NARROWGATE_TEST_PG_URL")
        .expect("NARROWGATE_TEST_PG_URL is not set: .ci/run starts PostgreSQL and sets it (see README)");
    let db = format!("ng_test_{}", narrowgate::token::keys::random_id(6).expect("id"));
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(&url).await.expect("connect to the test PostgreSQL server");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}"))).execute(&admin).await.expect("create database");
    admin.close().await;
    let base = url.rsplit_once('/').map(|(b, _)| b).expect("url with a database");
    PgStore::open(&format!("{base}/{db}")).await.expect("open postgres")
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod sqlite_suite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let (_dir, s) = sqlite().await;
                    testsuite::$name(&s).await;
                }
            )*
        }
        mod postgres_suite {
            use super::*;
            $(
                #[tokio::test]
                async fn $name() {
                    let s = postgres().await;
                    testsuite::$name(&s).await;
                }
            )*
        }
    };
}

suite!(
    records_round_trip,
    listing_filters_and_pages,
    revocation_is_recorded,
    registration_tokens_redeem_once,
    a_failed_redeem_rolls_back,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redeems_on_sqlite_yield_one_token() {
    let (_dir, s) = sqlite().await;
    testsuite::concurrent_redeems_yield_one_token(Arc::new(s), 50).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_redeems_on_postgres_yield_one_token() {
    testsuite::concurrent_redeems_yield_one_token(Arc::new(postgres().await), 50).await;
}

#[tokio::test]
async fn sqlite_data_survives_reopening() {
    let (dir, s) = sqlite().await;
    testsuite::records_round_trip(&s).await;
    s.close().await;
    drop(s);
    let again = SqliteStore::open(&dir.path().join("data/narrowgate.db")).await.expect("reopen");
    assert_eq!(again.count_tokens().await.expect("count"), 3);
    assert!(again.token_by_name("first").await.expect("get").is_some());
}
