//! The admin page at `/ui/`: its routes over plain HTTP, then the page itself in a real browser.
//!
//! The browser is the distribution's Chromium, driven through the distribution's chromedriver
//! (`apt-get install -y --no-install-recommends chromium chromium-driver`; `scripts/test.sh`
//! installs them). Each test starts its own chromedriver on a free port with a fresh profile
//! and stops it afterwards. A missing browser or driver fails the test; it never skips.
//! Screenshots of every page at 360 px and at desktop width land in
//! `<target dir>/ui-screenshots/`.

mod browser;
mod pages;
mod routes;
