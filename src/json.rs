//! Writing JSON string literals without allocation, for the report channel.

use core::fmt::{self, Write};

/// A [`fmt::Write`] adapter that escapes everything written through it as the
/// inside of a JSON string (quotes, backslashes and control characters).
pub struct JsonEscaper<W> {
    inner: W,
}

impl<W: Write> JsonEscaper<W> {
    /// Escapes into `inner`.
    pub fn new(inner: W) -> Self {
        Self { inner }
    }

    /// Gives the wrapped writer back.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for JsonEscaper<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match c {
                '"' => self.inner.write_str("\\\"")?,
                '\\' => self.inner.write_str("\\\\")?,
                '\n' => self.inner.write_str("\\n")?,
                c if (c as u32) < 0x20 => write!(self.inner, "\\u{:04x}", c as u32)?,
                c => self.inner.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Writes `args` to `out` as a complete JSON string literal, quotes included.
pub fn write_string(out: &mut impl Write, args: fmt::Arguments<'_>) -> fmt::Result {
    out.write_char('"')?;
    let mut escaper = JsonEscaper::new(&mut *out);
    escaper.write_fmt(args)?;
    out.write_char('"')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;

    #[test]
    fn escapes_what_json_requires() {
        let mut out = String::new();
        write_string(&mut out, format_args!("a \"b\" \\ {}\n\t", 5)).unwrap();
        assert_eq!(out, "\"a \\\"b\\\" \\\\ 5\\n\\u0009\"");
    }

    #[test]
    fn plain_text_passes_through() {
        let mut out = String::new();
        write_string(&mut out, format_args!("page fault at 0x1000 — µ")).unwrap();
        assert_eq!(out, "\"page fault at 0x1000 — µ\"");
    }
}
