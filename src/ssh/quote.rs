//! Quoting values as single POSIX shell words, so that no value can inject shell code.

/// Returns `value` as one POSIX shell word: unchanged when it holds only characters that
/// are never special (`A-Z a-z 0-9 _ @ % + = : , . / -`), otherwise wrapped in single quotes
/// with each `'` written as `'\''`. The empty string becomes `''`.
///
/// ```
/// assert_eq!(rexec::shell_quote("web01"), "web01");
/// assert_eq!(rexec::shell_quote("a b"), "'a b'");
/// assert_eq!(rexec::shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
/// ```
pub fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        return value.to_owned();
    }
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('\'');
    for c in value.chars() {
        if c == '\'' {
            quoted.push_str("'\\''");
        } else {
            quoted.push(c);
        }
    }
    quoted.push('\'');
    quoted
}
