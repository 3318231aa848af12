// Package e2e drives the web console (pkg/console, built from web/) in a
// real Chromium with chromedp, against a real levitated on loopback that
// holds the demo's remote-written RED metrics, its change events and a
// Kayenta execution. It is a separate module so that the main module does
// not depend on chromedp.
//
// The tests skip when no Chromium is found (CHROMIUM, chromium,
// chromium-browser, google-chrome); .ci/run installs Debian's chromium.
// With CONSOLE_SCREENSHOTS=DIR they write their screenshots there
// (docs/console/ holds the committed ones).
package e2e
