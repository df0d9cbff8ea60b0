//! TLS to MariaDB with certificates made at test time: a verified server
//! certificate and a client certificate the server requires.

mod support;

use std::path::PathBuf;
use std::time::Duration;

use foobar_core::tls::DevCa;
use foobar_db::mysql_async::prelude::Queryable;
use foobar_db::mysql_async::{Opts, OptsBuilder};
use foobar_db::pool::Manager;
use foobar_db::sandbox::{Cluster, MONITOR};
use foobar_db::{DbTls, Error, Executor, PoolConfig, ResetPolicy, RwPool};

struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate.
fn make_pki(name: &str) -> (Pki, foobar_core::tls::DevCertFiles) {
    let dir = std::env::temp_dir().join(format!("foobar-db-tls-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = DevCa::new().unwrap();
    let ca_path = ca.write_pem(&dir).unwrap();
    let server = ca
        .server_cert(["127.0.0.1", "localhost"])
        .unwrap()
        .write_pem(&dir, "server")
        .unwrap();
    let client = ca
        .client_cert("app-client")
        .unwrap()
        .write_pem(&dir, "client")
        .unwrap();
    (
        Pki {
            dir,
            ca: ca_path,
            client_cert: client.cert,
            client_key: client.key,
        },
        server,
    )
}

async fn tls_cluster(pki: &Pki, server: &foobar_core::tls::DevCertFiles) -> Cluster {
    support::init_tracing();
    let cluster = Cluster::builder()
        .server_arg(format!("--ssl-ca={}", pki.ca.display()))
        .server_arg(format!("--ssl-cert={}", server.cert.display()))
        .server_arg(format!("--ssl-key={}", server.key.display()))
        .start()
        .await
        .unwrap();
    cluster
        .primary()
        .run(&[
            "CREATE USER 'tlsapp'@'127.0.0.1' IDENTIFIED BY 'tlspw' REQUIRE X509",
            "GRANT ALL ON app.* TO 'tlsapp'@'127.0.0.1'",
        ])
        .await
        .unwrap();
    cluster
}

fn url(cluster: &Cluster) -> String {
    format!(
        "mysql://tlsapp:tlspw@127.0.0.1:{}/app?prefer_socket=false",
        cluster.primary().port()
    )
}

#[tokio::test]
async fn verified_server_and_client_certificate() {
    let (pki, server) = make_pki("ok");
    let cluster = tls_cluster(&pki, &server).await;
    let shutdown = foobar_core::Shutdown::new();
    let pool = RwPool::builder()
        .primary(url(&cluster))
        .monitor_credentials(MONITOR.user, MONITOR.password)
        .tls(
            DbTls::new()
                .ca_file(&pki.ca)
                .identity_files(&pki.client_cert, &pki.client_key),
        )
        .no_writer_timeout(Duration::from_secs(2))
        .build(&shutdown)
        .await
        .unwrap();
    let cipher: Option<(String, String)> = pool
        .query_first("/* foobar:primary */ SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        .await
        .unwrap();
    let cipher = cipher.unwrap().1;
    assert!(!cipher.is_empty(), "the session is encrypted");
    pool.query_drop("CREATE TABLE secret (x INT)")
        .await
        .unwrap();
    shutdown.trigger();
}

fn manager(cluster: &Cluster, tls: &DbTls) -> foobar_db::pool::Pool {
    let opts = OptsBuilder::from_opts(Opts::from_url(&url(cluster)).unwrap())
        .ssl_opts(tls.ssl_opts().unwrap());
    Manager::new(opts.into(), ResetPolicy::default(), Duration::from_secs(1))
        .into_pool(&PoolConfig::default().create_timeout(Some(Duration::from_secs(5))))
        .unwrap()
}

#[tokio::test]
async fn an_unknown_server_or_a_missing_client_certificate_is_refused() {
    let (pki, server) = make_pki("refused");
    let (other, _) = make_pki("other-ca");
    let cluster = tls_cluster(&pki, &server).await;

    // The right CA and a client certificate: accepted.
    let good = manager(
        &cluster,
        &DbTls::new()
            .ca_file(&pki.ca)
            .identity_files(&pki.client_cert, &pki.client_key),
    );
    let mut conn = good.get().await.unwrap();
    conn.query_drop("SELECT 1").await.unwrap();

    // A server certificate from a CA we do not trust: refused by us.
    let wrong_ca = manager(
        &cluster,
        &DbTls::new()
            .ca_file(&other.ca)
            .identity_files(&pki.client_cert, &pki.client_key),
    );
    let err = wrong_ca
        .get()
        .await
        .expect_err("untrusted server certificate");
    assert!(
        format!("{err:?}").to_lowercase().contains("certificate"),
        "{err:?}"
    );

    // No client certificate: refused by the server (REQUIRE X509).
    let anonymous = manager(&cluster, &DbTls::new().ca_file(&pki.ca));
    let err = anonymous
        .get()
        .await
        .expect_err("client certificate required");
    assert!(format!("{err:?}").contains("1045"), "{err:?}");
}

#[tokio::test]
async fn unusable_tls_files_are_a_typed_error_naming_the_file() {
    let missing = std::env::temp_dir().join("foobar-db-no-such-ca.pem");
    let err = DbTls::new()
        .ca_file(&missing)
        .ssl_opts()
        .expect_err("missing CA file");
    assert!(matches!(err, Error::Tls(_)), "{err}");
    assert!(
        err.to_string().contains("foobar-db-no-such-ca.pem")
            || format!("{err:?}").contains("foobar-db-no-such-ca.pem"),
        "{err:?}"
    );

    let shutdown = foobar_core::Shutdown::new();
    let err = RwPool::builder()
        .primary("mysql://app:x@127.0.0.1:9/app")
        .tls(DbTls::new().ca_file(&missing))
        .build(&shutdown)
        .await
        .expect_err("bad TLS configuration");
    assert!(matches!(err, Error::Tls(_)), "{err}");

    let err = RwPool::builder()
        .primary("mysql://app:x@127.0.0.1:notaport/app")
        .build(&shutdown)
        .await
        .expect_err("bad URL");
    assert!(matches!(err, Error::Url { .. }), "{err}");
    assert!(!err.to_string().contains(":x@"), "password masked: {err}");
}
