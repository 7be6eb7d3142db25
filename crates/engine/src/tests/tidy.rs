//! Invariants read from the engine's own source: every sentence Gatekeeper
//! says is in `texts`. The rules decide; `texts` words it, so that wording
//! is reviewed in one place and never drifts between two rules.

use std::path::{Path, PathBuf};

/// Literals in the rules that look like sentences and are not said to
/// anyone (log lines, `expect` messages). There should be none.
const ALLOWED: &[&str] = &[];

/// The string literals of Rust source, comments and char literals skipped;
/// escapes are kept as written.
fn string_literals(source: &str) -> Vec<String> {
    let s: Vec<char> = source.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let ident = |c: char| c.is_alphanumeric() || c == '_';
    while i < s.len() {
        match s[i] {
            '/' if s.get(i + 1) == Some(&'/') => {
                while i < s.len() && s[i] != '\n' {
                    i += 1;
                }
            }
            '/' if s.get(i + 1) == Some(&'*') => {
                let mut depth = 0;
                while i < s.len() {
                    if s[i] == '/' && s.get(i + 1) == Some(&'*') {
                        depth += 1;
                        i += 1;
                    } else if s[i] == '*' && s.get(i + 1) == Some(&'/') {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            i += 1;
                            break;
                        }
                    }
                    i += 1;
                }
            }
            // A char literal ('"', '\'', '“'); otherwise a lifetime.
            '\'' if s.get(i + 1) == Some(&'\\') => {
                i += 2;
                while i < s.len() && s[i] != '\'' {
                    i += 1;
                }
                i += 1;
            }
            '\'' if s.get(i + 2) == Some(&'\'') => i += 3,
            'r' if (i == 0 || !ident(s[i - 1])) && matches!(s.get(i + 1), Some('"' | '#')) => {
                let hashes = s[i + 1..].iter().take_while(|c| **c == '#').count();
                if s.get(i + 1 + hashes) != Some(&'"') {
                    i += 1;
                    continue;
                }
                let start = i + 2 + hashes;
                let mut end = start;
                while end < s.len()
                    && !(s[end] == '"' && s[end + 1..].iter().take(hashes).filter(|c| **c == '#').count() == hashes)
                {
                    end += 1;
                }
                out.push(s[start..end.min(s.len())].iter().collect());
                i = end + 1 + hashes;
            }
            '"' => {
                let mut end = i + 1;
                while end < s.len() && s[end] != '"' {
                    end += if s[end] == '\\' { 2 } else { 1 };
                }
                out.push(s[i + 1..end.min(s.len())].iter().collect());
                i = end + 1;
            }
            _ => i += 1,
        }
    }
    out
}

/// Words for people: more than one word, ending like a sentence or a
/// label (`.`, `!`, `?`, `:`, `…`), or two sentences in one. A usage's
/// `<target>...` is not a full stop.
fn looks_like_a_sentence(literal: &str) -> bool {
    let text = literal.trim().trim_end_matches(['"', ')', '`', '”', '\'']);
    let ends = text.ends_with(['.', '!', '?', ':', '…']) && !text.ends_with("..");
    let next_starts = |rest: &str| rest.trim_start_matches(['(', '“', '"', '`']).starts_with(char::is_uppercase);
    let two =
        [". ", "! ", "? "].iter().any(|stop| text.match_indices(stop).any(|(at, _)| next_starts(&text[at + 2..])));
    text.contains(' ') && (ends || two)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("the engine's source is readable") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Sentence-like literals per file under `src/`, tests left out (the code
/// after a file's `#[cfg(test)]`, and the `tests/` directory).
fn sentences(src: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    files
        .into_iter()
        .filter(|f| !f.starts_with(src.join("tests")))
        .map(|f| {
            let source = std::fs::read_to_string(&f).expect("a readable source file");
            let code = source.split("\n#[cfg(test)]").next().unwrap_or_default();
            let found = string_literals(code).into_iter().filter(|l| looks_like_a_sentence(l)).collect();
            (f, found)
        })
        .collect()
}

#[test]
fn the_literal_scanner_skips_comments_and_chars_and_reads_raw_strings() {
    let source = r###"
        // "Not this one."
        /* "Nor this one." /* nested "Still not." */ */
        let quote = '"'; let escaped = '\''; fn f<'a>(x: &'a str) {}
        let plain = "Said once. Then again!";
        let raw = r#"A raw "quoted" one."#;
        let id = "gk.hold.invites";
    "###;
    assert_eq!(string_literals(source), ["Said once. Then again!", "A raw \"quoted\" one.", "gk.hold.invites"]);
    let sentences: Vec<String> = string_literals(source).into_iter().filter(|l| looks_like_a_sentence(l)).collect();
    assert_eq!(sentences, ["Said once. Then again!", "A raw \"quoted\" one."]);
    assert!(looks_like_a_sentence("Allowed {subject}{until}{released}."));
    assert!(looks_like_a_sentence("The reply now mentions {e}. (E-mail is not set up) Really"));
    assert!(!looks_like_a_sentence("who is waiting, numbered, with how many messages and since when"));
    assert!(!looks_like_a_sentence("{seed}:{n}:{action:?}"));
    assert!(!looks_like_a_sentence("allow <target>... [for <duration>]") && !looks_like_a_sentence("deny <target>..."));
}

#[test]
fn every_sentence_gatekeeper_says_is_in_texts() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let texts = src.join("texts");
    let mut in_texts = 0;
    let mut elsewhere = Vec::new();
    for (file, found) in sentences(&src) {
        if file.starts_with(&texts) {
            in_texts += found.len();
        } else {
            let shown = file.strip_prefix(&src).unwrap_or(&file).display().to_string();
            elsewhere.extend(
                found.into_iter().filter(|l| !ALLOWED.contains(&l.as_str())).map(|l| format!("{shown}: {l:?}")),
            );
        }
    }
    assert!(elsewhere.is_empty(), "sentences outside `texts` (move them into texts/):\n{}", elsewhere.join("\n"));
    // The scanner finds what it looks for: `texts` is full of sentences.
    assert!(in_texts > 60, "only {in_texts} sentences found in texts/");
}
