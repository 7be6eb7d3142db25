//! The commands as clients can discover them (MSC4332): each usage in
//! [`ALL`](super::ALL) expanded into the forms a client can fill in and send
//! as they are (`gk allow {target}`, `gk allow {target} for {duration}`),
//! each variable described, each form with its command's help line. Built
//! from the registry, so the event cannot drift from the parser (a test
//! sends every form back through it).

use serde_json::{Value, json};

use super::{ALL, Spec};
use crate::texts;

/// The sigil clients put before a form: `!gk …`, the conventional prefix.
pub const SIGIL: &str = "!";

/// The forms one usage stands for: alternatives (`a | b`, `<x>...|all`,
/// `<a|b>`) each a form of its own, an optional part (`[page <n>]`, or a
/// lone `[page]`, a variable) once left out and once put in, `<name>` a
/// variable `{name}`, a repeat (`...`) written once.
pub fn forms(usage: &str) -> Vec<String> {
    usage.split(" | ").flat_map(|alternative| sequence(alternative.trim())).collect()
}

fn sequence(s: &str) -> Vec<String> {
    let mut forms = vec![String::new()];
    for token in tokens(s) {
        let options = match token.strip_prefix('[').and_then(|t| t.strip_suffix(']')) {
            Some(inner) if !inner.contains([' ', '<']) => vec![String::new(), format!("{{{inner}}}")],
            Some(inner) => std::iter::once(String::new()).chain(sequence(inner)).collect(),
            None => word(&token),
        };
        forms = forms
            .iter()
            .flat_map(|form| {
                options.iter().map(move |option| match (form.is_empty(), option.is_empty()) {
                    (_, true) => form.clone(),
                    (true, false) => option.clone(),
                    (false, false) => format!("{form} {option}"),
                })
            })
            .collect();
    }
    forms
}

/// Words separated by spaces, a bracketed part as one.
fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ' ' if depth == 0 => {
                if !current.is_empty() {
                    out.push(std::mem::take(&mut current));
                }
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One word's options: `<x>` a variable, `<a|b>` a choice of words,
/// `<x>...|all` the variable or the word.
fn word(token: &str) -> Vec<String> {
    if let Some(inner) = token.strip_prefix('<').and_then(|t| t.strip_suffix('>'))
        && inner.contains('|')
    {
        return inner.split('|').map(str::to_owned).collect();
    }
    token
        .split('|')
        .map(|part| {
            let part = part.trim_end_matches("...");
            match part.strip_prefix('<').and_then(|p| p.strip_suffix('>')) {
                Some(name) => format!("{{{name}}}"),
                None => part.to_owned(),
            }
        })
        .collect()
}

/// The variables of a form, in order: `{name}`.
pub fn variables(form: &str) -> Vec<&str> {
    form.split('{').skip(1).filter_map(|rest| rest.split_once('}').map(|(name, _)| name)).collect()
}

/// MSC1767 text, as MSC4332 describes commands and variables.
fn text(body: &str) -> Value {
    json!({ "m.text": [{ "body": body }] })
}

/// One command's forms, as MSC4332 entries.
fn entries(spec: &Spec) -> Vec<Value> {
    forms(spec.usage)
        .into_iter()
        .map(|form| {
            let variables: serde_json::Map<String, Value> = variables(&form)
                .into_iter()
                .map(|name| (name.to_owned(), text(texts::variable_description(name).unwrap_or(name))))
                .collect();
            json!({
                "syntax": format!("gk {form}"),
                "variables": variables,
                "description": text(&texts::command_description(spec.summary)),
            })
        })
        .collect()
}

/// The content of the MSC4332 event: every command of the registry.
pub fn content() -> Value {
    json!({ "sigil": SIGIL, "commands": ALL.iter().flat_map(|spec| entries(spec)).collect::<Vec<_>>() })
}

#[cfg(test)]
mod tests {
    use super::super::{Command, find, parse};
    use super::*;

    #[test]
    fn usages_expand_into_forms_a_client_can_send() {
        assert_eq!(forms("stop"), ["stop"]);
        assert_eq!(forms("help [command]"), ["help", "help {command}"]);
        assert_eq!(forms("allow <target>... [for <duration>]"), ["allow {target}", "allow {target} for {duration}"]);
        assert_eq!(forms("block <target>...|all"), ["block {target}", "block all"]);
        assert_eq!(forms("reply | reply set <text> | reply reset"), ["reply", "reply set {text}", "reply reset"]);
        assert_eq!(forms("set <a|b> <value>"), ["set a {value}", "set b {value}"]);
        assert_eq!(forms("show <target> [page <n>]"), ["show {target}", "show {target} page {n}"]);
        assert_eq!(variables("show {target} page {n}"), ["target", "n"]);
    }

    /// What a client would put in for a variable.
    fn example(name: &str) -> &'static str {
        match name {
            "target" => "@someone:example.org",
            "duration" => "7d",
            "command" => "block",
            "page" | "n" => "2",
            "code" => "123456",
            _ => "x",
        }
    }

    /// The event is the registry: every command is in it with its help
    /// line, every variable is described, and every form, filled in as a
    /// client would and sent with the sigil, is that command for the parser.
    #[test]
    fn the_published_commands_are_the_registry() {
        let content = content();
        assert_eq!(content["sigil"], "!");
        let commands = content["commands"].as_array().unwrap();
        for spec in ALL {
            let mine: Vec<&Value> = commands
                .iter()
                .filter(|c| c["syntax"].as_str().unwrap().split(' ').nth(1) == Some(spec.name))
                .collect();
            assert!(!mine.is_empty(), "{} is not published", spec.name);
            for command in mine {
                let syntax = command["syntax"].as_str().unwrap();
                assert_eq!(
                    command["description"]["m.text"][0]["body"],
                    texts::command_description(spec.summary),
                    "{syntax}"
                );
                let names = variables(syntax);
                let described: Vec<&String> = command["variables"].as_object().unwrap().keys().collect();
                assert_eq!(described.len(), names.len(), "{syntax}");
                let mut filled = syntax.to_owned();
                for name in names {
                    assert!(texts::variable_description(name).is_some(), "{{{name}}} of {syntax} has no description");
                    filled = filled.replace(&format!("{{{name}}}"), example(name));
                }
                let sent = format!("{SIGIL}{filled}");
                let parsed = parse(&sent).unwrap_or_else(|| panic!("{sent} is no command"));
                assert!(!matches!(parsed, Command::Unknown { .. }), "{sent} is no command");
                if let Command::Invalid { usage, .. } = parsed {
                    assert_eq!(usage, spec.usage, "{sent}");
                }
            }
        }
        // Nothing published that the registry does not have.
        for command in commands {
            let name = command["syntax"].as_str().unwrap().split(' ').nth(1).unwrap();
            assert!(find(name).is_some(), "{name} is published but is no command");
        }
        // One event, well within what a homeserver takes.
        assert!(content.to_string().len() < 32_000);
    }
}
