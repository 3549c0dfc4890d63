//! What triggers a reload besides SIGHUP and the admin listener's
//! `POST /reload`: a change of the config file or of any file it reads.
//!
//! Files are watched through their *parent directories* (`notify`), never
//! by themselves: a Kubernetes ConfigMap update swaps the `..data` symlink
//! to a new directory, so the file's own inode never changes and a watch
//! on it hears nothing (the bug Oathkeeper and Pomerium shipped). Any
//! event in a watched directory starts a short debounce; then the runtime
//! reloads, which does nothing if the config's content hash is unchanged.
//! A slow poll is the backstop for file systems that send no events.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use notify::Watcher;

use crate::runtime::{Reloaded, Runtime};

/// How long events are collected before one reload.
const DEBOUNCE: Duration = Duration::from_millis(200);
/// How often the files are checked when no event came.
const POLL: Duration = Duration::from_secs(30);

/// The directories holding `files` (each file's parent; the file itself
/// when it is a directory).
fn directories(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    files
        .iter()
        .filter_map(|f| {
            let abs = if f.is_absolute() { f.clone() } else { std::env::current_dir().ok()?.join(f) };
            abs.parent().map(|p| p.to_path_buf())
        })
        .collect()
}

/// Watch `wanted` and nothing else.
fn follow(w: &mut impl Watcher, watching: &mut BTreeSet<PathBuf>, wanted: BTreeSet<PathBuf>) {
    for dir in wanted.difference(watching) {
        if let Err(e) = w.watch(dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch a config directory");
        }
    }
    for dir in watching.difference(&wanted) {
        let _ = w.unwatch(dir);
    }
    *watching = wanted;
}

/// Reload `runtime` whenever a file it reads changes, until aborted.
pub async fn watch(runtime: Arc<Runtime>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the config's files; only SIGHUP, POST /reload and a slow poll reload it");
            None
        }
    };
    let mut watching: BTreeSet<PathBuf> = BTreeSet::new();
    let mut events = watcher.is_some();
    // The files' hash last tried: a broken file is reported once, not at
    // every poll, and an unchanged one costs no parse.
    let mut tried = Some(runtime.snapshot().hash.clone());
    loop {
        // Follow the files the config in force reads (a reload may name
        // new ones).
        if let Some(w) = watcher.as_mut() {
            follow(w, &mut watching, directories(&runtime.sources()));
        }
        let heard = tokio::select! {
            event = rx.recv(), if events => match event {
                Some(()) => true,
                // The watcher is gone: the poll alone from now on.
                None => {
                    events = false;
                    false
                }
            },
            _ = tokio::time::sleep(POLL) => false,
        };
        if heard {
            // Debounce: a ConfigMap update is several events; wait for quiet.
            while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, rx.recv()).await {}
            // A directory may have been replaced under its name (a symlink
            // swapped): watch every one afresh, before the files are read.
            if let Some(w) = watcher.as_mut() {
                for dir in std::mem::take(&mut watching) {
                    let _ = w.unwatch(&dir);
                }
                follow(w, &mut watching, directories(&runtime.sources()));
            }
        }
        let now = runtime.files_hash();
        if now == tried {
            continue;
        }
        tried = now;
        match runtime.reload().await {
            Ok(Reloaded::Applied { hash, .. }) => {
                tracing::info!(hash = %hash, trigger = if heard { "file change" } else { "poll" }, "config reloaded");
            }
            Ok(Reloaded::Unchanged) => {}
            // Logged and counted by the runtime; the snapshot in force stays.
            Err(_) => {}
        }
    }
}
