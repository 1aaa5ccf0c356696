//! AWS credentials as the AWS SDKs' default chain finds them (the config's keys, the
//! environment, web identity, a shared-files profile, container credentials, instance
//! metadata), with AssumeRole on top, refreshed before they expire.
//!
//! Static keys, container credentials and instance metadata are object_store's own providers;
//! web identity and AssumeRole are ours (object_store's web identity refuses an http STS, and it
//! has no AssumeRole), as is the profile reader. Nothing here reads the process environment:
//! the config loader hands over the `AWS_*` variables (`S3Config::env`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::aws::{AmazonS3ConfigKey, AwsAuthorizer, AwsCredential, AwsCredentialProvider};
use object_store::client::{HttpRequest, HttpRequestBody};
use object_store::{CredentialProvider, StaticCredentialProvider};

use crate::config::{CredentialSource, S3Config};

/// Which source the credentials come from, for `check`, `doctor` and `/status`: never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialInfo {
    pub source: CredentialSource,
    /// Where exactly: the variable, file, profile or endpoint, and the access key id masked.
    pub detail: String,
    /// The role assumed on top of the source (`s3.role_arn` or the profile's `role_arn`).
    pub assumed_role: Option<String>,
}

impl fmt::Display for CredentialInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.source {
            CredentialSource::Auto => "auto",
            CredentialSource::Static => "static keys",
            CredentialSource::Environment => "environment",
            CredentialSource::WebIdentity => "web identity",
            CredentialSource::Profile => "profile",
            CredentialSource::Container => "container credentials",
            CredentialSource::Instance => "instance metadata (IMDSv2)",
        };
        write!(f, "{name} ({})", self.detail)?;
        if let Some(role) = &self.assumed_role {
            write!(f, ", assuming role {role}")?;
        }
        Ok(())
    }
}

/// How the S3 client gets its credentials: a provider of ours, or object_store's own one chosen
/// by these builder settings (container credentials, instance metadata).
pub(super) enum Credentials {
    Provider(AwsCredentialProvider),
    Builder(Vec<(AmazonS3ConfigKey, String)>),
}

/// What the credential chain needs besides the `[s3]` settings: an HTTP client for STS.
pub(super) struct Sts {
    pub client: reqwest::Client,
    pub endpoint: String,
    pub region: String,
}

impl Sts {
    pub fn new(c: &S3Config, client: reqwest::Client) -> Self {
        let endpoint = if c.sts_endpoint.is_empty() { format!("https://sts.{}.amazonaws.com", c.region) } else { c.sts_endpoint.clone() };
        Self { client, endpoint: endpoint.trim_end_matches('/').to_string(), region: c.region.clone() }
    }
}

/// Finds the source as the SDKs' chain does (or takes the one `s3.credentials` names), and
/// puts `s3.role_arn` on top. `base` gives object_store's provider for builder-made sources,
/// which AssumeRole then signs with.
pub(super) fn resolve(
    c: &S3Config,
    sts: &Sts,
    base: impl FnOnce(&[(AmazonS3ConfigKey, String)]) -> Result<AwsCredentialProvider, String>,
) -> Result<(Credentials, CredentialInfo), String> {
    let env = |k: &str| c.env.get(k).filter(|v| !v.is_empty()).cloned();
    let want = |s: CredentialSource| c.credentials == CredentialSource::Auto || c.credentials == s;
    let (creds, mut info) = if want(CredentialSource::Static) && !c.access_key_id.is_empty() {
        let key = AwsCredential { key_id: c.access_key_id.clone(), secret_key: c.secret_access_key.clone(), token: non_empty(&c.session_token) };
        let detail = format!("s3.access_key_id {}{}", mask(&key.key_id), if key.token.is_some() { " with s3.session_token" } else { "" });
        (Credentials::Provider(fixed(key)), info(CredentialSource::Static, detail))
    } else if let (true, Some(id), Some(secret)) = (want(CredentialSource::Environment), env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        let token = env("AWS_SESSION_TOKEN");
        let detail = format!("AWS_ACCESS_KEY_ID {}{}", mask(&id), if token.is_some() { " with AWS_SESSION_TOKEN" } else { "" });
        (Credentials::Provider(fixed(AwsCredential { key_id: id, secret_key: secret, token })), info(CredentialSource::Environment, detail))
    } else if let (true, Some(file), Some(role)) = (want(CredentialSource::WebIdentity), env("AWS_WEB_IDENTITY_TOKEN_FILE"), env("AWS_ROLE_ARN")) {
        let session = env("AWS_ROLE_SESSION_NAME").unwrap_or_else(|| c.session_name.clone());
        let detail = format!("role {role}, token file {file}, STS {}", sts.endpoint);
        let provider = refreshing(sts, Fetch::WebIdentity { token_file: file.into(), role_arn: role, session, duration: c.role_duration_secs });
        (Credentials::Provider(provider), info(CredentialSource::WebIdentity, detail))
    } else if let Some(profiles) = want(CredentialSource::Profile).then(|| Profiles::load(c)).transpose()?.filter(|p| {
        c.credentials == CredentialSource::Profile || !c.profile.is_empty() || p.has("default")
    }) {
        let name = if c.profile.is_empty() { "default".to_string() } else { c.profile.clone() };
        let (provider, detail, role) = profiles.provider(&name, c, sts, 0)?;
        let mut i = info(CredentialSource::Profile, detail);
        i.assumed_role = role;
        (Credentials::Provider(provider), i)
    } else if let (true, Some(uri)) = (want(CredentialSource::Container), env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")) {
        let detail = format!("ECS task role, AWS_CONTAINER_CREDENTIALS_RELATIVE_URI {uri}");
        (Credentials::Builder(vec![(AmazonS3ConfigKey::ContainerCredentialsRelativeUri, uri)]), info(CredentialSource::Container, detail))
    } else if let (true, Some(uri)) = (want(CredentialSource::Container), env("AWS_CONTAINER_CREDENTIALS_FULL_URI")) {
        let Some(token_file) = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") else {
            return Err("s3.credentials: AWS_CONTAINER_CREDENTIALS_FULL_URI is set without AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE (EKS Pod Identity sets both)".into());
        };
        let detail = format!("EKS Pod Identity, AWS_CONTAINER_CREDENTIALS_FULL_URI {uri}, token file {token_file}");
        let settings = vec![(AmazonS3ConfigKey::ContainerCredentialsFullUri, uri), (AmazonS3ConfigKey::ContainerAuthorizationTokenFile, token_file)];
        (Credentials::Builder(settings), info(CredentialSource::Container, detail))
    } else if want(CredentialSource::Instance) {
        let endpoint = if c.metadata_endpoint.is_empty() { "http://169.254.169.254".to_string() } else { c.metadata_endpoint.clone() };
        let detail = format!("IMDSv2 at {endpoint}");
        (Credentials::Builder(vec![(AmazonS3ConfigKey::MetadataEndpoint, endpoint)]), info(CredentialSource::Instance, detail))
    } else {
        return Err(format!("s3.credentials: {:?} is configured but the source is not there ({})", c.credentials, missing(c.credentials)));
    };
    if c.role_arn.is_empty() {
        return Ok((creds, info));
    }
    let base = match creds {
        Credentials::Provider(p) => p,
        Credentials::Builder(settings) => base(&settings)?,
    };
    info.assumed_role = Some(c.role_arn.clone());
    let role = Fetch::AssumeRole {
        base,
        role_arn: c.role_arn.clone(),
        external_id: non_empty(&c.external_id),
        session: c.session_name.clone(),
        duration: c.role_duration_secs,
    };
    Ok((Credentials::Provider(refreshing(sts, role)), info))
}

fn info(source: CredentialSource, detail: String) -> CredentialInfo {
    CredentialInfo { source, detail, assumed_role: None }
}

fn missing(s: CredentialSource) -> &'static str {
    match s {
        CredentialSource::Static => "s3.access_key_id",
        CredentialSource::Environment => "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY",
        CredentialSource::WebIdentity => "AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN",
        CredentialSource::Container => "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI",
        _ => "",
    }
}

fn non_empty(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_string())
}

/// `AKIA…WXYZ`: enough to tell keys apart, too little to use. AWS key ids have 20 characters;
/// a shorter one (a test server's) shows nothing.
fn mask(key_id: &str) -> String {
    if key_id.len() < 16 || !key_id.is_ascii() {
        return "…".into();
    }
    format!("{}…{}", &key_id[..4], &key_id[key_id.len() - 4..])
}

fn fixed(key: AwsCredential) -> AwsCredentialProvider {
    Arc::new(StaticCredentialProvider::new(key))
}

fn refreshing(sts: &Sts, fetch: Fetch) -> AwsCredentialProvider {
    Arc::new(Refreshing { sts: StsClient { client: sts.client.clone(), endpoint: sts.endpoint.clone(), region: sts.region.clone() }, fetch, cache: Default::default() })
}

/// The shared credentials and config files, merged per profile (`[name]` in credentials,
/// `[profile name]` or `[default]` in config; credentials wins).
struct Profiles(BTreeMap<String, BTreeMap<String, String>>);

impl Profiles {
    fn load(c: &S3Config) -> Result<Self, String> {
        let home = c.env.get("HOME").map(PathBuf::from);
        let path = |var: &str, default: &str| c.env.get(var).map(PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(default)));
        let mut all: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        let files = [(path("AWS_CONFIG_FILE", "config"), true), (path("AWS_SHARED_CREDENTIALS_FILE", "credentials"), false)];
        for (file, is_config) in files.into_iter().filter_map(|(f, is_config)| Some((f?, is_config))) {
            let text = match std::fs::read_to_string(&file) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(format!("s3.profile: cannot read {}: {e}", file.display())),
            };
            let mut section: Option<String> = None;
            for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')) {
                if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                    let name = name.trim();
                    section = match (is_config, name.strip_prefix("profile ")) {
                        (true, Some(n)) => Some(n.trim().to_string()),
                        (true, None) if name == "default" => Some(name.to_string()),
                        (true, None) => None, // [sso-session ...], [services ...]
                        (false, _) => Some(name.to_string()),
                    };
                } else if let (Some(s), Some((k, v))) = (&section, line.split_once('=')) {
                    all.entry(s.clone()).or_default().insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
            }
        }
        Ok(Self(all))
    }

    fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// The profile's provider: its keys, or its `role_arn` assumed with the credentials of its
    /// `source_profile` or `web_identity_token_file`.
    fn provider(&self, name: &str, c: &S3Config, sts: &Sts, depth: usize) -> Result<(AwsCredentialProvider, String, Option<String>), String> {
        let p = self.0.get(name).ok_or_else(|| format!("s3.profile: no profile {name:?} in the shared credentials or config file"))?;
        let get = |k: &str| p.get(k).filter(|v| !v.is_empty()).cloned();
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            let detail = format!("profile {name}, aws_access_key_id {}", mask(&id));
            return Ok((fixed(AwsCredential { key_id: id, secret_key: secret, token: get("aws_session_token") }), detail, None));
        }
        let Some(role) = get("role_arn") else {
            let why = if p.keys().any(|k| k.starts_with("sso_")) {
                "SSO profiles are not supported: run `aws configure export-credentials` or use keys"
            } else if p.contains_key("credential_process") {
                "credential_process is not supported"
            } else {
                "it has neither aws_access_key_id and aws_secret_access_key nor role_arn"
            };
            return Err(format!("s3.profile: profile {name:?}: {why}"));
        };
        let session = get("role_session_name").unwrap_or_else(|| c.session_name.clone());
        let duration = get("duration_seconds").and_then(|d| d.parse().ok()).unwrap_or(c.role_duration_secs);
        if let Some(file) = get("web_identity_token_file") {
            let fetch = Fetch::WebIdentity { token_file: file.clone().into(), role_arn: role.clone(), session, duration };
            return Ok((refreshing(sts, fetch), format!("profile {name}, web identity token file {file}"), Some(role)));
        }
        let Some(source) = get("source_profile") else {
            return Err(format!("s3.profile: profile {name:?} has role_arn without source_profile (credential_source is not supported)"));
        };
        if depth > 4 {
            return Err(format!("s3.profile: profile {name:?}: source_profile chain longer than 4 (a loop?)"));
        }
        let (base, base_detail, _) = self.provider(&source, c, sts, depth + 1)?;
        let fetch = Fetch::AssumeRole { base, role_arn: role.clone(), external_id: get("external_id"), session, duration };
        Ok((refreshing(sts, fetch), format!("profile {name} via source_profile {base_detail}"), Some(role)))
    }
}

/// A credential from STS, valid until `expires`.
#[derive(Debug)]
struct Temporary {
    credential: Arc<AwsCredential>,
    fetched: DateTime<Utc>,
    expires: DateTime<Utc>,
}

impl Temporary {
    /// Renewed a quarter of its lifetime (at most 5 minutes) before it expires.
    fn fresh(&self, now: DateTime<Utc>) -> bool {
        let margin = ((self.expires - self.fetched) / 4).min(chrono::TimeDelta::minutes(5));
        now < self.expires - margin
    }
}

#[derive(Debug)]
enum Fetch {
    WebIdentity { token_file: PathBuf, role_arn: String, session: String, duration: u32 },
    AssumeRole { base: AwsCredentialProvider, role_arn: String, external_id: Option<String>, session: String, duration: u32 },
}

#[derive(Debug, Clone)]
struct StsClient {
    client: reqwest::Client,
    endpoint: String,
    region: String,
}

#[derive(Debug, thiserror::Error)]
enum StsError {
    #[error("cannot read the web identity token {path}: {source}")]
    Token { path: String, source: std::io::Error },
    #[error("the credentials to assume the role with: {0}")]
    Base(#[source] object_store::Error),
    #[error("STS {action} at {endpoint}: {source}")]
    Http { action: &'static str, endpoint: String, source: reqwest::Error },
    #[error("STS {action} answered {status}: {message}")]
    Refused { action: &'static str, status: u16, message: String },
    #[error("STS {action}: {0}", action = "answer")]
    Answer(String),
    #[error("cannot build the STS request: {0}")]
    Request(String),
}

impl StsClient {
    async fn fetch(&self, what: &Fetch) -> Result<Temporary, StsError> {
        let mut url = reqwest::Url::parse(&format!("{}/", self.endpoint)).map_err(|e| StsError::Request(e.to_string()))?;
        let (action, signer) = match what {
            Fetch::WebIdentity { token_file, role_arn, session, duration } => {
                let token = std::fs::read_to_string(token_file)
                    .map_err(|source| StsError::Token { path: token_file.display().to_string(), source })?;
                url.query_pairs_mut()
                    .append_pair("Action", "AssumeRoleWithWebIdentity")
                    .append_pair("Version", "2011-06-15")
                    .append_pair("RoleArn", role_arn)
                    .append_pair("RoleSessionName", session)
                    .append_pair("DurationSeconds", &duration.to_string())
                    .append_pair("WebIdentityToken", token.trim());
                ("AssumeRoleWithWebIdentity", None)
            }
            Fetch::AssumeRole { base, role_arn, external_id, session, duration } => {
                {
                    let mut q = url.query_pairs_mut();
                    q.append_pair("Action", "AssumeRole")
                        .append_pair("Version", "2011-06-15")
                        .append_pair("RoleArn", role_arn)
                        .append_pair("RoleSessionName", session)
                        .append_pair("DurationSeconds", &duration.to_string());
                    if let Some(id) = external_id {
                        q.append_pair("ExternalId", id);
                    }
                }
                ("AssumeRole", Some(base.get_credential().await.map_err(StsError::Base)?))
            }
        };
        let mut request: HttpRequest = http::Request::builder()
            .method("GET")
            .uri(url.as_str())
            .body(HttpRequestBody::from(Vec::new()))
            .map_err(|e| StsError::Request(e.to_string()))?;
        if let Some(base) = &signer {
            AwsAuthorizer::new(base, "sts", &self.region).try_authorize(&mut request, None).map_err(|e| StsError::Request(e.to_string()))?;
        }
        // The URL carries the web identity token: keep it out of the error (and the log).
        let http_error = |source: reqwest::Error| StsError::Http { action, endpoint: self.endpoint.clone(), source: source.without_url() };
        let response = self.client.get(url).headers(request.headers().clone()).send().await.map_err(http_error)?;
        let status = response.status();
        let body = response.text().await.map_err(http_error)?;
        if !status.is_success() {
            let message = xml_text(&body, "Message").unwrap_or_else(|| body.chars().take(300).collect());
            return Err(StsError::Refused { action, status: status.as_u16(), message });
        }
        let field = |tag: &str| xml_text(&body, tag).ok_or_else(|| StsError::Answer(format!("no <{tag}> in {action}'s answer")));
        let expires = DateTime::parse_from_rfc3339(&field("Expiration")?).map_err(|e| StsError::Answer(format!("Expiration: {e}")))?.with_timezone(&Utc);
        let credential = AwsCredential { key_id: field("AccessKeyId")?, secret_key: field("SecretAccessKey")?, token: Some(field("SessionToken")?) };
        Ok(Temporary { credential: Arc::new(credential), fetched: Utc::now(), expires })
    }
}

/// The text of the first `<tag>` element (STS answers are small, flat and unescaped but for
/// entities in messages).
fn xml_text(body: &str, tag: &str) -> Option<String> {
    let start = body.find(&format!("<{tag}>"))? + tag.len() + 2;
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    Some(body[start..end].trim().replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&apos;", "'"))
}

/// Credentials from STS, kept until shortly before they expire; one refresh at a time. A
/// refresh that fails while the old credentials are still valid keeps them (and retries on
/// the next request).
#[derive(Debug)]
struct Refreshing {
    sts: StsClient,
    fetch: Fetch,
    cache: tokio::sync::Mutex<Option<Temporary>>,
}

#[async_trait::async_trait]
impl CredentialProvider for Refreshing {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cache = self.cache.lock().await;
        let now = Utc::now();
        if let Some(t) = cache.as_ref().filter(|t| t.fresh(now)) {
            return Ok(t.credential.clone());
        }
        match self.sts.fetch(&self.fetch).await {
            Ok(t) => {
                tracing::info!(key = %mask(&t.credential.key_id), expires = %t.expires, "AWS credentials from STS");
                let credential = t.credential.clone();
                *cache = Some(t);
                Ok(credential)
            }
            Err(e) => match cache.as_ref().filter(|t| now < t.expires) {
                Some(old) => {
                    tracing::warn!(error = %e, expires = %old.expires, "could not refresh the AWS credentials; using the current ones until they expire");
                    Ok(old.credential.clone())
                }
                None => Err(object_store::Error::Generic { store: "S3", source: Box::new(e) }),
            },
        }
    }
}

/// How long the STS client waits for an answer.
pub(super) const STS_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;

    fn config(env: &[(&str, &str)]) -> S3Config {
        S3Config { env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(), ..S3Config::default() }
    }

    fn sts(c: &S3Config) -> Sts {
        Sts::new(c, reqwest::Client::new())
    }

    fn source(c: &S3Config) -> Result<CredentialInfo, String> {
        let no_builder = |_: &[(AmazonS3ConfigKey, String)]| Err("the test has no object_store provider".to_string());
        resolve(c, &sts(c), no_builder).map(|(_, info)| info)
    }

    #[test]
    fn the_chain_takes_the_first_source_present_in_the_sdk_order() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let home = dir.path().to_string_lossy().to_string();
        let all = [
            ("HOME", home.as_str()),
            ("AWS_ACCESS_KEY_ID", "AKIAENVIRONMENT1"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token"),
            ("AWS_ROLE_ARN", "arn:aws:iam::1:role/irsa"),
            ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "/v2/credentials/x"),
        ];
        let mut c = config(&all);
        c.access_key_id = "AKIACONFIGKEY001".into();
        c.secret_access_key = "s".into();
        assert_eq!(source(&c)?.source, CredentialSource::Static);
        assert_eq!(source(&c)?.detail, "s3.access_key_id AKIA…Y001", "the key id masked");
        c.access_key_id.clear();
        assert_eq!(source(&c)?.source, CredentialSource::Environment);
        let c = config(&all[2..]);
        assert_eq!(source(&c)?.source, CredentialSource::WebIdentity);
        let c = config(&all[5..]);
        assert_eq!(source(&c)?.source, CredentialSource::Container);
        let c = config(&[("HOME", home.as_str())]);
        assert_eq!(source(&c)?.source, CredentialSource::Instance);
        std::fs::create_dir_all(dir.path().join(".aws")).map_err(|e| e.to_string())?;
        std::fs::write(dir.path().join(".aws/credentials"), "[default]\naws_access_key_id = AKIAPROFILEKEY01\naws_secret_access_key = s\n")
            .map_err(|e| e.to_string())?;
        let info = source(&c)?;
        assert_eq!((info.source, info.detail.as_str()), (CredentialSource::Profile, "profile default, aws_access_key_id AKIA…EY01"));
        // Pinned: only that source, even with others present.
        let mut c = config(&all);
        c.credentials = CredentialSource::Instance;
        assert_eq!(source(&c)?.source, CredentialSource::Instance);
        c.credentials = CredentialSource::WebIdentity;
        c.env.remove("AWS_ROLE_ARN");
        let err = source(&c).err().unwrap_or_default();
        assert!(err.contains("AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN"), "{err}");
        Ok(())
    }

    #[test]
    fn profiles_merge_both_files_and_follow_source_profile() -> Result<(), String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let (creds, conf) = (dir.path().join("creds"), dir.path().join("conf"));
        std::fs::write(&creds, "[base]\naws_access_key_id = AKIABASEKEY00001\naws_secret_access_key = s\n# comment\n").map_err(|e| e.to_string())?;
        std::fs::write(&conf, "[profile app]\nrole_arn = arn:aws:iam::1:role/app\nsource_profile = base\nexternal_id = ext\n[profile sso]\nsso_start_url = x\n[default]\nregion = eu-west-1\n")
            .map_err(|e| e.to_string())?;
        let (cf, ff) = (creds.to_string_lossy().to_string(), conf.to_string_lossy().to_string());
        let mut c = config(&[("AWS_SHARED_CREDENTIALS_FILE", cf.as_str()), ("AWS_CONFIG_FILE", ff.as_str())]);
        c.profile = "app".into();
        let info = source(&c)?;
        assert_eq!(info.assumed_role.as_deref(), Some("arn:aws:iam::1:role/app"));
        assert_eq!(info.detail, "profile app via source_profile profile base, aws_access_key_id AKIA…0001");
        c.profile = "sso".into();
        let err = source(&c).err().unwrap_or_default();
        assert!(err.contains("SSO profiles are not supported"), "{err}");
        c.profile = "nope".into();
        assert!(source(&c).err().unwrap_or_default().contains("no profile \"nope\""));
        Ok(())
    }

    #[test]
    fn temporary_credentials_renew_before_they_expire() {
        let at = |s: i64| DateTime::<Utc>::from_timestamp(s, 0).unwrap_or_default();
        let key = Arc::new(AwsCredential { key_id: "k".into(), secret_key: "s".into(), token: None });
        let hour = Temporary { credential: key.clone(), fetched: at(0), expires: at(3600) };
        assert!(hour.fresh(at(3299)) && !hour.fresh(at(3300)), "an hour's credentials renew 5 minutes early");
        let short = Temporary { credential: key, fetched: at(0), expires: at(20) };
        assert!(short.fresh(at(14)) && !short.fresh(at(15)), "20 s credentials renew at three quarters");
    }

    /// The web identity token travels in the STS URL; a failed request must not show it.
    #[tokio::test]
    async fn a_failed_exchange_does_not_show_the_token() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let token = dir.path().join("token");
        std::fs::write(&token, "secret-web-identity-token")?;
        let sts = StsClient { client: reqwest::Client::new(), endpoint: "http://127.0.0.1:9".into(), region: "us-east-1".into() };
        let fetch = Fetch::WebIdentity { token_file: token, role_arn: "arn:aws:iam::1:role/r".into(), session: "s".into(), duration: 900 };
        let err = sts.fetch(&fetch).await.err().ok_or("nothing listens on port 9")?;
        let text = format!("{err} {:?}", std::error::Error::source(&err));
        assert!(!text.contains("secret-web-identity-token"), "{text}");
        Ok(())
    }

    #[test]
    fn sts_answers_are_read() {
        let body = "<AssumeRoleResponse><AssumeRoleResult><Credentials><AccessKeyId>ASIA1</AccessKeyId><SecretAccessKey>x&amp;y</SecretAccessKey></Credentials></AssumeRoleResult></AssumeRoleResponse>";
        assert_eq!(xml_text(body, "AccessKeyId").as_deref(), Some("ASIA1"));
        assert_eq!(xml_text(body, "SecretAccessKey").as_deref(), Some("x&y"));
        assert_eq!(xml_text(body, "SessionToken"), None);
    }
}
