// Headless Chromium for the browser tests: Debian's, driven by playwright-core (`CHROMIUM`
// overrides the path).
import { chromium } from 'playwright-core';

/** Launches headless Chromium without a sandbox, GPU or background networking. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run'],
  });
}
