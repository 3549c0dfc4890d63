//! The README's examples, run the way a newcomer runs them: `narrowgate
//! demo` on its default ports, its printed lines pasted into a shell, then
//! every `sh` and `python` block of the README in order, in that one shell.
//! A block the test cannot run says so where it stands, with a reason
//! (`<!-- readme-test: skip: … -->` on the line before it).
//!
//! Every command must succeed, and every HTTP call must answer 2xx unless
//! its line says otherwise: a trailing `# 403` (or `# 403
//! tenant_not_allowed`, the reason checked too) is the status that line
//! must get. A Python `print(…)  # True` must print that.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_narrowgate");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const SKIP: &str = "<!-- readme-test: skip:";

/// One fenced block of the README.
#[derive(Debug)]
struct Block {
    /// The line of its opening fence (1-based).
    line: usize,
    lang: String,
    body: String,
    /// Why it is not run, when its marker says so.
    skip: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        let Some(lang) = line.strip_prefix("```").filter(|l| !l.is_empty()) else {
            if !line.trim().is_empty() {
                previous = line;
            }
            continue;
        };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let skip = previous.strip_prefix(SKIP).map(|r| r.trim_end_matches("-->").trim().to_string());
        out.push(Block { line: i + 1, lang: lang.trim().to_string(), body, skip });
        previous = "";
    }
    out
}

/// A shell line's expected status, from a trailing `# NNN [reason]`.
fn expectation(line: &str) -> Option<(&str, u16, Option<&str>)> {
    let at = line.rfind(" # ")?;
    let (code, comment) = (&line[..at], &line[at + 3..]);
    if code.trim().is_empty() || code.trim_start().starts_with('#') {
        return None;
    }
    let mut words = comment.split_whitespace();
    let status = words.next()?.parse::<u16>().ok().filter(|s| (100..600).contains(s))?;
    let reason = words.next().filter(|w| w.contains('_') && w.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
    Some((code, status, reason))
}

/// A shell block as run: each annotated line followed by its check.
fn shell(block: &Block) -> String {
    let mut script = String::new();
    for line in block.body.lines() {
        match expectation(line) {
            Some((code, status, reason)) => {
                script.push_str(&format!("{code}; ng_expect {status} {}\n", reason.unwrap_or("")));
            }
            None => {
                script.push_str(line);
                script.push('\n');
            }
        }
    }
    script
}

/// A Python block as run: each `print(x)  # v` also asserts it printed v.
fn python(block: &Block) -> String {
    let mut script = String::new();
    for line in block.body.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let checked = line.trim_start().strip_prefix("print(").and_then(|rest| {
            let (call, value) = rest.rsplit_once("# ")?;
            let expr = call.trim_end().strip_suffix(')')?;
            Some(format!(
                "{indent}_v = ({expr})\n{indent}print(_v)\n{indent}assert str(_v) == {value:?}, f\"printed {{_v!r}}, the README says {value}\"\n",
                value = value.trim()
            ))
        });
        script.push_str(&checked.unwrap_or_else(|| format!("{line}\n")));
    }
    format!("\"$NARROWGATE_TEST_PYTHON\" - <<'NG_PYTHON_BLOCK'\n{script}NG_PYTHON_BLOCK\n")
}

/// The demo's printed lines as pasted: a line after `# denied, 403
/// resource_not_allowed: …` must get that status and reason.
fn demo_lines(printed: &[String]) -> String {
    let mut script = String::new();
    let mut expect: Option<(u16, String)> = None;
    for line in printed {
        if let Some(rest) = line.strip_prefix("# denied, ") {
            let mut words = rest.split(|c: char| c.is_whitespace() || c == ':');
            let status = words.next().and_then(|w| w.parse().ok()).expect("a denial names its status");
            expect = Some((status, words.next().unwrap_or("").to_string()));
        }
        script.push_str(line);
        if !line.starts_with('#')
            && let Some((status, reason)) = expect.take()
        {
            script.push_str(&format!("; ng_expect {status} {reason}"));
        }
        script.push('\n');
    }
    script
}

/// What the shell knows before the first block: fail on any error; curl
/// records each status (and keeps the body) for `ng_expect`.
const PRELUDE: &str = r#"set -eo pipefail
trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT
curl() {
  local out
  out=$(command curl "$@" -w '\n%{http_code}') || return
  printf '%s\n' "${out%$'\n'*}" | tee "$NG_TEST_DIR/body"
  echo "S ${out##*$'\n'}" >> "$NG_TEST_DIR/statuses"
}
ng_expect() {
  local last
  last=$(tail -n 1 "$NG_TEST_DIR/statuses")
  if [ "$last" != "S $1" ]; then echo "readme-test: expected HTTP $1, got ${last#S }" >&2; return 1; fi
  if [ -n "$2" ] && ! grep -q "$2" "$NG_TEST_DIR/body"; then echo "readme-test: no $2 in the reply" >&2; return 1; fi
  echo "E $1" >> "$NG_TEST_DIR/statuses"
}
"#;

#[test]
#[ignore = "needs the Python environment for the README's Python blocks: scripts/test makes it"]
fn every_readme_block_runs_in_order_against_the_demo() {
    let readme = std::fs::read_to_string(format!("{ROOT}/README.md")).expect("README.md");
    let all = blocks(&readme);
    let python_ok = std::env::var_os("NARROWGATE_TEST_PYTHON").is_some();
    assert!(python_ok, "NARROWGATE_TEST_PYTHON is not set: scripts/test makes the Python environment and sets it");

    // Which blocks run: every sh and python block but those marked, and a
    // marker always has its reason and stands before a block that would run.
    let runnable = |b: &Block| matches!(b.lang.as_str(), "sh" | "python");
    for b in &all {
        if let Some(why) = &b.skip {
            assert!(why.len() > 10, "README:{}: a skip needs its reason", b.line);
            assert!(runnable(b), "README:{}: a skip marker before a {} block", b.line, b.lang);
        }
    }
    assert!(
        readme.matches(SKIP).count() == all.iter().filter(|b| b.skip.is_some()).count(),
        "every skip marker stands right before its block"
    );
    let run: Vec<&Block> = all.iter().filter(|b| runnable(b) && b.skip.is_none()).collect();
    assert!(run.len() >= 6, "the README's runnable blocks were found: {run:?}");
    let skipped: Vec<String> =
        all.iter().filter_map(|b| b.skip.as_ref().map(|w| format!("README:{} ({w})", b.line))).collect();
    eprintln!("skipped: {skipped:?}");

    // The demo, as the README's first command starts it, on its ports.
    let mut demo = Command::new(BIN)
        .arg("demo")
        .current_dir(ROOT)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn demo");
    let stdout = demo.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut printed = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("Ctrl-C");
            printed.push(line);
            if done {
                break;
            }
        }
        let _ = tx.send(printed);
    });
    let printed = rx.recv_timeout(Duration::from_secs(60)).expect("the demo printed its lines");
    assert!(printed.iter().any(|l| l.starts_with("export NG_ADMIN_TOKEN=")), "{printed:?}");

    // One shell: the demo's lines pasted (its comments are comments), then
    // each block, with a line saying which one runs.
    let dir = tempfile::tempdir().expect("tempdir");
    let mut script = String::from(PRELUDE);
    script.push_str("echo '== the demo'\"'\"'s lines'\n");
    script.push_str(&demo_lines(&printed));
    for b in &run {
        script.push_str(&format!("echo '== README:{}'\n", b.line));
        script.push_str(&if b.lang == "sh" { shell(b) } else { python(b) });
    }
    // What the blocks left running in the background (the sidecar).
    script.push_str("echo '== done'\n");
    let bin_dir = std::path::Path::new(BIN).parent().expect("bin dir");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let mut shell = Command::new("bash");
    shell
        .arg("-c")
        .arg(&script)
        .current_dir(ROOT)
        .env("PATH", path)
        .env("NG_TEST_DIR", dir.path())
        .env_remove("NARROWGATE_TOKEN")
        .env_remove("NARROWGATE_API")
        .stdin(Stdio::null());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut shell, 0);
    // Output to files: a job left in the background keeps no pipe open.
    let file = |name: &str| std::fs::File::create(dir.path().join(name)).expect("output file");
    let child = shell.stdout(file("stdout")).stderr(file("stderr")).spawn().expect("bash");
    let group = child.id();
    let status = wait_with_timeout(child, Duration::from_secs(240));
    // Whatever is left of the shell's jobs, and the demo.
    let _ = Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).stderr(Stdio::null()).status();
    let _ = demo.kill();
    let _ = demo.wait();
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap_or_default();
    let (stdout, stderr) = (read("stdout"), read("stderr"));
    let last = stdout.lines().rev().find(|l| l.starts_with("== ")).unwrap_or("before the first block");
    let status = status.unwrap_or_else(|| panic!("timed out in {last}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"));
    assert!(status.success(), "failed in {last}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}");
    assert!(stdout.contains("== done"), "{stdout}");

    // Every status that is not 2xx was the one its line expected.
    let statuses = std::fs::read_to_string(dir.path().join("statuses")).expect("statuses");
    let lines: Vec<&str> = statuses.lines().collect();
    let calls = lines.iter().filter(|l| l.starts_with("S ")).count();
    assert!(calls >= 20, "the demo's and the README's calls were made: {statuses}");
    for (i, l) in lines.iter().enumerate() {
        let Some(code) = l.strip_prefix("S ") else { continue };
        let expected = lines.get(i + 1).is_some_and(|next| next.strip_prefix("E ") == Some(code));
        assert!(
            code.starts_with('2') || expected,
            "call {i} got HTTP {code} and no line expected it:\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        );
    }
}

fn wait_with_timeout(mut child: std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some(status);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_annotations_are_read_as_written() {
    assert_eq!(expectation("curl -s x   # 403"), Some(("curl -s x  ", 403, None)));
    assert_eq!(
        expectation("curl -s x   # 403 tenant_not_allowed"),
        Some(("curl -s x  ", 403, Some("tenant_not_allowed")))
    );
    assert_eq!(expectation("curl -s x   # 200 read: allowed"), Some(("curl -s x  ", 200, None)));
    assert_eq!(expectation("narrowgate token whoami   # the admin's grant"), None);
    assert_eq!(expectation("# 1. The image"), None);
    let b =
        blocks("intro\n<!-- readme-test: skip: a reason long enough -->\n```sh\necho hi\n```\n\n```yaml\na: 1\n```\n");
    assert_eq!(b.len(), 2);
    assert_eq!(b[0].skip.as_deref(), Some("a reason long enough"));
    assert_eq!((b[1].lang.as_str(), b[1].skip.as_deref()), ("yaml", None));
    let p =
        python(&Block { line: 1, lang: "python".into(), body: "    print(f(x))        # True\n".into(), skip: None });
    assert!(p.contains("    _v = (f(x))\n    print(_v)\n    assert str(_v) == \"True\""), "{p}");
}
