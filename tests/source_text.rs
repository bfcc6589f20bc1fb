//! Texts the library logs are written across source lines with `\` continuations. A line
//! break lost in an edit leaves the next line's indentation inside the text: a log line with
//! a run of spaces in the middle ("above the remote's Maximum          Packet Size", seen in a
//! NanoMQ log). This scans the library's sources (not the CLI's, whose tables align columns
//! with spaces) for a string literal holding such a run.

use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if !p.ends_with("bin") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether a line holds, inside a string literal, a non-space, 6 or more spaces, a non-space.
fn spaced_literal(line: &str) -> bool {
    let mut in_str = false;
    let mut prev = '\0';
    let mut run = 0;
    let mut after_text = false;
    for c in line.chars() {
        if c == '"' && prev != '\\' {
            in_str = !in_str;
            run = 0;
            after_text = false;
        } else if in_str {
            if c == ' ' {
                run += 1;
            } else {
                if after_text && run >= 6 {
                    return true;
                }
                run = 0;
                after_text = true;
            }
        }
        prev = c;
    }
    false
}

#[test]
fn no_string_literal_holds_a_run_of_indentation() {
    let mut files = Vec::new();
    rust_files(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut files,
    );
    let mut bad = Vec::new();
    for f in &files {
        for (i, line) in std::fs::read_to_string(f).unwrap().lines().enumerate() {
            if !line.trim_start().starts_with("//") && spaced_literal(line) {
                bad.push(format!("{}:{}: {}", f.display(), i + 1, line.trim()));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn the_scan_finds_a_lost_line_break() {
    assert!(spaced_literal(
        r#"    "row 1 above the remote's Maximum          Packet Size","#
    ));
    assert!(!spaced_literal(r#"    "text \"#));
    assert!(!spaced_literal(r#"    let x = "a";          // comment"#));
}
