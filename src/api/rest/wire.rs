//! The JSON error body for the few answers hyper gives by itself.
//!
//! A request hyper cannot parse never reaches the router: a garbage request
//! line (400), a URI too long (414), a head with too many or too large
//! header fields (431). hyper answers those with an empty body and closes
//! the connection, and offers no hook to change that. Every other failure
//! of the REST API has the body `{"error":{"code","message"}}`, so
//! [`JsonErrorListener`] hands hyper connections whose write side notices
//! such an answer (one of those three statuses with no body: the router's
//! own errors always have one) and sends it with the JSON body instead.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// A TCP listener whose connections put the JSON error body into hyper's
/// own error answers (see the module docs).
pub struct JsonErrorListener(pub TcpListener);

impl axum::serve::Listener for JsonErrorListener {
    type Io = JsonErrorIo<TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, addr) = axum::serve::Listener::accept(&mut self.0).await;
        (JsonErrorIo { inner: stream, pending: None, partial: false }, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose writes are watched for hyper's bodiless error answers.
pub struct JsonErrorIo<S> {
    inner: S,
    /// A rewritten answer still being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
    /// The last write of hyper's was taken only in part: what comes next is
    /// its continuation (a body, say), never a response head to look at.
    partial: bool,
}

/// The body-less answers hyper makes itself (their status lines exactly),
/// with our code and message.
const AUTOMATIC: [(&str, &str, &str); 3] = [
    ("400 Bad Request", "invalid_argument", "the request is not valid HTTP/1.1 (request line or header fields)"),
    ("414 URI Too Long", "uri_too_long", "the request URI is too long"),
    (
        "431 Request Header Fields Too Large",
        "header_fields_too_large",
        "the request's header fields are too many or too large",
    ),
];

/// `head` (a whole response head, ending in an empty line) with a JSON error
/// body, if it is one of hyper's automatic answers and has no body.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines: Vec<&str> = text.strip_suffix("\r\n\r\n")?.split("\r\n").collect();
    let status = lines.first()?.strip_prefix("HTTP/1.1 ").or_else(|| lines.first()?.strip_prefix("HTTP/1.0 "))?;
    let (_, code, message) = AUTOMATIC.iter().find(|(s, _, _)| status == *s)?;
    // hyper's automatic answer has no header but these: anything else is a
    // response of the router's (which always has a body) or not a head at all.
    let is = |line: &str, name: &str| line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name);
    let hypers = |line: &&str| {
        is(line, "date:")
            || line.eq_ignore_ascii_case("connection: close")
            || line.eq_ignore_ascii_case("content-length: 0")
    };
    if !lines[1..].iter().all(hypers) {
        return None;
    }
    lines.retain(|l| !is(l, "content-length:"));
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    let mut out = lines.join("\r\n");
    out.push_str(&format!("\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len()));
    Some(out.into_bytes())
}

impl<S: AsyncWrite + Unpin> JsonErrorIo<S> {
    /// Writes what is left of a rewritten answer; ready once it is all out.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            if *written == bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `buf` as written if it is an answer to rewrite (queued in its new form).
    fn intercept(&mut self, buf: &[u8]) -> bool {
        if self.partial || !buf.starts_with(b"HTTP/1.") || !buf.ends_with(b"\r\n\r\n") {
            return false;
        }
        match rewrite(buf) {
            Some(bytes) => {
                self.pending = Some((bytes, 0));
                true
            }
            None => false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for JsonErrorIo<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if self.intercept(buf) {
            // Taken whole; what is left of it goes out before anything else.
            let _ = self.poll_pending(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write(cx, buf))?;
        self.partial = n < buf.len();
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        // An answer without a body is its head alone, in one slice.
        if let [only] = bufs {
            if self.intercept(only) {
                let _ = self.poll_pending(cx)?;
                return Poll::Ready(Ok(only.len()));
            }
        }
        let n = ready!(Pin::new(&mut self.inner).poll_write_vectored(cx, bufs))?;
        self.partial = n < bufs.iter().map(|b| b.len()).sum::<usize>();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_error_answers_get_the_json_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: x\r\n\r\n";
        let out = String::from_utf8(rewrite(head).expect("rewritten")).expect("utf8");
        let (new_head, body) = out.split_once("\r\n\r\n").expect("head and body");
        assert!(new_head.starts_with("HTTP/1.1 431 "), "{new_head}");
        assert!(new_head.contains("\r\ndate: x\r\n"), "{new_head}");
        assert!(new_head.contains("content-type: application/json"), "{new_head}");
        assert!(new_head.ends_with(&format!("content-length: {}", body.len())), "{new_head}");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], "header_fields_too_large");
        // Without a content-length header at all, too.
        let bare = rewrite(b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\n\r\n").expect("rewritten");
        assert!(String::from_utf8_lossy(&bare).contains("\"invalid_argument\""));
    }

    /// A body that looks like one of hyper's answers, written after the rest
    /// of its response was taken only in part, goes out as it is.
    #[tokio::test]
    async fn the_continuation_of_a_partial_write_is_never_rewritten() {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let body = "HTTP/1.1 400 Bad Request\r\ndate: x\r\n\r\n";
        let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
        let response = format!("{head}{body}");
        // The pipe takes the head only, then the body in a second write.
        let (client, server) = tokio::io::duplex(head.len());
        let mut io = JsonErrorIo { inner: server, pending: None, partial: false };
        let reader = tokio::spawn(async move {
            let mut client = client;
            let mut got = Vec::new();
            client.read_to_end(&mut got).await.expect("read");
            got
        });
        io.write_all(response.as_bytes()).await.expect("write");
        io.shutdown().await.expect("shutdown");
        drop(io);
        assert_eq!(String::from_utf8(reader.await.expect("reader")).expect("utf8"), response);
    }

    #[test]
    fn answers_with_a_body_or_another_status_pass_untouched() {
        for head in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 60\r\n\r\n"[..],
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\nx-other: 1\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Requests\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 414 URI Too Long\r\ntransfer-encoding: chunked\r\n\r\n",
        ] {
            assert!(rewrite(head).is_none(), "{}", String::from_utf8_lossy(head));
        }
    }
}
