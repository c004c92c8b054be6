//! The configuration of an in-process server, shared by the tests and the
//! concurrency benchmark (which includes this file by path).

use gatehouse_core::config::{Config, MailTls};

/// A server at `http://127.0.0.1:{port}` with two workers, on the database at
/// `database_url`, keeping its files below `dir` and sending its mail, without TLS,
/// to a catcher on 127.0.0.1:`smtp_port`.
pub fn local_config(
    dir: &std::path::Path,
    database_url: &str,
    port: u16,
    smtp_port: u16,
) -> Config {
    let mut config = Config {
        data_dir: dir.join("data"),
        ..Config::default()
    };
    config.database.url = Some(database_url.to_owned());
    config.server.public_url = Some(format!("http://127.0.0.1:{port}"));
    config.server.workers = 2;
    config.mail.smtp_host = Some("127.0.0.1".into());
    config.mail.smtp_port = smtp_port;
    config.mail.tls = MailTls::None;
    config
}
