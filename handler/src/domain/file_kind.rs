//! What an uploaded file really is: its type from its first bytes (never from its name or the
//! client's word), the original file name as a patient sees it, and how that name travels back
//! in `Content-Disposition`.

use serde::Serialize;

use super::values::ValueError;

/// The file types a clinic record may be. Everything else is refused (415).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
pub enum ContentKind {
    #[serde(rename = "application/pdf")]
    Pdf,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/tiff")]
    Tiff,
    #[serde(rename = "application/dicom")]
    Dicom,
    #[serde(rename = "text/plain")]
    Text,
}

/// How many leading bytes [`ContentKind::sniff`] looks at (DICOM's marker sits at 128; text is
/// judged on this much).
pub const SNIFF_BYTES: usize = 8192;

impl ContentKind {
    pub const ALL: [ContentKind; 6] = [
        ContentKind::Pdf,
        ContentKind::Png,
        ContentKind::Jpeg,
        ContentKind::Tiff,
        ContentKind::Dicom,
        ContentKind::Text,
    ];

    pub fn mime(self) -> &'static str {
        match self {
            ContentKind::Pdf => "application/pdf",
            ContentKind::Png => "image/png",
            ContentKind::Jpeg => "image/jpeg",
            ContentKind::Tiff => "image/tiff",
            ContentKind::Dicom => "application/dicom",
            ContentKind::Text => "text/plain",
        }
    }

    /// The `Content-Type` to serve it with.
    pub fn served_as(self) -> &'static str {
        match self {
            ContentKind::Text => "text/plain; charset=utf-8",
            other => other.mime(),
        }
    }

    fn extensions(self) -> &'static [&'static str] {
        match self {
            ContentKind::Pdf => &["pdf"],
            ContentKind::Png => &["png"],
            ContentKind::Jpeg => &["jpg", "jpeg", "jpe"],
            ContentKind::Tiff => &["tif", "tiff"],
            ContentKind::Dicom => &["dcm", "dicom"],
            ContentKind::Text => &["txt", "text"],
        }
    }

    pub fn from_mime_stored(raw: &str) -> Option<Self> {
        ContentKind::ALL.into_iter().find(|k| k.mime() == raw)
    }

    /// A client's declared type: one of ours (parameters and case ignored), or
    /// `application/octet-stream` ("I don't know": `None`).
    pub fn parse_declared(raw: &str) -> Result<Option<Self>, ValueError> {
        let essence = raw.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        if essence == "application/octet-stream" {
            return Ok(None);
        }
        let alias = match essence.as_str() {
            "image/jpg" | "image/pjpeg" => "image/jpeg",
            "image/tif" => "image/tiff",
            other => other,
        };
        ContentKind::from_mime_stored(alias)
            .map(Some)
            .ok_or_else(|| ValueError(format!("must be one of {} (or application/octet-stream)", Self::allowed_list())))
    }

    pub fn allowed_list() -> String {
        ContentKind::ALL.iter().map(|k| k.mime()).collect::<Vec<_>>().join(", ")
    }

    /// The type a file extension claims, if it is one of ours.
    pub fn from_extension(ext: &str) -> Option<Self> {
        let ext = ext.to_ascii_lowercase();
        ContentKind::ALL.into_iter().find(|k| k.extensions().contains(&ext.as_str()))
    }

    /// The type of a file from its first bytes (`head`: at least [`SNIFF_BYTES`] of it, or the
    /// whole file when `complete`). `None`: not a type we accept, including executables and
    /// scripts, which are text-like but never records.
    pub fn sniff(head: &[u8], complete: bool) -> Option<Self> {
        if head.starts_with(b"%PDF-") {
            return Some(ContentKind::Pdf);
        }
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Some(ContentKind::Png);
        }
        if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            return Some(ContentKind::Jpeg);
        }
        if head.starts_with(b"II*\0") || head.starts_with(b"MM\0*") {
            return Some(ContentKind::Tiff);
        }
        if head.len() >= 132 && &head[128..132] == b"DICM" {
            return Some(ContentKind::Dicom);
        }
        if is_plain_text(head, complete) {
            return Some(ContentKind::Text);
        }
        None
    }
}

/// UTF-8 (a sequence cut at the end of `head` is fine unless the file ends there), no control
/// characters but tab, line feed, form feed and carriage return, and no `#!` script header.
fn is_plain_text(head: &[u8], complete: bool) -> bool {
    if head.is_empty() || head.starts_with(b"#!") {
        return false;
    }
    let body = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let valid = match std::str::from_utf8(body) {
        Ok(s) => s,
        Err(e) if !complete && e.error_len().is_none() => match std::str::from_utf8(&body[..e.valid_up_to()]) {
            Ok(s) => s,
            Err(_) => return false,
        },
        Err(_) => return false,
    };
    valid.chars().all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

/// The file name a patient gave, kept only to show it back and to name the download. Never
/// part of a storage path: blob names are ours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(transparent)]
pub struct FileName(String);

impl FileName {
    /// 1-255 bytes, no path separators, no control characters, not `.` or `..`, and no
    /// leading or trailing whitespace.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.is_empty() || raw.len() > 255 {
            return Err(ValueError("must be 1 to 255 bytes".into()));
        }
        if raw.contains(['/', '\\']) || raw == "." || raw == ".." {
            return Err(ValueError("must be a plain file name, without folders".into()));
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(ValueError("must not contain control characters or surrounding spaces".into()));
        }
        Ok(FileName(raw.to_owned()))
    }

    pub fn from_trusted(raw: String) -> Self {
        FileName(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The extension after the last dot, if there is one (and something before it).
    pub fn extension(&self) -> Option<&str> {
        self.0.rsplit_once('.').filter(|(stem, ext)| !stem.is_empty() && !ext.is_empty()).map(|(_, ext)| ext)
    }

    /// Whether the name's extension is compatible with the sniffed type: none, or one of the
    /// type's own. A `.pdf` holding PNG bytes, or an `.exe`, is refused.
    pub fn agrees_with(&self, kind: ContentKind) -> bool {
        match self.extension() {
            None => true,
            Some(ext) => ContentKind::from_extension(ext) == Some(kind),
        }
    }

    /// `Content-Disposition: attachment` naming this file (RFC 6266): an ASCII fallback in
    /// `filename` and the exact name in `filename*` (RFC 8187), so no quote, backslash, CR/LF
    /// or non-ASCII character can break out of the header.
    pub fn content_disposition(&self) -> String {
        let fallback: String = self
            .0
            .chars()
            .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
            .collect();
        format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{}", rfc8187(&self.0))
    }
}

/// Percent-encodes everything but RFC 8187's `attr-char`.
fn rfc8187(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dicom() -> Vec<u8> {
        let mut d = vec![0u8; 128];
        d.extend_from_slice(b"DICM\x02\x00\x00\x00");
        d
    }

    #[test]
    fn sniffs_each_accepted_type_from_its_bytes() {
        assert_eq!(ContentKind::sniff(b"%PDF-1.7\n...", false), Some(ContentKind::Pdf));
        assert_eq!(ContentKind::sniff(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR", false), Some(ContentKind::Png));
        assert_eq!(ContentKind::sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10], false), Some(ContentKind::Jpeg));
        assert_eq!(ContentKind::sniff(b"II*\0\x08\0\0\0", false), Some(ContentKind::Tiff));
        assert_eq!(ContentKind::sniff(b"MM\0*\0\0\0\x08", false), Some(ContentKind::Tiff));
        assert_eq!(ContentKind::sniff(&dicom(), false), Some(ContentKind::Dicom));
        assert_eq!(ContentKind::sniff("Blood pressure 120/80 – ok\r\n".as_bytes(), true), Some(ContentKind::Text));
    }

    #[test]
    fn refuses_executables_scripts_binaries_and_nothing() {
        for bad in [
            &b"MZ\x90\0\x03\0\0\0"[..],
            b"\x7fELF\x02\x01\x01\0",
            b"#!/bin/sh\nrm -rf /\n",
            b"PK\x03\x04zip",
            b"GIF89a\x01\0\x01\0\x80\0\0",
            b"text with a NUL\0inside",
            b"\xff\xfe not utf-8",
            b"",
        ] {
            assert_eq!(ContentKind::sniff(bad, true), None, "{bad:?}");
        }
    }

    #[test]
    fn text_cut_inside_a_character_is_text_unless_the_file_ends_there() {
        let s = "résumé".as_bytes();
        let cut = &s[..2];
        assert_eq!(ContentKind::sniff(cut, false), Some(ContentKind::Text));
        assert_eq!(ContentKind::sniff(cut, true), None);
    }

    #[test]
    fn declared_types_parse_with_aliases_and_octet_stream_means_unknown() {
        assert_eq!(ContentKind::parse_declared("Application/PDF; q=1"), Ok(Some(ContentKind::Pdf)));
        assert_eq!(ContentKind::parse_declared("image/jpg"), Ok(Some(ContentKind::Jpeg)));
        assert_eq!(ContentKind::parse_declared("application/octet-stream"), Ok(None));
        assert!(ContentKind::parse_declared("application/x-msdownload").is_err());
    }

    #[test]
    fn file_names_are_plain_names_only() {
        for bad in ["", ".", "..", "../etc/passwd", "a/b.pdf", "c:\\x.pdf", "x\u{0}.pdf", " lead.pdf", "cr\r\n.pdf"] {
            assert!(FileName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(FileName::parse(&"a".repeat(256)).is_err());
        let n = FileName::parse("Röntgen Befund.PDF").unwrap();
        assert_eq!(n.extension(), Some("PDF"));
        assert!(n.agrees_with(ContentKind::Pdf));
        assert!(!n.agrees_with(ContentKind::Png));
        assert!(!FileName::parse("setup.exe").unwrap().agrees_with(ContentKind::Text));
        assert!(FileName::parse("scan").unwrap().agrees_with(ContentKind::Tiff));
        assert_eq!(FileName::parse(".bashrc").unwrap().extension(), None);
    }

    #[test]
    fn content_disposition_cannot_be_broken_out_of() {
        let n = FileName::parse("a\"b c é;.pdf").unwrap();
        assert_eq!(
            n.content_disposition(),
            "attachment; filename=\"a_b c _;.pdf\"; filename*=UTF-8''a%22b%20c%20%C3%A9%3B.pdf"
        );
        // Even a stored name that predates validation cannot split the header.
        let old = FileName::from_trusted("x\\y\r\nSet-Cookie: a.pdf".to_owned());
        assert_eq!(
            old.content_disposition(),
            "attachment; filename=\"x_y__Set-Cookie: a.pdf\"; filename*=UTF-8''x%5Cy%0D%0ASet-Cookie%3A%20a.pdf"
        );
    }
}
