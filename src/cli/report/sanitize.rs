//! What reaches a terminal from a remote host: control characters shown, not obeyed.

/// Makes remote output harmless on a terminal: control characters other than newline and
/// tab become `^X` (ESC becomes `^[`), C1 controls `\u{..}`; invalid UTF-8 is replaced.
pub fn sanitize(bytes: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(bytes);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\t' => out.push(c),
            // A pty's line ends.
            '\r' if chars.peek() == Some(&'\n') => {}
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(b'@' + c as u8));
            }
            '\u{7f}' => out.push_str("^?"),
            c if ('\u{80}'..='\u{9f}').contains(&c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32));
            }
            c => out.push(c),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Output sanitizing (issue 14): what reaches a terminal from a remote host.

    fn clean(bytes: &[u8]) -> String {
        String::from_utf8(sanitize(bytes)).expect("sanitize writes UTF-8")
    }

    #[test]
    fn sanitize_shows_control_characters_in_caret_notation() {
        assert_eq!(clean(b"a\x00b\x07c\x08d\x7fe"), "a^@b^Gc^Hd^?e");
        assert_eq!(clean(b"\x1b[31mred\x1b[0m"), "^[[31mred^[[0m");
        // Title change and clear-screen sequences are defused the same way.
        assert_eq!(clean(b"\x1b]0;owned\x07"), "^[]0;owned^G");
        assert_eq!(clean(b"\x1b[2J\x1bc"), "^[[2J^[c");
        assert_eq!(clean(b"\x1f\x01"), "^_^A");
    }

    #[test]
    fn sanitize_keeps_text_newlines_and_tabs() {
        assert_eq!(clean(b"one\ttwo\nthree\n"), "one\ttwo\nthree\n");
        assert_eq!(clean("héllo ✓ 日本\n".as_bytes()), "héllo ✓ 日本\n");
        assert_eq!(clean(b""), "");
    }

    #[test]
    fn sanitize_drops_cr_only_before_lf() {
        assert_eq!(clean(b"a\r\nb\r\n"), "a\nb\n");
        // A lone CR would move the cursor back over what was written: shown instead.
        assert_eq!(clean(b"safe\rrm -rf"), "safe^Mrm -rf");
        assert_eq!(clean(b"a\r\r\n"), "a^M\n");
        assert_eq!(clean(b"end\r"), "end^M");
    }

    #[test]
    fn sanitize_escapes_c1_controls_and_replaces_invalid_utf8() {
        // U+009B (CSI) written as UTF-8 is a C1 control.
        assert_eq!(clean("x\u{9b}31my".as_bytes()), "x\\u{9b}31my");
        assert_eq!(clean("\u{80}\u{9f}".as_bytes()), "\\u{80}\\u{9f}");
        // The lone byte 0x9b is not UTF-8: replaced, never passed through.
        assert_eq!(clean(b"x\x9b31my"), "x\u{fffd}31my");
        assert_eq!(clean(b"\xff\xfe\n"), "\u{fffd}\u{fffd}\n");
        // A truncated multi-byte sequence at the end.
        assert_eq!(clean(b"ok\xe2\x9c"), "ok\u{fffd}");
        // U+00A0 is printable and kept.
        assert_eq!(clean("a\u{a0}b".as_bytes()), "a\u{a0}b");
    }

    #[test]
    fn sanitize_keeps_very_long_lines_whole() {
        let line: Vec<u8> = b"0123456789abcdef".repeat(1 << 16);
        let mut input = line.clone();
        input.extend_from_slice(b"\x1b\r\n");
        let out = sanitize(&input);
        assert_eq!(out.len(), line.len() + 3);
        assert_eq!(&out[..line.len()], &line[..]);
        assert_eq!(&out[line.len()..], b"^[\n");
    }

    proptest::proptest! {
        #[test]
        fn sanitized_output_is_utf8_without_terminal_controls(
            bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)
        ) {
            let out = String::from_utf8(sanitize(&bytes));
            proptest::prop_assert!(out.is_ok());
            for c in out.unwrap().chars() {
                let code = c as u32;
                proptest::prop_assert!(
                    c == '\n' || c == '\t' || (code >= 0x20 && code != 0x7f
                        && !(0x80..=0x9f).contains(&code)),
                    "{c:?} left in the output"
                );
            }
        }

        #[test]
        fn sanitize_changes_nothing_in_plain_text(text in "[ -~\n\t]{0,300}") {
            proptest::prop_assert_eq!(sanitize(text.as_bytes()), text.as_bytes());
        }
    }
}
