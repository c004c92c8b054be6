//! Test support: [`SmtpCatcher`], a small real SMTP server on 127.0.0.1 that records
//! every message it is given, and helpers to read those messages; the service's test
//! environment ([`kit`]) and a mail renderer for it ([`PlainMailRenderer`]).
//!
//! It speaks enough SMTP for lettre and other clients (EHLO/HELO, MAIL FROM,
//! RCPT TO, DATA with dot-unstuffing, RSET, NOOP, QUIT, several messages per
//! connection), without AUTH or TLS: point a mailer at it with `tls = "none"`.
//! It runs on its own thread with its own tokio runtime, so it works from plain
//! `#[test]` functions as well as from async tests, and stops when dropped.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

/// The service's test environment: database, tenant, service, SMTP catcher, clock.
pub mod kit;
/// A mail renderer for tests that run without the server's templates.
pub mod plain_mail;
/// A scripted SAML identity provider: signed responses, honest or hostile.
pub mod saml_idp;
/// A software passkey authenticator, for the passkey ceremonies.
pub mod soft_authenticator;

pub use plain_mail::PlainMailRenderer;

/// A new bearer secret and its stored digest, made as the service makes them (for
/// tests that put sessions and links into the store directly).
pub fn secret() -> (String, String) {
    crate::secrets::generate()
}

/// The stored digest of a bearer secret.
pub fn secret_digest(secret: &str) -> String {
    crate::secrets::digest(secret)
}

/// Every credential's `data` column as the database holds it, for unit tests that
/// check what is stored (diesel is only a dev-dependency, hence `cfg(test)`).
#[cfg(test)]
pub(crate) fn stored_credential_data(
    conn: &mut gatehouse_identity_store::AnyConnection,
) -> Vec<String> {
    use diesel::prelude::*;

    #[derive(QueryableByName)]
    struct Raw {
        #[diesel(sql_type = diesel::sql_types::Text)]
        data: String,
    }

    diesel::sql_query("SELECT data FROM credentials")
        .load::<Raw>(conn)
        .unwrap()
        .into_iter()
        .map(|raw| raw.data)
        .collect()
}

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// The longest line (command or message line) the catcher accepts.
const MAX_LINE: usize = 64 * 1024;

/// One message as the SMTP server received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaughtMail {
    /// The envelope sender (`MAIL FROM`), without angle brackets.
    pub from: String,
    /// The envelope recipients (`RCPT TO`), without angle brackets.
    pub to: Vec<String>,
    /// The message (headers and body) as transmitted, dot-unstuffed, CRLF line ends.
    pub data: String,
}

#[derive(Debug, Default)]
struct Shared {
    messages: Mutex<Vec<CaughtMail>>,
    arrived: Condvar,
}

/// A recording SMTP server; see the module docs.
#[derive(Debug)]
pub struct SmtpCatcher {
    port: u16,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SmtpCatcher {
    /// Starts listening on a free port of 127.0.0.1. Panics if it cannot.
    pub fn start() -> SmtpCatcher {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the SMTP catcher");
        listener
            .set_nonblocking(true)
            .expect("make the SMTP catcher's listener non-blocking");
        let port = listener.local_addr().expect("SMTP catcher address").port();
        let shared = Arc::new(Shared::default());
        let (shutdown, mut stop) = oneshot::channel::<()>();
        let state = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("smtp-catcher-{port}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("SMTP catcher runtime");
                runtime.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("SMTP catcher listener");
                    loop {
                        tokio::select! {
                            _ = &mut stop => break,
                            accepted = listener.accept() => {
                                if let Ok((stream, _)) = accepted {
                                    tokio::spawn(serve(stream, Arc::clone(&state)));
                                }
                            }
                        }
                    }
                });
            })
            .expect("spawn the SMTP catcher thread");
        SmtpCatcher {
            port,
            shared,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<CaughtMail> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// Waits until at least `count` messages have arrived and returns them all.
    /// Panics after `timeout` if fewer arrived.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<CaughtMail> {
        let deadline = Instant::now() + timeout;
        let mut messages = self.shared.messages.lock().unwrap();
        while messages.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                panic!(
                    "expected {count} mail(s) within {timeout:?}, got {}: {messages:#?}",
                    messages.len()
                );
            }
            messages = self.shared.arrived.wait_timeout(messages, left).unwrap().0;
        }
        messages.clone()
    }
}

impl Drop for SmtpCatcher {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One SMTP session. Any I/O error ends it quietly: the client is gone.
async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let _ = session(stream, &shared).await;
}

async fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    write
        .write_all(b"220 localhost gatehouse SMTP catcher ready\r\n")
        .await?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    loop {
        let Some(line) = read_line(&mut read).await? else {
            return Ok(());
        };
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb.to_ascii_uppercase(), arg.trim()),
            None => (line.to_ascii_uppercase(), ""),
        };
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                b"250-localhost greets you\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE 10485760\r\n"
            }
            "HELO" => b"250 localhost\r\n",
            "MAIL" => match path_argument(arg, "FROM:") {
                Some(address) => {
                    from = Some(address);
                    to.clear();
                    b"250 2.1.0 OK\r\n"
                }
                None => b"501 5.5.4 syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" => match (&from, path_argument(arg, "TO:")) {
                (None, _) => b"503 5.5.1 MAIL first\r\n",
                (Some(_), Some(address)) if !address.is_empty() => {
                    to.push(address);
                    b"250 2.1.5 OK\r\n"
                }
                (Some(_), _) => b"501 5.5.4 syntax: RCPT TO:<address>\r\n",
            },
            "DATA" => {
                if from.is_none() || to.is_empty() {
                    b"503 5.5.1 MAIL and RCPT first\r\n"
                } else {
                    write
                        .write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                        .await?;
                    let Some(data) = read_data(&mut read).await? else {
                        return Ok(());
                    };
                    let mail = CaughtMail {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                    };
                    shared.messages.lock().unwrap().push(mail);
                    shared.arrived.notify_all();
                    b"250 2.0.0 OK: queued\r\n"
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 2.0.0 OK\r\n"
            }
            "NOOP" => b"250 2.0.0 OK\r\n",
            "VRFY" => b"252 2.1.5 cannot verify, but will accept\r\n",
            "QUIT" => {
                write.write_all(b"221 2.0.0 Bye\r\n").await?;
                return Ok(());
            }
            _ => b"500 5.5.2 command not recognized\r\n",
        };
        write.write_all(reply).await?;
    }
}

/// One line without its CRLF (or bare LF); `None` at end of stream.
async fn read_line<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = (&mut *read)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The message after DATA up to the lone `.` line, dot-unstuffed.
async fn read_data<R: AsyncBufReadExt + Unpin>(read: &mut R) -> std::io::Result<Option<String>> {
    let mut data = String::new();
    loop {
        let Some(line) = read_line(read).await? else {
            return Ok(None);
        };
        if line == "." {
            return Ok(Some(data));
        }
        data.push_str(line.strip_prefix('.').unwrap_or(&line));
        data.push_str("\r\n");
    }
}

/// `FROM:<a@b> BODY=8BITMIME` → `a@b` (also tolerates a space after the colon).
fn path_argument(arg: &str, keyword: &str) -> Option<String> {
    let head = arg.get(..keyword.len())?;
    if !head.eq_ignore_ascii_case(keyword) {
        return None;
    }
    let rest = arg[keyword.len()..].trim_start();
    let rest = rest.strip_prefix('<')?;
    let (address, _params) = rest.split_once('>')?;
    Some(address.to_owned())
}

/// A MIME entity: unfolded headers and the raw (still transfer-encoded) body.
struct Entity<'a> {
    headers: Vec<(String, String)>,
    body: &'a str,
}

impl<'a> Entity<'a> {
    fn parse(data: &'a str) -> Entity<'a> {
        let (head, body) = match data.find("\r\n\r\n") {
            Some(i) => (&data[..i], &data[i + 4..]),
            None => match data.find("\n\n") {
                Some(i) => (&data[..i], &data[i + 2..]),
                None => (data, ""),
            },
        };
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in head.lines() {
            if line.starts_with([' ', '\t']) {
                if let Some((_, value)) = headers.last_mut() {
                    value.push(' ');
                    value.push_str(line.trim());
                }
            } else if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_owned(), value.trim().to_owned()));
            }
        }
        Entity { headers, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `text/plain` for `text/plain; charset=utf-8`; RFC 2045's default when absent.
    fn mime_type(&self) -> String {
        self.header("Content-Type")
            .unwrap_or("text/plain")
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }

    fn parameter(&self, header: &str, parameter: &str) -> Option<String> {
        self.header(header)?.split(';').skip(1).find_map(|p| {
            let (name, value) = p.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case(parameter)
                .then(|| value.trim().trim_matches('"').to_owned())
        })
    }

    fn decoded_body(&self) -> String {
        let encoding = self
            .header("Content-Transfer-Encoding")
            .unwrap_or("7bit")
            .to_ascii_lowercase();
        match encoding.as_str() {
            "base64" => {
                let compact: String = self.body.split_whitespace().collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .expect("base64 body");
                String::from_utf8_lossy(&bytes).into_owned()
            }
            "quoted-printable" => decode_quoted_printable(self.body),
            _ => self.body.to_owned(),
        }
        .replace("\r\n", "\n")
    }

    /// The first leaf part of type `mime_type`, searching nested multiparts.
    fn find_part(&self, mime_type: &str) -> Option<String> {
        let own = self.mime_type();
        if own.starts_with("multipart/") {
            let boundary = self.parameter("Content-Type", "boundary")?;
            return split_multipart(self.body, &boundary)
                .into_iter()
                .find_map(|part| Entity::parse(part).find_part(mime_type));
        }
        (own == mime_type).then(|| self.decoded_body())
    }
}

/// The parts between `--boundary` lines, up to `--boundary--`.
fn split_multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    for line in body.split_inclusive('\n') {
        let trimmed = line.trim_end();
        if trimmed == delimiter || trimmed == format!("{delimiter}--") {
            if let Some(s) = start {
                // Drop the CRLF that belongs to the delimiter line.
                let end = body[..offset]
                    .strip_suffix("\r\n")
                    .or_else(|| body[..offset].strip_suffix('\n'))
                    .map_or(offset, str::len);
                parts.push(&body[s..end.max(s)]);
            }
            if trimmed.ends_with("--") && trimmed != delimiter {
                break;
            }
            start = Some(offset + line.len());
        }
        offset += line.len();
    }
    parts
}

fn decode_quoted_printable(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes.get(i + 1..i + 3) == Some(b"\r\n") => i += 3,
            b'=' if bytes.get(i + 1) == Some(&b'\n') => i += 2,
            b'=' => match bytes
                .get(i + 1..i + 3)
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    i += 3;
                }
                None => {
                    out.push(b'=');
                    i += 1;
                }
            },
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?…?=`, `=?utf-8?q?…?=`) in a header value.
fn decode_header_value(value: &str) -> String {
    let mut out = String::new();
    let mut rest = value;
    let mut previous_was_encoded = false;
    while let Some(start) = rest.find("=?") {
        let (before, candidate) = rest.split_at(start);
        let decoded = encoded_word(candidate);
        let Some((text, consumed)) = decoded else {
            out.push_str(before);
            out.push_str("=?");
            rest = &candidate[2..];
            previous_was_encoded = false;
            continue;
        };
        // Whitespace between two encoded words is not part of the text.
        if !(previous_was_encoded && before.trim().is_empty()) {
            out.push_str(before);
        }
        out.push_str(&text);
        rest = &candidate[consumed..];
        previous_was_encoded = true;
    }
    out.push_str(rest);
    out
}

/// One encoded word at the start of `s`: its text and how many bytes it took.
fn encoded_word(s: &str) -> Option<(String, usize)> {
    let inner = s.strip_prefix("=?")?;
    let (_charset, rest) = inner.split_once('?')?;
    let (encoding, rest) = rest.split_once('?')?;
    let end = rest.find("?=")?;
    let payload = &rest[..end];
    let consumed = s.len() - rest.len() + end + 2;
    let text = match encoding.to_ascii_lowercase().as_str() {
        "b" => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(payload)
                .ok()?;
            String::from_utf8_lossy(&bytes).into_owned()
        }
        "q" => decode_quoted_printable(&payload.replace('_', " ")),
        _ => return None,
    };
    Some((text, consumed))
}

impl CaughtMail {
    /// A top-level header, unfolded and with RFC 2047 encoded words decoded.
    /// The name is case-insensitive.
    pub fn header(&self, name: &str) -> Option<String> {
        Entity::parse(&self.data)
            .header(name)
            .map(decode_header_value)
    }

    /// The plain-text body (the `text/plain` part of a multipart message), with the
    /// transfer encoding undone and LF line ends. Panics if there is none.
    pub fn text_body(&self) -> String {
        Entity::parse(&self.data)
            .find_part("text/plain")
            .unwrap_or_else(|| panic!("no text/plain part in:\n{}", self.data))
    }

    /// The HTML body, if the message has a `text/html` part.
    pub fn html_body(&self) -> Option<String> {
        Entity::parse(&self.data).find_part("text/html")
    }

    /// The first URL starting with `prefix` in the text body (or else the HTML body),
    /// up to whitespace, a quote or an angle bracket.
    pub fn find_link(&self, prefix: &str) -> Option<String> {
        let entity = Entity::parse(&self.data);
        let bodies = [
            entity.find_part("text/plain"),
            entity.find_part("text/html"),
        ];
        bodies.into_iter().flatten().find_map(|body| {
            let start = body.find(prefix)?;
            let link: String = body[start..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '<' | '>'))
                .collect();
            Some(link.replace("&amp;", "&"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpStream;

    /// Drives the catcher by hand, the way a minimal client would.
    struct Client {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Client {
        fn connect(port: u16) -> Client {
            let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut client = Client {
                reader: BufReader::new(stream.try_clone().unwrap()),
                writer: stream,
            };
            assert!(client.reply().starts_with("220 "));
            client
        }

        /// The whole (possibly multi-line) reply.
        fn reply(&mut self) -> String {
            let mut all = String::new();
            loop {
                let mut line = String::new();
                self.reader.read_line(&mut line).unwrap();
                all.push_str(&line);
                if line.len() < 4 || line.as_bytes()[3] != b'-' {
                    return all;
                }
            }
        }

        fn send(&mut self, line: &str) -> String {
            // One write per command: two small writes would wait on Nagle + delayed ACK.
            self.writer
                .write_all(format!("{line}\r\n").as_bytes())
                .unwrap();
            self.reply()
        }
    }

    #[test]
    fn speaks_smtp_by_hand() {
        let catcher = SmtpCatcher::start();
        let mut c = Client::connect(catcher.port());
        assert!(c.send("EHLO client.test").starts_with("250-"));
        assert!(c.send("RCPT TO:<x@y>").starts_with("503"));
        assert!(c.send("DATA").starts_with("503"));
        assert!(c.send("NOOP").starts_with("250"));
        assert!(
            c.send("MAIL FROM:<a@example.com> BODY=8BITMIME")
                .starts_with("250")
        );
        assert!(c.send("RCPT TO:<b@example.com>").starts_with("250"));
        assert!(c.send("RCPT TO: <c@example.com>").starts_with("250"));
        assert!(c.send("DATA").starts_with("354"));
        let reply = c.send("Subject: one\r\n\r\n..leading dot\r\nbody\r\n.");
        assert!(reply.starts_with("250"), "{reply}");
        // A second message on the same connection, after a reset.
        assert!(c.send("MAIL FROM:<z@example.com>").starts_with("250"));
        assert!(c.send("RSET").starts_with("250"));
        assert!(c.send("HELO again").starts_with("250"));
        assert!(c.send("mail from:<d@example.com>").starts_with("250"));
        assert!(c.send("rcpt to:<e@example.com>").starts_with("250"));
        assert!(c.send("DATA").starts_with("354"));
        assert!(c.send("Subject: two\r\n\r\nsecond\r\n.").starts_with("250"));
        assert!(c.send("BOGUS").starts_with("500"));
        assert!(c.send("QUIT").starts_with("221"));

        let caught = catcher.wait_for(2, Duration::from_secs(10));
        assert_eq!(caught[0].from, "a@example.com");
        assert_eq!(caught[0].to, ["b@example.com", "c@example.com"]);
        assert_eq!(
            caught[0].data,
            "Subject: one\r\n\r\n.leading dot\r\nbody\r\n"
        );
        assert_eq!(caught[0].text_body(), ".leading dot\nbody\n");
        assert_eq!(caught[1].from, "d@example.com");
        assert_eq!(caught[1].to, ["e@example.com"]);
        assert_eq!(caught[1].header("subject").as_deref(), Some("two"));
        assert_eq!(catcher.messages().len(), 2);
    }

    #[test]
    fn decodes_transfer_encodings_and_multipart() {
        let data = "Subject: =?utf-8?b?R3LDvMOfZQ==?= =?utf-8?q?_aus_Wien?=\r\n\
                    Content-Type: multipart/alternative;\r\n boundary=\"XYZ\"\r\n\
                    \r\n\
                    preamble\r\n\
                    --XYZ\r\n\
                    Content-Type: text/plain; charset=utf-8\r\n\
                    Content-Transfer-Encoding: quoted-printable\r\n\
                    \r\n\
                    Gr=C3=BC=C3=9Fe, open https://id.example.com/verify?token=3Dab=\r\n\
                    cd now\r\n\
                    --XYZ\r\n\
                    Content-Type: text/html; charset=utf-8\r\n\
                    Content-Transfer-Encoding: base64\r\n\
                    \r\n\
                    PGEgaHJlZj0iaHR0cHM6Ly9pZC5leGFtcGxlLmNvbS9odG1sIj54PC9hPg==\r\n\
                    --XYZ--\r\n";
        let mail = CaughtMail {
            from: String::new(),
            to: Vec::new(),
            data: data.to_owned(),
        };
        assert_eq!(mail.header("SUBJECT").as_deref(), Some("Grüße aus Wien"));
        assert_eq!(
            mail.text_body(),
            "Grüße, open https://id.example.com/verify?token=abcd now"
        );
        assert_eq!(
            mail.html_body().as_deref(),
            Some("<a href=\"https://id.example.com/html\">x</a>")
        );
        assert_eq!(
            mail.find_link("https://id.example.com/").as_deref(),
            Some("https://id.example.com/verify?token=abcd")
        );
        assert_eq!(
            mail.find_link("https://id.example.com/html").as_deref(),
            Some("https://id.example.com/html")
        );
        assert_eq!(mail.find_link("https://elsewhere/"), None);
    }
}
