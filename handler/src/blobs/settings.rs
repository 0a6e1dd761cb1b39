//! Where records are stored, from app settings: a storage connection string (account key, or
//! Azurite's `UseDevelopmentStorage=true`), an account URL for managed identity, or (neither)
//! the local folder.

use std::path::PathBuf;

use super::sas::AccountKey;

/// Azurite's documented development account (public, not a secret).
const DEV_ACCOUNT: &str = "devstoreaccount1";
const DEV_KEY: &str = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
const DEV_ENDPOINT: &str = "http://127.0.0.1:10000/devstoreaccount1";

#[derive(Debug, Clone)]
pub enum StorageSettings {
    /// Files under this folder; links served by the handler.
    Local { dir: PathBuf },
    /// Blob Storage with an account key: the handler signs SAS tokens itself.
    AzureKey { endpoint: String, key: AccountKey, container: String },
    /// Blob Storage with the app's managed identity (`client_id` for a user-assigned one):
    /// links are user-delegation SAS tokens.
    AzureIdentity { endpoint: String, account: String, client_id: Option<String>, container: String },
}

impl StorageSettings {
    /// From `PORTAL_RECORDS_CONNECTION_STRING` or `PORTAL_RECORDS_ACCOUNT_URL` (not both), else
    /// the local folder. `Err` names what is wrong (never echoes a key).
    pub fn parse(
        connection_string: Option<&str>,
        account_url: Option<&str>,
        client_id: Option<&str>,
        container: &str,
        dir: PathBuf,
    ) -> Result<Self, (&'static str, String)> {
        let container = parse_container(container).map_err(|m| ("PORTAL_RECORDS_CONTAINER", m))?;
        match (connection_string, account_url) {
            (Some(_), Some(_)) => Err((
                "PORTAL_RECORDS_ACCOUNT_URL",
                "cannot be combined with PORTAL_RECORDS_CONNECTION_STRING: pick one".into(),
            )),
            (Some(cs), None) => {
                let (endpoint, key) =
                    parse_connection_string(cs).map_err(|m| ("PORTAL_RECORDS_CONNECTION_STRING", m))?;
                Ok(StorageSettings::AzureKey { endpoint, key, container })
            }
            (None, Some(url)) => {
                let (endpoint, account) = parse_account_url(url).map_err(|m| ("PORTAL_RECORDS_ACCOUNT_URL", m))?;
                Ok(StorageSettings::AzureIdentity {
                    endpoint,
                    account,
                    client_id: client_id.map(str::to_owned),
                    container,
                })
            }
            (None, None) => Ok(StorageSettings::Local { dir }),
        }
    }
}

/// 3-63 lower-case letters, digits and single hyphens, starting and ending with a letter or digit.
fn parse_container(raw: &str) -> Result<String, String> {
    let ok = (3..=63).contains(&raw.len())
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !raw.starts_with('-')
        && !raw.ends_with('-')
        && !raw.contains("--");
    if ok { Ok(raw.to_owned()) } else { Err("must be a valid container name (3-63 of a-z, 0-9, -)".into()) }
}

/// `(blob endpoint without a trailing slash, key)`.
fn parse_connection_string(cs: &str) -> Result<(String, AccountKey), String> {
    let mut parts = std::collections::HashMap::new();
    for part in cs.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').ok_or("must be `Key=Value` pairs separated by `;`")?;
        parts.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
    }
    if parts.get("usedevelopmentstorage").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        let endpoint = parts
            .get("developmentstorageproxyuri")
            .map(|p| format!("{}/{DEV_ACCOUNT}", p.trim_end_matches('/')))
            .unwrap_or_else(|| DEV_ENDPOINT.to_owned());
        let key = AccountKey::new(DEV_ACCOUNT, DEV_KEY).ok_or("the development key does not decode")?;
        return Ok((endpoint, key));
    }
    let account = parts.get("accountname").ok_or("needs AccountName")?;
    let key = parts.get("accountkey").ok_or(
        "needs AccountKey (for a SAS-only or identity setup use PORTAL_RECORDS_ACCOUNT_URL with managed identity)",
    )?;
    let key = AccountKey::new(account, key).ok_or("AccountKey is not base64")?;
    let endpoint = match parts.get("blobendpoint") {
        Some(e) => e.trim_end_matches('/').to_owned(),
        None => {
            let protocol = parts.get("defaultendpointsprotocol").map_or("https", String::as_str);
            let suffix = parts.get("endpointsuffix").map_or("core.windows.net", String::as_str);
            format!("{protocol}://{account}.blob.{suffix}")
        }
    };
    check_endpoint(&endpoint)?;
    Ok((endpoint, key))
}

fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let url = url::Url::parse(endpoint).map_err(|_| "has a blob endpoint that is not a URL".to_owned())?;
    let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err("must use https (http only on a loopback address, for Azurite)".into()),
    }
}

/// `https://<account>.blob.<suffix>` → `(endpoint, account)`.
fn parse_account_url(raw: &str) -> Result<(String, String), String> {
    let endpoint = raw.trim_end_matches('/').to_owned();
    let url = url::Url::parse(&endpoint).map_err(|_| "must be a URL like https://<account>.blob.core.windows.net")?;
    if url.scheme() != "https" {
        return Err("must use https (managed identity tokens are never sent over http)".into());
    }
    let account = url
        .host_str()
        .and_then(|h| h.split_once(".blob."))
        .map(|(a, _)| a.to_owned())
        .filter(|a| !a.is_empty())
        .ok_or("must be a URL like https://<account>.blob.core.windows.net")?;
    if url.path() != "/" && !url.path().is_empty() {
        return Err("must not have a path".into());
    }
    Ok((endpoint, account))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cs: Option<&str>, url: Option<&str>) -> Result<StorageSettings, (&'static str, String)> {
        StorageSettings::parse(cs, url, None, "medical-records", PathBuf::from("data/records"))
    }

    #[test]
    fn development_storage_is_azurite_on_loopback() {
        let Ok(StorageSettings::AzureKey { endpoint, key, container }) =
            parse(Some("UseDevelopmentStorage=true"), None)
        else {
            panic!("not parsed")
        };
        assert_eq!(endpoint, "http://127.0.0.1:10000/devstoreaccount1");
        assert_eq!(key.account, "devstoreaccount1");
        assert_eq!(container, "medical-records");
        let Ok(StorageSettings::AzureKey { endpoint, .. }) =
            parse(Some("UseDevelopmentStorage=true;DevelopmentStorageProxyUri=http://127.0.0.1:19999/"), None)
        else {
            panic!("not parsed")
        };
        assert_eq!(endpoint, "http://127.0.0.1:19999/devstoreaccount1");
    }

    #[test]
    fn account_key_strings_build_the_endpoint() {
        let cs =
            "DefaultEndpointsProtocol=https;AccountName=clinic;AccountKey=c2VjcmV0;EndpointSuffix=core.windows.net";
        let Ok(StorageSettings::AzureKey { endpoint, .. }) = parse(Some(cs), None) else { panic!("not parsed") };
        assert_eq!(endpoint, "https://clinic.blob.core.windows.net");
        let cs =
            "AccountName=devstoreaccount1;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1/";
        let Ok(StorageSettings::AzureKey { endpoint, .. }) = parse(Some(cs), None) else { panic!("not parsed") };
        assert_eq!(endpoint, "http://127.0.0.1:10000/devstoreaccount1");
    }

    #[test]
    fn bad_settings_name_themselves_and_never_echo_the_key() {
        for (cs, url, name) in [
            (Some("AccountName=a"), None, "PORTAL_RECORDS_CONNECTION_STRING"),
            (Some("AccountName=a;AccountKey=!!!"), None, "PORTAL_RECORDS_CONNECTION_STRING"),
            (
                Some("AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=http://10.0.0.1/a"),
                None,
                "PORTAL_RECORDS_CONNECTION_STRING",
            ),
            (None, Some("http://a.blob.core.windows.net"), "PORTAL_RECORDS_ACCOUNT_URL"),
            (None, Some("https://example.com"), "PORTAL_RECORDS_ACCOUNT_URL"),
            (Some("UseDevelopmentStorage=true"), Some("https://a.blob.core.windows.net"), "PORTAL_RECORDS_ACCOUNT_URL"),
        ] {
            let e = parse(cs, url).unwrap_err();
            assert_eq!(e.0, name, "{cs:?} {url:?}");
            assert!(!e.1.contains("c2VjcmV0") && !e.1.contains("!!!"), "{}", e.1);
        }
        assert_eq!(
            StorageSettings::parse(None, None, None, "Bad_Name", PathBuf::new()).unwrap_err().0,
            "PORTAL_RECORDS_CONTAINER"
        );
    }

    #[test]
    fn account_urls_mean_managed_identity() {
        let Ok(StorageSettings::AzureIdentity { endpoint, account, .. }) =
            parse(None, Some("https://clinicrecords.blob.core.windows.net/"))
        else {
            panic!("not parsed")
        };
        assert_eq!(
            (endpoint.as_str(), account.as_str()),
            ("https://clinicrecords.blob.core.windows.net", "clinicrecords")
        );
    }
}
