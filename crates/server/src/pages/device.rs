//! "Firefox on Windows" from a session's User-Agent string, for the account page's
//! session list. A small table rather than a parser crate: the lean Rust parsers are
//! unmaintained (they predate Chromium Edge), the maintained ones carry a regex
//! database of hundreds of kilobytes, and a person only needs to recognise their
//! own device. Order matters: Chromium browsers also say "Chrome" and "Safari",
//! iPhones say "like Mac OS X", Android says "Linux".

use serde::Serialize;

/// Browser and operating system, each `None` when not recognised.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub browser: Option<&'static str>,
    pub os: Option<&'static str>,
}

const BROWSERS: &[(&[&str], &str)] = &[
    (&["Edg/", "EdgA/", "EdgiOS/"], "Edge"),
    (&["OPR/", "Opera"], "Opera"),
    (&["SamsungBrowser/"], "Samsung Internet"),
    (&["Firefox/", "FxiOS/"], "Firefox"),
    (&["CriOS/"], "Chrome"),
    (&["Chromium/"], "Chromium"),
    (&["Chrome/"], "Chrome"),
    (&["Trident/", "MSIE "], "Internet Explorer"),
];

const SYSTEMS: &[(&[&str], &str)] = &[
    (&["Windows"], "Windows"),
    (&["iPad"], "iPadOS"),
    (&["iPhone", "iPod"], "iOS"),
    (&["Android"], "Android"),
    (&["CrOS"], "ChromeOS"),
    (&["Macintosh", "Mac OS X"], "macOS"),
    (&["Linux", "X11"], "Linux"),
];

fn first_match(user_agent: &str, table: &[(&[&str], &'static str)]) -> Option<&'static str> {
    table
        .iter()
        .find(|(marks, _)| marks.iter().any(|mark| user_agent.contains(mark)))
        .map(|(_, name)| *name)
}

/// The device behind `user_agent`; `None` when neither part is recognised.
pub fn describe(user_agent: &str) -> Option<Device> {
    let browser = first_match(user_agent, BROWSERS).or_else(|| {
        // Safari says only "Version/… Safari/…"; other WebKit browsers add their name.
        (user_agent.contains("Safari/") && user_agent.contains("Version/")).then_some("Safari")
    });
    let os = first_match(user_agent, SYSTEMS);
    (browser.is_some() || os.is_some()).then_some(Device { browser, os })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(user_agent: &str) -> (Option<&'static str>, Option<&'static str>) {
        describe(user_agent).map_or((None, None), |d| (d.browser, d.os))
    }

    #[test]
    fn common_browsers_on_common_systems() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                ("Chrome", "Windows"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
                ("Edge", "Windows"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
                ("Safari", "macOS"),
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14.7; rv:133.0) Gecko/20100101 Firefox/133.0",
                ("Firefox", "macOS"),
            ),
            (
                "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
                ("Firefox", "Linux"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
                ("Safari", "iOS"),
            ),
            (
                "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1",
                ("Chrome", "iOS"),
            ),
            (
                "Mozilla/5.0 (iPad; CPU OS 17_7 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.7 Mobile/15E148 Safari/604.1",
                ("Safari", "iPadOS"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
                ("Chrome", "Android"),
            ),
            (
                "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36",
                ("Samsung Internet", "Android"),
            ),
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 OPR/115.0.0.0",
                ("Opera", "Windows"),
            ),
            (
                "Mozilla/5.0 (X11; CrOS x86_64 14541.0.0) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
                ("Chrome", "ChromeOS"),
            ),
            (
                "Mozilla/5.0 (Windows NT 6.1; Trident/7.0; rv:11.0) like Gecko",
                ("Internet Explorer", "Windows"),
            ),
        ];
        for (user_agent, (browser, os)) in cases {
            assert_eq!(named(user_agent), (Some(browser), Some(os)), "{user_agent}");
        }
    }

    #[test]
    fn headless_chromium_is_chrome_on_linux() {
        assert_eq!(
            named(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36"
            ),
            (Some("Chrome"), Some("Linux"))
        );
    }

    #[test]
    fn what_is_not_recognised_stays_unnamed() {
        assert_eq!(describe("curl/8.5.0"), None);
        assert_eq!(describe(""), None);
        assert_eq!(named("SomeApp/1.0 (Windows)"), (None, Some("Windows")));
    }
}
