//! Outgoing mail: SMTP through lettre, or `.eml` files when no SMTP server is set.
//! What a mail says is not decided here: the service describes it
//! ([`crate::mail_render::Mail`]) and its renderer writes the [`OutgoingMail`].
//!
//! Mail bodies carry single-use links (verification, recovery), so they are never
//! logged and [`OutgoingMail`]'s `Debug` leaves them out.
//!
//! Each send opens its own SMTP connection (lettre's `pool` feature is off). Gatehouse
//! sends little mail, and a pool would tie connections and a cleanup task to the tokio
//! runtime that happened to create it, while HTTP workers each run their own runtime.
//! For the same reason a [`Mailer`] can be built outside any runtime; `send` needs
//! a tokio runtime.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use gatehouse_core::config::{Config, MailConfig, MailTls};
use lettre::Address;
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::AuthnError;

/// One mail to one recipient.
#[derive(Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    /// The recipient, as `address` or `Name <address>`.
    pub to: String,
    pub subject: String,
    pub text_body: String,
    /// With an HTML body the mail is `multipart/alternative` (text first, then HTML).
    pub html_body: Option<String>,
    /// Who it is from, where the tenant says; the rest from `mail.from`.
    pub sender: Sender,
}

/// The sender of one mail: each part that is `None` (or an address that does not
/// parse) comes from the configured `mail.from`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Sender {
    /// The name mail clients show (the tenant's).
    pub name: Option<String>,
    /// A bare address (`no-reply@acme.example`).
    pub address: Option<String>,
}

// Bodies hold single-use links: Debug shows only their size.
impl fmt::Debug for OutgoingMail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutgoingMail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("text_body_len", &self.text_body.len())
            .field("html_body_len", &self.html_body.as_ref().map(String::len))
            .field("sender", &self.sender)
            .finish()
    }
}

/// Sends [`OutgoingMail`] as configured in `[mail]`. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    from: Mailbox,
    transport: Transport,
}

#[derive(Clone)]
enum Transport {
    Smtp {
        transport: AsyncSmtpTransport<Tokio1Executor>,
        host: String,
        port: u16,
        tls: MailTls,
    },
    /// Development only: mail is written to this directory instead of being sent.
    Files { dir: PathBuf },
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("Mailer");
        s.field("from", &self.from.to_string());
        match &self.transport {
            // lettre's own Debug would include the credentials.
            Transport::Smtp {
                host, port, tls, ..
            } => s
                .field("smtp_host", host)
                .field("smtp_port", port)
                .field("tls", tls),
            Transport::Files { dir } => s.field("dev_mail_dir", dir),
        };
        s.finish()
    }
}

impl Mailer {
    /// The mailer for a whole configuration: SMTP when `mail.smtp_host` is set,
    /// otherwise `.eml` files in `<data_dir>/mail/` (refused in production mode).
    pub fn from_config(config: &Config) -> Result<Self, AuthnError> {
        config.mail.validate(config.mode)?;
        Mailer::new(&config.mail, &config.data_dir)
    }

    /// Like [`Mailer::from_config`] without the production-mode check: an unset
    /// `smtp_host` always means the development file sink under `data_dir`.
    pub fn new(config: &MailConfig, data_dir: &Path) -> Result<Self, AuthnError> {
        let from: Mailbox = config.from.parse().map_err(|err| {
            AuthnError::Mail(format!(
                "mail.from `{}` is not a mailbox: {err}",
                config.from
            ))
        })?;
        let Some(host) = &config.smtp_host else {
            return Ok(Mailer {
                from,
                transport: Transport::Files {
                    dir: data_dir.join("mail"),
                },
            });
        };
        let tls_parameters = || {
            TlsParameters::new(host.clone())
                .map_err(|err| AuthnError::Mail(format!("TLS set-up for `{host}` failed: {err}")))
        };
        let tls = match config.tls {
            MailTls::None => Tls::None,
            MailTls::Starttls => Tls::Required(tls_parameters()?),
            MailTls::Tls => Tls::Wrapper(tls_parameters()?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.as_str())
            .port(config.smtp_port)
            .tls(tls)
            .timeout(Some(config.timeout()));
        if let (Some(username), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(
                username.clone(),
                password.expose().to_owned(),
            ));
        }
        Ok(Mailer {
            from,
            transport: Transport::Smtp {
                transport: builder.build(),
                host: host.clone(),
                port: config.smtp_port,
                tls: config.tls,
            },
        })
    }

    /// Where mail goes instead of being sent, when no SMTP server is configured.
    pub fn dev_mail_dir(&self) -> Option<&Path> {
        match &self.transport {
            Transport::Files { dir } => Some(dir),
            Transport::Smtp { .. } => None,
        }
    }

    /// Sends `mail`, or in development writes it to a file and logs where.
    pub async fn send(&self, mail: &OutgoingMail) -> Result<(), AuthnError> {
        let message = self.message(mail)?;
        match &self.transport {
            Transport::Smtp {
                transport,
                host,
                port,
                ..
            } => {
                transport.send(message).await.map_err(|err| {
                    AuthnError::Mail(format!(
                        "sending to {} through {host}:{port} failed: {err}",
                        mail.to
                    ))
                })?;
                tracing::debug!(to = %mail.to, subject = %mail.subject, "mail sent");
                Ok(())
            }
            Transport::Files { dir } => {
                let dir = dir.clone();
                let contents = message.formatted();
                let path = tokio::task::spawn_blocking(move || write_eml(&dir, &contents))
                    .await
                    .map_err(|err| AuthnError::Mail(format!("writing mail file: {err}")))??;
                // The body goes to the log too, so a quick-start user can follow the
                // link from the terminal. Only reachable in dev mode: production
                // refuses to start without SMTP.
                tracing::warn!(
                    to = %mail.to,
                    subject = %mail.subject,
                    path = %path.display(),
                    "mail not sent: no SMTP configured (development only); written to {}\n{}",
                    path.display(),
                    mail.text_body
                );
                Ok(())
            }
        }
    }

    fn message(&self, mail: &OutgoingMail) -> Result<Message, AuthnError> {
        let to: Mailbox = mail.to.parse().map_err(|err| {
            AuthnError::Mail(format!("recipient `{}` is not a mailbox: {err}", mail.to))
        })?;
        if mail.subject.chars().any(char::is_control) {
            return Err(AuthnError::Mail(
                "subject must not contain control characters".to_owned(),
            ));
        }
        let builder = Message::builder()
            .from(self.sender(&mail.sender))
            .to(to)
            .subject(mail.subject.as_str());
        let built = match &mail.html_body {
            None => builder.singlepart(SinglePart::plain(mail.text_body.clone())),
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(
                mail.text_body.clone(),
                html.clone(),
            )),
        };
        built.map_err(|err| AuthnError::Mail(format!("building mail to {}: {err}", mail.to)))
    }
}

impl Mailer {
    /// The mail's `From`: the tenant's name and address where given and valid,
    /// else the configured ones. lettre encodes the name, so any text is safe.
    fn sender(&self, sender: &Sender) -> Mailbox {
        let address = sender.address.as_deref().and_then(|address| {
            address
                .parse::<Address>()
                .inspect_err(|error| {
                    tracing::warn!(%error, address, "a tenant's sender address is refused; using mail.from");
                })
                .ok()
        });
        Mailbox::new(
            sender
                .name
                .clone()
                .filter(|name| !name.chars().any(char::is_control))
                .or_else(|| self.from.name.clone()),
            address.unwrap_or_else(|| self.from.email.clone()),
        )
    }
}

/// Writes one RFC 5322 message as `<dir>/<timestamp>-<random>.eml`: the directory
/// 0700 and the file 0600, since the mail holds single-use links.
fn write_eml(dir: &Path, contents: &[u8]) -> Result<PathBuf, AuthnError> {
    let io_error = |action: &str, path: &Path, err: std::io::Error| {
        AuthnError::Mail(format!("{action} {}: {err}", path.display()))
    };
    let mut dir_builder = std::fs::DirBuilder::new();
    dir_builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        dir_builder.mode(0o700);
        dir_builder
            .create(dir)
            .map_err(|err| io_error("cannot create mail directory", dir, err))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|err| io_error("cannot restrict mail directory", dir, err))?;
    }
    #[cfg(not(unix))]
    dir_builder
        .create(dir)
        .map_err(|err| io_error("cannot create mail directory", dir, err))?;

    let name = format!(
        "{}-{:08x}.eml",
        chrono::Utc::now().format("%Y%m%dT%H%M%S%.6fZ"),
        rand::random::<u32>()
    );
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(&path)
        .map_err(|err| io_error("cannot create mail file", &path, err))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|err| io_error("cannot write mail file", &path, err))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use gatehouse_core::config::{Mode, SecretString};

    use super::*;
    use crate::testing::SmtpCatcher;

    fn smtp_config(catcher: &SmtpCatcher) -> MailConfig {
        MailConfig {
            smtp_host: Some("127.0.0.1".to_owned()),
            smtp_port: catcher.port(),
            tls: MailTls::None,
            from: "Gatehouse <no-reply@gatehouse.test>".to_owned(),
            timeout_secs: 5,
            ..MailConfig::default()
        }
    }

    fn verification_mail(html: bool) -> OutgoingMail {
        let link = "https://id.example.com/verify?token=ghv_Zm9vYmFyYmF6cXV4cXV1eA";
        OutgoingMail {
            to: "Alice Liddell <alice@example.com>".to_owned(),
            subject: "Confirm your email address".to_owned(),
            text_body: format!(
                "Hello Alice,\n\nconfirm your address by opening\n{link}\n\n\
                 .a line starting with a dot survives dot-stuffing\n\
                 Grüße, the Gatehouse team\n"
            ),
            html_body: html.then(|| {
                format!("<p>Hello Alice,</p><p><a href=\"{link}\">Confirm your address</a></p>")
            }),
            sender: Sender::default(),
        }
    }

    #[tokio::test]
    async fn sends_through_smtp() {
        let catcher = SmtpCatcher::start();
        let mailer = Mailer::new(&smtp_config(&catcher), Path::new("unused")).unwrap();
        assert_eq!(mailer.dev_mail_dir(), None);
        mailer.send(&verification_mail(false)).await.unwrap();

        let caught = catcher.wait_for(1, Duration::from_secs(10));
        assert_eq!(caught.len(), 1);
        let mail = &caught[0];
        assert_eq!(mail.from, "no-reply@gatehouse.test");
        assert_eq!(mail.to, ["alice@example.com"]);
        assert_eq!(
            mail.header("Subject").as_deref(),
            Some("Confirm your email address")
        );
        assert!(mail.header("To").unwrap().contains("alice@example.com"));
        let text = mail.text_body();
        assert!(text.contains("Hello Alice,"), "{text}");
        assert!(text.contains("Grüße, the Gatehouse team"), "{text}");
        assert!(
            text.contains("\n.a line starting with a dot survives"),
            "{text}"
        );
        assert_eq!(mail.html_body(), None);
        assert_eq!(
            mail.find_link("https://id.example.com/verify").as_deref(),
            Some("https://id.example.com/verify?token=ghv_Zm9vYmFyYmF6cXV4cXV1eA")
        );

        // A second mail on a fresh connection.
        let mut second = verification_mail(false);
        second.to = "bob@example.com".to_owned();
        second.subject = "Grüße aus dem Gatehouse".to_owned();
        mailer.send(&second).await.unwrap();
        let caught = catcher.wait_for(2, Duration::from_secs(10));
        assert_eq!(caught[1].to, ["bob@example.com"]);
        assert_eq!(
            caught[1].header("subject").as_deref(),
            Some("Grüße aus dem Gatehouse")
        );
    }

    #[tokio::test]
    async fn html_mail_is_multipart_alternative() {
        let catcher = SmtpCatcher::start();
        let mailer = Mailer::new(&smtp_config(&catcher), Path::new("unused")).unwrap();
        mailer.send(&verification_mail(true)).await.unwrap();
        let mail = catcher.wait_for(1, Duration::from_secs(10)).remove(0);
        assert!(
            mail.header("Content-Type")
                .unwrap()
                .starts_with("multipart/alternative"),
            "{}",
            mail.data
        );
        assert!(mail.text_body().contains("Grüße, the Gatehouse team"));
        let html = mail.html_body().unwrap();
        assert!(
            html.contains("<a href=\"https://id.example.com/verify?token="),
            "{html}"
        );
        assert_eq!(
            mail.find_link("https://id.example.com/").as_deref(),
            Some("https://id.example.com/verify?token=ghv_Zm9vYmFyYmF6cXV4cXV1eA")
        );
    }

    #[tokio::test]
    async fn a_tenant_sender_replaces_the_configured_one_where_valid() {
        let catcher = SmtpCatcher::start();
        let mailer = Mailer::new(&smtp_config(&catcher), Path::new("unused")).unwrap();
        let mut mail = verification_mail(false);
        mail.sender = Sender {
            name: Some("Acme, \"Login\" Ünit".into()),
            address: Some("login@acme.example".into()),
        };
        mailer.send(&mail).await.unwrap();
        // Only the name where the address does not parse.
        mail.sender.address = Some("not an address".into());
        mailer.send(&mail).await.unwrap();
        let caught = catcher.wait_for(2, Duration::from_secs(10));
        assert_eq!(caught[0].from, "login@acme.example");
        let from = caught[0].header("From").unwrap();
        // The name is quoted and encoded by lettre, whatever it holds.
        assert!(from.contains("Login") && from.contains("Ünit"), "{from}");
        assert!(from.contains("<login@acme.example>"), "{from}");
        assert_eq!(caught[1].from, "no-reply@gatehouse.test");
        assert!(caught[1].header("From").unwrap().contains("Ünit"));
    }

    #[tokio::test]
    async fn smtp_failures_are_errors() {
        // Nothing listens on the port once the catcher is gone.
        let port = SmtpCatcher::start().port();
        let config = MailConfig {
            smtp_host: Some("127.0.0.1".to_owned()),
            smtp_port: port,
            tls: MailTls::None,
            timeout_secs: 2,
            ..MailConfig::default()
        };
        let mailer = Mailer::new(&config, Path::new("unused")).unwrap();
        let err = mailer.send(&verification_mail(false)).await.unwrap_err();
        assert!(matches!(err, AuthnError::Mail(_)), "{err:?}");
        let message = err.to_string();
        assert!(message.contains("alice@example.com"), "{message}");
        assert!(!message.contains("token="), "{message}");

        let mut bad = verification_mail(false);
        bad.to = "not an address".to_owned();
        assert!(matches!(mailer.send(&bad).await, Err(AuthnError::Mail(_))));
        let mut injected = verification_mail(false);
        injected.subject = "Hi\r\nBcc: eve@example.com".to_owned();
        assert!(matches!(
            mailer.send(&injected).await,
            Err(AuthnError::Mail(_))
        ));
    }

    /// Collects formatted log output for the current thread.
    #[derive(Clone, Default)]
    struct LogBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for LogBuffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogBuffer {
        type Writer = LogBuffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    #[tokio::test]
    async fn without_smtp_mail_is_written_to_files() {
        let data_dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: data_dir.path().join("data"),
            ..Config::default()
        };
        let mailer = Mailer::from_config(&config).unwrap();
        let mail_dir = data_dir.path().join("data").join("mail");
        assert_eq!(mailer.dev_mail_dir(), Some(mail_dir.as_path()));

        let logs = LogBuffer::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .finish();
        let guard = tracing::subscriber::set_default(subscriber);
        mailer.send(&verification_mail(true)).await.unwrap();
        mailer.send(&verification_mail(false)).await.unwrap();
        drop(guard);

        let mut files: Vec<PathBuf> = std::fs::read_dir(&mail_dir)
            .unwrap()
            .map(|entry| entry.unwrap().path())
            .collect();
        files.sort();
        assert_eq!(files.len(), 2, "{files:?}");
        let first = &files[0];
        assert_eq!(first.extension().unwrap(), "eml");
        let contents = std::fs::read_to_string(first).unwrap();
        assert!(
            contents.contains("Subject: Confirm your email address\r\n"),
            "{contents}"
        );
        assert!(
            contents.contains("To: \"Alice Liddell\" <alice@example.com>\r\n"),
            "{contents}"
        );
        assert!(contents.contains("multipart/alternative"), "{contents}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&mail_dir), 0o700);
            assert_eq!(mode(first), 0o600);
        }

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(logs.contains("WARN"), "{logs}");
        assert!(
            logs.contains(&format!(
                "mail not sent: no SMTP configured (development only); written to {}",
                first.display()
            )),
            "{logs}"
        );
        assert!(logs.contains("alice@example.com"), "{logs}");
        assert!(logs.contains("Confirm your email address"), "{logs}");
        // Development only: the link is in the log so a quick-start user can follow it.
        assert!(
            logs.contains("token="),
            "the body is missing from the log: {logs}"
        );
    }

    #[test]
    fn production_needs_smtp_and_debug_hides_secrets() {
        let config = Config {
            mode: Mode::Production,
            ..Config::default()
        };
        let err = Mailer::from_config(&config).unwrap_err();
        assert!(err.to_string().contains("mail.smtp_host"), "{err}");

        // Built outside any async runtime, with every TLS mode.
        for tls in [MailTls::None, MailTls::Starttls, MailTls::Tls] {
            let mail = MailConfig {
                smtp_host: Some("smtp.example.com".to_owned()),
                tls,
                username: Some("gatehouse".to_owned()),
                password: Some(SecretString::new("hunter2-smtp")),
                ..MailConfig::default()
            };
            let mailer = Mailer::new(&mail, Path::new("unused")).unwrap();
            let debug = format!("{mailer:?}");
            assert!(debug.contains("smtp.example.com"), "{debug}");
            assert!(!debug.contains("hunter2"), "{debug}");
        }

        let bad_from = MailConfig {
            from: "nobody".to_owned(),
            ..MailConfig::default()
        };
        assert!(matches!(
            Mailer::new(&bad_from, Path::new("unused")),
            Err(AuthnError::Mail(_))
        ));

        let debug = format!("{:?}", verification_mail(true));
        assert!(!debug.contains("token="), "{debug}");
    }
}
