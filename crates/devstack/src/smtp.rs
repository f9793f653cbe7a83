//! A real SMTP server that keeps every message in memory: what the tests assert on and what
//! `ghostworks dev` delivers to. It speaks enough of RFC 5321 for any client (EHLO/HELO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT), relays nothing and needs no runtime: one thread per
//! connection. [`Sink::serve_json`] lists the messages over HTTP for the developer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::Result;

/// The largest message accepted (RFC 1870 SIZE); bigger ones are refused with 552.
pub const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
/// The longest command or text line accepted (RFC 5321 allows 1000 with CRLF; headers of
/// long encoded words are folded well below it).
pub const MAX_LINE_BYTES: usize = 4096;
/// A client silent for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// One received message: the envelope and the raw data as sent (CRLF line ends).
#[derive(Debug, Clone)]
pub struct Message {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    pub received_at: SystemTime,
}

impl Message {
    /// The first value of a top-level header (case-insensitive name, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        header(head(&self.data), name)
    }

    /// The decoded body of the first part whose content type starts with `mime` (e.g.
    /// `text/plain`), looking inside one level of multipart; a single-part message is its
    /// own part.
    pub fn part(&self, mime: &str) -> Option<String> {
        let (headers, body) = split_part(&self.data);
        let content_type = header(headers, "content-type").unwrap_or_default();
        match boundary(&content_type) {
            Some(b) => body
                .split(&format!("--{b}"))
                .skip(1)
                .filter(|p| !p.starts_with("--"))
                .find_map(|p| {
                    let (h, b) = split_part(p.trim_start_matches("\r\n"));
                    let ct = header(h, "content-type").unwrap_or_default();
                    if ct.to_ascii_lowercase().starts_with(mime) {
                        Some(decode(h, b.trim_end_matches("\r\n")))
                    } else {
                        // Nested multipart (e.g. alternative inside mixed).
                        boundary(&ct).and_then(|_| {
                            Message {
                                data: p.trim_start_matches("\r\n").to_string(),
                                ..self.clone()
                            }
                            .part(mime)
                        })
                    }
                }),
            None if content_type.to_ascii_lowercase().starts_with(mime)
                || (content_type.is_empty() && mime == "text/plain") =>
            {
                Some(decode(headers, body))
            }
            None => None,
        }
    }

    /// Every http(s) link of the plain-text part, in order.
    pub fn links(&self) -> Vec<String> {
        let text = self.part("text/plain").unwrap_or_default();
        text.split(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .filter(|w| w.starts_with("http://") || w.starts_with("https://"))
            .map(|w| w.trim_end_matches(['.', ',', ')']).to_string())
            .collect()
    }
}

fn head(data: &str) -> &str {
    split_part(data).0
}

fn split_part(data: &str) -> (&str, &str) {
    data.split_once("\r\n\r\n").unwrap_or((data, ""))
}

fn header(headers: &str, name: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for line in headers.split("\r\n") {
        if line.starts_with([' ', '\t']) {
            if let Some(v) = found.as_mut() {
                v.push(' ');
                v.push_str(line.trim());
                continue;
            }
        } else if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.trim().eq_ignore_ascii_case(name) {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
}

fn boundary(content_type: &str) -> Option<String> {
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return None;
    }
    let i = lower.find("boundary=")? + "boundary=".len();
    let rest = &content_type[i..];
    let b = match rest.strip_prefix('"') {
        Some(q) => q.split('"').next()?,
        None => rest.split(';').next()?.trim(),
    };
    Some(b.to_string())
}

/// Undoes the transfer encoding of a part: quoted-printable or none (7bit/8bit).
fn decode(headers: &str, body: &str) -> String {
    let qp = header(headers, "content-transfer-encoding")
        .is_some_and(|e| e.eq_ignore_ascii_case("quoted-printable"));
    if !qp {
        return body.to_string();
    }
    let mut out = Vec::with_capacity(body.len());
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'=');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

type Observer = Box<dyn Fn(&Message) + Send + Sync>;

struct Shared {
    messages: Mutex<Vec<Message>>,
    received: Condvar,
    held: Mutex<bool>,
    released: Condvar,
    observer: Option<Observer>,
}

/// A running sink. Cloning shares it; it runs until the process exits.
#[derive(Clone)]
pub struct Sink {
    shared: Arc<Shared>,
    addr: SocketAddr,
}

impl Sink {
    /// Listens on a free loopback port.
    pub fn start() -> Result<Self> {
        Self::start_observed(None)
    }

    /// Like [`Sink::start`], calling `observer` with every message as it arrives (e.g. to log
    /// the links of development e-mail).
    pub fn start_observed(observer: Option<Observer>) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            messages: Mutex::new(Vec::new()),
            received: Condvar::new(),
            held: Mutex::new(false),
            released: Condvar::new(),
            observer,
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name("smtp-sink".into())
            .spawn(move || {
                for stream in listener.incoming().flatten() {
                    let s = s.clone();
                    let _ = std::thread::Builder::new()
                        .name("smtp-session".into())
                        .spawn(move || {
                            let _ = session(stream, &s);
                        });
                }
            })?;
        Ok(Self { shared, addr })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The URL for `SMTP_URL`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Every message so far, oldest first.
    pub fn messages(&self) -> Vec<Message> {
        self.shared.messages.lock().unwrap().clone()
    }

    /// Messages with `rcpt` among their recipients (case-insensitive).
    pub fn messages_to(&self, rcpt: &str) -> Vec<Message> {
        self.messages()
            .into_iter()
            .filter(|m| m.to.iter().any(|t| t.eq_ignore_ascii_case(rcpt)))
            .collect()
    }

    /// Blocks until at least `n` messages have arrived, or `timeout`; returns how many did.
    pub fn wait_for_count(&self, n: usize, timeout: Duration) -> usize {
        let guard = self.shared.messages.lock().unwrap();
        let (guard, _) = self
            .shared
            .received
            .wait_timeout_while(guard, timeout, |m| m.len() < n)
            .unwrap();
        guard.len()
    }

    /// While held, sessions stop after `DATA` without answering it: their clients are stuck
    /// mid-delivery and nothing is stored until [`Sink::release`]. A client that disconnects
    /// meanwhile delivers nothing (how a crash mid-send looks from the server).
    pub fn hold(&self) {
        *self.shared.held.lock().unwrap() = true;
    }

    pub fn release(&self) {
        *self.shared.held.lock().unwrap() = false;
        self.shared.released.notify_all();
    }

    /// Serves the messages as JSON (`GET` any path) on a free loopback port, for development;
    /// returns its address.
    pub fn serve_json(&self) -> Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let sink = self.clone();
        std::thread::Builder::new()
            .name("smtp-sink-http".into())
            .spawn(move || {
                for mut stream in listener.incoming().flatten() {
                    let mut buf = [0u8; 4096];
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                    let _ = stream.read(&mut buf);
                    let body = sink.json();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            })?;
        Ok(addr)
    }

    fn json(&self) -> String {
        let items: Vec<serde_json::Value> = self
            .messages()
            .iter()
            .rev()
            .map(|m| {
                serde_json::json!({
                    "from": m.from,
                    "to": m.to,
                    "subject": m.header("subject"),
                    "received_at": m.received_at.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
                    "links": m.links(),
                    "text": m.part("text/plain"),
                })
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }
}

/// Reads one CRLF-terminated line of at most [`MAX_LINE_BYTES`]; None at end of stream.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.len() > MAX_LINE_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// The address inside `<…>` after a `MAIL FROM:` / `RCPT TO:` verb.
fn path_arg(line: &str) -> Option<String> {
    let start = line.find('<')? + 1;
    let end = start + line[start..].find('>')?;
    Some(line[start..end].to_string())
}

fn session(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut out = stream;
    out.write_all(b"220 ghostworks-sink ESMTP ready\r\n")?;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut reader)? {
        let cmd = line.trim_end();
        let verb = cmd
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &[u8] = match verb.as_str() {
            "EHLO" => {
                from = None;
                to.clear();
                out.write_all(
                    format!("250-ghostworks-sink\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250 SIZE {MAX_MESSAGE_BYTES}\r\n").as_bytes(),
                )?;
                continue;
            }
            "HELO" => {
                from = None;
                to.clear();
                b"250 ghostworks-sink\r\n"
            }
            "MAIL" => match path_arg(cmd) {
                Some(f) if cmd.to_ascii_uppercase().starts_with("MAIL FROM:") => {
                    from = Some(f);
                    to.clear();
                    b"250 OK\r\n"
                }
                _ => b"501 Syntax: MAIL FROM:<address>\r\n",
            },
            "RCPT" if from.is_none() => b"503 MAIL first\r\n",
            "RCPT" => match path_arg(cmd) {
                Some(t) if cmd.to_ascii_uppercase().starts_with("RCPT TO:") && !t.is_empty() => {
                    to.push(t);
                    b"250 OK\r\n"
                }
                _ => b"501 Syntax: RCPT TO:<address>\r\n",
            },
            "DATA" if to.is_empty() => b"503 RCPT first\r\n",
            "DATA" => {
                {
                    let held = shared.held.lock().unwrap();
                    let _released = shared.released.wait_while(held, |h| *h).unwrap();
                }
                out.write_all(b"354 End data with <CR><LF>.<CR><LF>\r\n")?;
                let mut data = String::new();
                let mut too_big = false;
                loop {
                    let Some(l) = read_line(&mut reader)? else {
                        // The client went away mid-message: nothing was delivered.
                        return Ok(());
                    };
                    if l == ".\r\n" || l == ".\n" {
                        break;
                    }
                    // Dot-stuffing (RFC 5321 4.5.2).
                    let l = l.strip_prefix('.').unwrap_or(&l);
                    if data.len() + l.len() > MAX_MESSAGE_BYTES {
                        too_big = true;
                    } else {
                        data.push_str(l);
                    }
                }
                if too_big {
                    b"552 Message exceeds the size limit\r\n"
                } else {
                    let message = Message {
                        from: from.take().unwrap_or_default(),
                        to: std::mem::take(&mut to),
                        data,
                        received_at: SystemTime::now(),
                    };
                    if let Some(observe) = &shared.observer {
                        observe(&message);
                    }
                    shared.messages.lock().unwrap().push(message);
                    shared.received.notify_all();
                    b"250 OK: queued\r\n"
                }
            }
            "RSET" => {
                from = None;
                to.clear();
                b"250 OK\r\n"
            }
            "NOOP" => b"250 OK\r\n",
            "QUIT" => {
                out.write_all(b"221 Bye\r\n")?;
                return Ok(());
            }
            _ => b"502 Command not implemented\r\n",
        };
        out.write_all(reply)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use lettre::message::{header::ContentTransferEncoding, MultiPart, SinglePart};
    use lettre::{Message as Email, SmtpTransport, Transport};

    fn transport(sink: &Sink) -> SmtpTransport {
        SmtpTransport::builder_dangerous("127.0.0.1")
            .port(sink.addr().port())
            .build()
    }

    #[test]
    fn lettre_delivers_multipart_mail_with_its_links() {
        let sink = Sink::start().unwrap();
        let link = format!("http://app.test/verify?token={}", "ab".repeat(40));
        let email = Email::builder()
            .from("Ghostworks <no-reply@example.com>".parse().unwrap())
            .to("Ada <ada@example.com>".parse().unwrap())
            .cc("bob@example.com".parse().unwrap())
            .subject("Verify your address")
            .multipart(
                MultiPart::alternative()
                    .singlepart(
                        SinglePart::builder()
                            .header(lettre::message::header::ContentType::TEXT_PLAIN)
                            .header(ContentTransferEncoding::QuotedPrintable)
                            .body(format!("Hello José,\r\n\r\nOpen {link} to verify.\r\n")),
                    )
                    .singlepart(SinglePart::html(format!(
                        "<p>Open <a href=\"{link}\">this link</a></p>"
                    ))),
            )
            .unwrap();
        transport(&sink).send(&email).unwrap();
        assert_eq!(sink.wait_for_count(1, Duration::from_secs(5)), 1);
        let m = &sink.messages_to("ADA@example.com")[0];
        assert_eq!(m.from, "no-reply@example.com");
        assert_eq!(m.to, vec!["ada@example.com", "bob@example.com"]);
        assert_eq!(m.header("subject").as_deref(), Some("Verify your address"));
        assert!(m.part("text/plain").unwrap().contains("Hello José"));
        assert_eq!(m.links(), vec![link.clone()]);
        assert!(m.part("text/html").unwrap().contains(&link));
        // The JSON listing shows it.
        let addr = sink.serve_json().unwrap();
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        assert!(body.starts_with("HTTP/1.1 200 OK"), "{body}");
        assert!(
            body.contains("Verify your address") && body.contains(&link),
            "{body}"
        );
    }

    #[test]
    fn protocol_order_reset_and_dot_stuffing() {
        let sink = Sink::start().unwrap();
        let s = TcpStream::connect(sink.addr()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut say = |line: &str| -> String {
            if !line.is_empty() {
                w.write_all(format!("{line}\r\n").as_bytes()).unwrap();
            }
            let mut reply = String::new();
            loop {
                let l = read_line(&mut r).unwrap().unwrap();
                reply.push_str(&l);
                if l.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        };
        assert!(say("").starts_with("220"));
        assert!(say("HELO me").starts_with("250"));
        assert!(say("RCPT TO:<a@example.com>").starts_with("503"));
        assert!(say("DATA").starts_with("503"));
        assert!(say("MAIL FROM:<me@example.com>").starts_with("250"));
        assert!(say("RCPT TO:<a@example.com>").starts_with("250"));
        assert!(say("RSET").starts_with("250"));
        assert!(say("DATA").starts_with("503"), "RSET forgot the recipients");
        assert!(say("NOOP").starts_with("250"));
        assert!(say("VRFY x").starts_with("502"));
        assert!(say("MAIL FROM:<me@example.com>").starts_with("250"));
        assert!(say("RCPT TO:<a@example.com>").starts_with("250"));
        assert!(say("DATA").starts_with("354"));
        assert!(say("Subject: dots\r\n\r\n..leading dot\r\n.").starts_with("250"));
        assert!(say("QUIT").starts_with("221"));
        let m = &sink.messages()[0];
        assert_eq!(m.data, "Subject: dots\r\n\r\n.leading dot\r\n");
        assert_eq!(m.part("text/plain").unwrap(), ".leading dot\r\n");
    }

    #[test]
    fn oversized_messages_and_lines_are_refused() {
        let sink = Sink::start().unwrap();
        let s = TcpStream::connect(sink.addr()).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut w = s;
        let mut line = || read_line(&mut r).unwrap().unwrap_or_default();
        line();
        w.write_all(b"HELO me\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            .unwrap();
        for _ in 0..4 {
            line();
        }
        let chunk = format!("{}\r\n", "x".repeat(1000));
        for _ in 0..(MAX_MESSAGE_BYTES / chunk.len() + 1) {
            w.write_all(chunk.as_bytes()).unwrap();
        }
        w.write_all(b".\r\n").unwrap();
        assert!(line().starts_with("552"));
        w.write_all(format!("NOOP {}\r\n", "y".repeat(MAX_LINE_BYTES)).as_bytes())
            .unwrap();
        assert_eq!(line(), "", "an over-long line ends the session");
        assert!(sink.messages().is_empty());
    }

    #[test]
    fn held_deliveries_wait_and_a_vanished_client_delivers_nothing() {
        let sink = Sink::start().unwrap();
        sink.hold();
        let s = TcpStream::connect(sink.addr()).unwrap();
        let mut w = s.try_clone().unwrap();
        // Like a real client, it waits for 354 before sending the message, and dies waiting.
        w.write_all(b"HELO me\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n")
            .unwrap();
        std::thread::sleep(Duration::from_millis(200));
        drop(w);
        drop(s);
        sink.release();
        // A client that stays connected is served once released.
        transport(&sink)
            .send(
                &Email::builder()
                    .from("a@example.com".parse().unwrap())
                    .to("c@example.com".parse().unwrap())
                    .subject("after")
                    .body(String::from("ok"))
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(sink.wait_for_count(1, Duration::from_secs(5)), 1);
        std::thread::sleep(Duration::from_millis(200));
        let all = sink.messages();
        assert_eq!(all.len(), 1, "{all:?}");
        assert_eq!(all[0].to, vec!["c@example.com"]);
    }
}
