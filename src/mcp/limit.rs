//! The MCP server's input, bounded: requests reach rmcp through [`bounded_lines`], which
//! passes each line through unless it is longer than [`MAX_REQUEST`]. An oversized line is
//! never held in memory: it is scanned as it streams by for its top-level `id`, and replaced
//! by a small `tools/call` of [`OVERSIZED_TOOL`], which the server answers with a clear
//! error. So the client always gets a reply, the server carries on, and nothing larger than
//! the daemon's request frame (4 MiB) is ever sent to it (such a frame breaks the
//! connection). rmcp alone drops a line over 16 MiB without a reply.
//!
//! Pure bytes in, bytes out; knows nothing of the tools.

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

/// The largest request line passed on (below the daemon's 4 MiB request frames).
pub const MAX_REQUEST: usize = 3 * 1024 * 1024;

/// The tool an oversized request is turned into; not listed, answered with an error.
pub const OVERSIZED_TOOL: &str = "__request_too_large";

/// Copy `input` to `out` line by line, replacing lines over [`MAX_REQUEST`] (see the module
/// doc). Ends at EOF of `input` (closing `out`, so the server sees its input end).
pub async fn bounded_lines(
    input: impl AsyncRead + Unpin,
    mut out: impl AsyncWrite + Unpin,
) -> std::io::Result<()> {
    let mut reader = BufReader::with_capacity(64 * 1024, input);
    let mut line: Vec<u8> = Vec::new();
    let mut oversized: Option<Scan> = None;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            if oversized.is_none() && !line.is_empty() {
                out.write_all(&line).await?;
            }
            out.shutdown().await?;
            return Ok(());
        }
        let (n, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let chunk = &buf[..n];
        match oversized.as_mut() {
            Some(scan) => scan.feed(chunk),
            None if line.len() + n > MAX_REQUEST => {
                let mut scan = Scan::default();
                scan.feed(&line);
                scan.feed(chunk);
                line = Vec::new();
                oversized = Some(scan);
            }
            None => line.extend_from_slice(chunk),
        }
        reader.consume(n);
        if end {
            match oversized.take() {
                Some(scan) => {
                    if let Some(request) = scan.replacement() {
                        out.write_all(request.as_bytes()).await?;
                        out.write_all(b"\n").await?;
                    }
                }
                None => {
                    out.write_all(&line).await?;
                    line.clear();
                }
            }
            out.flush().await?;
        }
    }
}

/// Where the scanner is in the top-level object.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the object, or expecting a key (after `{` or `,`).
    #[default]
    Key,
    /// Inside a key string.
    InKey,
    /// After a key, before `:`.
    Colon,
    /// After `:`, before the value.
    Value,
    /// Inside a top-level string value.
    InStr,
    /// Inside a top-level number, `true`, `false` or `null`.
    InScalar,
    /// Inside a nested object or array (depth > 1), or after a value.
    Other,
}

/// A streaming look at one JSON line: its size and its top-level `id`, in bounded memory.
#[derive(Debug, Default)]
struct Scan {
    bytes: usize,
    depth: u32,
    at: At,
    /// Inside a string below the top level.
    in_nested_str: bool,
    escaped: bool,
    key: Vec<u8>,
    value: Vec<u8>,
    /// The `id` as written (a number or a quoted string), if short enough to keep.
    id: Option<Vec<u8>>,
}

/// Longest key or value kept while scanning.
const KEEP: usize = 128;

impl Scan {
    fn feed(&mut self, chunk: &[u8]) {
        self.bytes += chunk.len();
        for &b in chunk {
            self.step(b);
        }
    }

    fn keep(buf: &mut Vec<u8>, b: u8) {
        if buf.len() <= KEEP {
            buf.push(b);
        }
    }

    fn step(&mut self, b: u8) {
        // Strings below the top level: only their end matters.
        if self.in_nested_str {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.in_nested_str = false,
                _ => {}
            }
            return;
        }
        match self.at {
            At::InKey | At::InStr => {
                let buf = if self.at == At::InKey {
                    &mut self.key
                } else {
                    &mut self.value
                };
                Self::keep(buf, b);
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') if self.at == At::InKey => self.at = At::Colon,
                    (false, b'"') => self.value_done(),
                    _ => {}
                }
                return;
            }
            At::InScalar if matches!(b, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n') => {
                self.value_done();
                // The delimiter is handled below as at the top level.
            }
            At::InScalar => {
                Self::keep(&mut self.value, b);
                return;
            }
            _ => {}
        }
        match b {
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.at = At::Key;
                } else if self.depth == 2 {
                    self.at = At::Other;
                }
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 1 {
                    self.at = At::Other;
                }
            }
            b'"' if self.depth == 1 && self.at == At::Key => {
                self.key.clear();
                self.at = At::InKey;
            }
            b'"' if self.depth == 1 && self.at == At::Value => {
                self.value.clear();
                self.value.push(b'"');
                self.at = At::InStr;
            }
            b'"' => self.in_nested_str = true,
            b':' if self.depth == 1 && self.at == At::Colon => self.at = At::Value,
            b',' if self.depth == 1 => self.at = At::Key,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if self.depth == 1 && self.at == At::Value => {
                self.value.clear();
                self.value.push(b);
                self.at = At::InScalar;
            }
            _ => {}
        }
    }

    fn value_done(&mut self) {
        if self.key == b"id\"" && self.value.len() <= KEEP {
            self.id = Some(std::mem::take(&mut self.value));
        }
        self.at = At::Other;
    }

    /// The request that stands for the oversized one, if it had an id to answer.
    fn replacement(&self) -> Option<String> {
        let id = self.id.as_ref()?;
        let id = std::str::from_utf8(id).ok()?;
        // Only a number or a string is a valid JSON-RPC id; check it parses as one.
        let parsed: serde_json::Value = serde_json::from_str(id).ok()?;
        if !(parsed.is_number() || parsed.is_string()) {
            return None;
        }
        Some(
            serde_json::json!({
                "jsonrpc": "2.0",
                "id": parsed,
                "method": "tools/call",
                "params": {"name": OVERSIZED_TOOL, "arguments": {"bytes": self.bytes}},
            })
            .to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(line: &str) -> Scan {
        let mut s = Scan::default();
        for chunk in line.as_bytes().chunks(7) {
            s.feed(chunk);
        }
        s
    }

    #[test]
    fn the_top_level_id_is_found_wherever_it_is() {
        let big = "x".repeat(1000);
        for (line, id) in [
            (
                format!(r#"{{"jsonrpc":"2.0","id":42,"params":{{"text":"{big}"}}}}"#),
                "42",
            ),
            (
                format!(r#"{{"params":{{"id":7,"t":"a\"}}b{big}"}},"id": "r-1" }}"#),
                "\"r-1\"",
            ),
            (
                r#"{"params":[1,{"id":3}],"method":"x","id":9}"#.to_string(),
                "9",
            ),
        ] {
            let s = scan(&line);
            assert_eq!(s.id.as_deref(), Some(id.as_bytes()), "{line:.80}");
            let r: serde_json::Value = serde_json::from_str(&s.replacement().unwrap()).unwrap();
            assert_eq!(r["params"]["name"], OVERSIZED_TOOL);
            assert_eq!(r["params"]["arguments"]["bytes"], line.len());
        }
        // A notification (no id) gets no reply.
        assert!(
            scan(r#"{"method":"x","params":{"id":1}}"#)
                .replacement()
                .is_none()
        );
    }

    #[tokio::test]
    async fn lines_pass_and_oversized_ones_are_replaced() {
        let small = "{\"id\":1}\n";
        let big = format!("{{\"id\":2,\"p\":\"{}\"}}\n", "y".repeat(MAX_REQUEST + 10));
        let input = format!("{small}{big}{small}");
        let mut out = Vec::new();
        bounded_lines(input.as_bytes(), &mut out).await.unwrap();
        let lines: Vec<&str> = std::str::from_utf8(&out).unwrap().lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], small.trim());
        assert!(lines[1].contains(OVERSIZED_TOOL) && lines[1].contains("\"id\":2"));
        assert_eq!(lines[2], small.trim());
    }
}
