//! Splitting ssh_config lines the way OpenSSH 9.2 does (`readconf.c`
//! `process_config_line_depth`, `misc.c` `strdelim` and `argv_split`): a keyword, then `=` or
//! whitespace, then arguments with `"`/`'` quotes, `\` escapes and `#` comments.

/// OpenSSH's `WHITESPACE`.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// A line's keyword (lowercased) and the rest of the line after the separator, or `None`
/// for a blank or comment line. The rest may be empty (the caller reports the missing
/// argument).
pub(super) fn keyword(line: &str) -> Option<(String, &str)> {
    let line = line.trim_end_matches(|c| is_space(c) || c == '\x0c');
    let line = line.trim_start_matches(is_space);
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line
        .find(|c| is_space(c) || c == '=' || c == '"')
        .unwrap_or(line.len());
    let (word, rest) = line.split_at(end);
    // One `=` may stand between the keyword and its value, with whitespace around it.
    let rest = match rest.strip_prefix('=') {
        Some(after) => after.trim_start_matches(is_space),
        None => {
            let rest = rest.trim_start_matches(is_space);
            match rest.strip_prefix('=') {
                Some(after) => after.trim_start_matches(is_space),
                None => rest,
            }
        }
    };
    Some((word.to_ascii_lowercase(), rest))
}

/// The arguments of a line as OpenSSH's `argv_split` makes them (comments end the line at
/// the start of an argument; quotes group; `\` escapes a quote, a backslash or, outside
/// quotes, a space). `None` when a quote is not closed.
pub(super) fn arguments(text: &str) -> Option<Vec<String>> {
    let chars: Vec<char> = text.chars().collect();
    let mut args = Vec::new();
    let mut i = 0;
    while let Some(&c) = chars.get(i) {
        if c == ' ' || c == '\t' {
            i += 1;
            continue;
        }
        if c == '#' {
            break;
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        loop {
            let Some(&c) = chars.get(i) else {
                if quote.is_some() {
                    return None;
                }
                break;
            };
            if c == '\\' {
                match chars.get(i + 1) {
                    Some(&n)
                        if n == '\'' || n == '"' || n == '\\' || (quote.is_none() && n == ' ') =>
                    {
                        arg.push(n);
                        i += 2;
                    }
                    _ => {
                        arg.push(c);
                        i += 1;
                    }
                }
                continue;
            }
            match quote {
                None if c == ' ' || c == '\t' => break,
                None if c == '"' || c == '\'' => quote = Some(c),
                Some(q) if c == q => quote = None,
                _ => arg.push(c),
            }
            i += 1;
        }
        args.push(arg);
    }
    Some(args)
}

/// The words of a `Match` line as OpenSSH's `strdelim` takes them: separated by
/// whitespace or one `=`, `"` quoting (no escapes). `None` when a quote is not closed.
pub(super) fn match_words(text: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut rest = text.trim_start_matches(is_space);
    while !rest.is_empty() {
        let end = rest
            .find(|c| is_space(c) || c == '=' || c == '"')
            .unwrap_or(rest.len());
        let (head, tail) = rest.split_at(end);
        if let Some(quoted) = tail.strip_prefix('"') {
            let close = quoted.find('"')?;
            let (inside, after) = quoted.split_at(close);
            words.push(format!("{head}{inside}"));
            rest = after
                .get(1..)
                .unwrap_or_default()
                .trim_start_matches(is_space);
            continue;
        }
        words.push(head.to_owned());
        let mut tail = tail.trim_start_matches(is_space);
        if let Some(after) = tail.strip_prefix('=') {
            tail = after.trim_start_matches(is_space);
        }
        rest = tail;
    }
    Some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords() {
        assert_eq!(keyword("  # note"), None);
        assert_eq!(keyword("   "), None);
        assert_eq!(keyword("Port 22"), Some(("port".into(), "22")));
        assert_eq!(keyword("Port=22"), Some(("port".into(), "22")));
        assert_eq!(keyword("\tPort = 22  \r"), Some(("port".into(), "22")));
        assert_eq!(keyword("Port =22"), Some(("port".into(), "22")));
        assert_eq!(keyword("HostName"), Some(("hostname".into(), "")));
    }

    #[test]
    fn args() {
        let a = |s: &str| arguments(s).unwrap();
        assert_eq!(a("a b\tc"), ["a", "b", "c"]);
        assert_eq!(a("\"a b\" c # comment"), ["a b", "c"]);
        assert_eq!(a("a#b"), ["a#b"]);
        assert_eq!(a("'x y'z"), ["x yz"]);
        assert_eq!(a("a\\ b"), ["a b"]);
        assert_eq!(a("\"a\\\"b\""), ["a\"b"]);
        assert!(arguments("\"open").is_none());
    }

    #[test]
    fn match_line() {
        let m = |s: &str| match_words(s).unwrap();
        assert_eq!(m("host a,b user x"), ["host", "a,b", "user", "x"]);
        assert_eq!(
            m("exec \"test -f x\" host=y"),
            ["exec", "test -f x", "host", "y"]
        );
        assert_eq!(m("all # comment"), ["all", "#", "comment"]);
        assert!(match_words("exec \"open").is_none());
    }
}
