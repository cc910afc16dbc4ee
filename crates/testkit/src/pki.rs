//! Certificates made here with rcgen: a CA, a server certificate for `localhost` and
//! `127.0.0.1`, client certificates named by a DNS or URI SAN (mTLS roles), and self-signed
//! certificates with a chosen validity window (configuration checks).

use std::path::{Path, PathBuf};

use anyhow::Result;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, PEM.
#[derive(Clone)]
pub struct Pem {
    /// The certificate.
    pub cert: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

impl Pem {
    /// Writes `DIR/NAME.pem` and `DIR/NAME-key.pem`; returns both paths.
    pub fn write(&self, dir: &Path, name: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{name}.pem"));
        let key = dir.join(format!("{name}-key.pem"));
        std::fs::write(&cert, &self.cert)?;
        crate::keys::write_key_file(&key, self.key.as_bytes())?;
        Ok((cert, key))
    }
}

/// An extended key usage of a certificate made here.
#[derive(Clone, Copy, Debug)]
pub enum Eku {
    /// id-kp-clientAuth.
    ClientAuth,
    /// id-kp-serverAuth.
    ServerAuth,
}

/// How a client certificate names its holder.
pub enum San<'a> {
    /// A DNS name (`auditor.example.net`).
    Dns(&'a str),
    /// A URI (`spiffe://platform.example/portal`).
    Uri(&'a str),
}

/// A certificate authority.
pub struct Ca {
    /// Its certificate, PEM (what a client or server trusts).
    pub pem: String,
    /// Signs the leaves.
    issuer: Issuer<'static, KeyPair>,
}

fn ca_params(common_name: &str) -> Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(p)
}

impl Ca {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let pem = ca_params(common_name)?.self_signed(&key)?.pem();
        Ok(Self {
            pem,
            issuer: Issuer::new(ca_params(common_name)?, key),
        })
    }

    /// Writes the CA certificate to `path`.
    pub fn write(&self, path: &Path) -> Result<PathBuf> {
        std::fs::write(path, &self.pem)?;
        Ok(path.to_path_buf())
    }

    fn leaf(&self, cn: &str, sans: Vec<SanType>, eku: ExtendedKeyUsagePurpose) -> Result<Pem> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = sans;
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        Ok(Pem {
            cert: p.signed_by(&key, &self.issuer)?.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A server certificate for `localhost` and `127.0.0.1`.
    pub fn server(&self, cn: &str) -> Result<Pem> {
        self.leaf(
            cn,
            vec![
                SanType::DnsName("localhost".try_into()?),
                SanType::IpAddress([127, 0, 0, 1].into()),
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate with subject `cn`, any number of SANs (none: no SAN extension)
    /// and extended key usages (none: no EKU extension).
    pub fn client_with(&self, cn: &str, sans: &[San<'_>], ekus: &[Eku]) -> Result<Pem> {
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name.push(DnType::CommonName, cn);
        for san in sans {
            p.subject_alt_names.push(match san {
                San::Dns(d) => SanType::DnsName((*d).try_into()?),
                San::Uri(u) => SanType::URI((*u).try_into()?),
            });
        }
        p.extended_key_usages = ekus
            .iter()
            .map(|e| match e {
                Eku::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
                Eku::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
            })
            .collect();
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        Ok(Pem {
            cert: p.signed_by(&key, &self.issuer)?.pem(),
            key: key.serialize_pem(),
        })
    }

    /// A client certificate named by `san`.
    pub fn client(&self, cn: &str, san: San<'_>) -> Result<Pem> {
        let san = match san {
            San::Dns(d) => SanType::DnsName(d.try_into()?),
            San::Uri(u) => SanType::URI(u.try_into()?),
        };
        self.leaf(cn, vec![san], ExtendedKeyUsagePurpose::ClientAuth)
    }
}

/// A self-signed certificate for `dns` (rcgen's default subject, `CN=rcgen self signed
/// cert`), valid from now + `from` to now + `to`.
pub fn self_signed(dns: &str, from: time::Duration, to: time::Duration) -> Result<Pem> {
    let mut p = CertificateParams::new(vec![dns.to_owned()])?;
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now + from;
    p.not_after = now + to;
    let key = KeyPair::generate()?;
    Ok(Pem {
        cert: p.self_signed(&key)?.pem(),
        key: key.serialize_pem(),
    })
}
