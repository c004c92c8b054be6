//! Static files embedded in the binary, served under `/static/`.

/// One embedded static file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Asset {
    pub bytes: &'static [u8],
    pub content_type: &'static str,
}

/// Every file `/static/{path}` can serve. Nothing else is ever looked up, so a
/// request path can only ever name one of these.
const ASSETS: &[(&str, &[u8], &str)] = &[
    (
        "themes/default/style.css",
        include_bytes!("../../../../web/themes/default/static/style.css"),
        "text/css; charset=utf-8",
    ),
    (
        "themes/default/favicon.svg",
        include_bytes!("../../../../web/themes/default/static/favicon.svg"),
        "image/svg+xml",
    ),
    (
        "themes/default/passkeys.js",
        include_bytes!("../../../../web/themes/default/static/passkeys.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "themes/default/recovery-codes.js",
        include_bytes!("../../../../web/themes/default/static/recovery-codes.js"),
        "text/javascript; charset=utf-8",
    ),
];

/// The embedded file at `path` (relative to `/static/`, a leading `/` is ignored).
pub(crate) fn lookup(path: &str) -> Option<Asset> {
    let path = path.strip_prefix('/').unwrap_or(path);
    if path
        .split(['/', '\\'])
        .any(|segment| segment == ".." || segment == ".")
    {
        return None;
    }
    ASSETS
        .iter()
        .find(|(name, _, _)| *name == path)
        .map(|&(_, bytes, content_type)| Asset {
            bytes,
            content_type,
        })
}

#[cfg(test)]
pub(crate) fn paths() -> impl Iterator<Item = &'static str> {
    ASSETS.iter().map(|(name, _, _)| *name)
}
