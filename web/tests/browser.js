// Headless Debian Chromium driven by playwright-core, and the repository served by web/serve.py.
// Shared by the browser test and the browser benchmark.

import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

import { chromium } from "playwright-core";

import { ROOT } from "./helpers.mjs";

export const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

/**
 * Starts web/serve.py on a free port; resolves to { url, requests, stop }. `isolated: false` leaves
 * out the COOP/COEP headers (the page is then not cross-origin isolated); `logRequests: true` fills
 * `requests` with each request the server answers ("GET /path").
 */
export function startServer({ isolated = true, logRequests = false } = {}) {
  const args = [join(ROOT, "web/serve.py"), "--port", "0", ...(logRequests ? [] : ["--quiet"]), ...(isolated ? [] : ["--no-isolation"])];
  const child = spawn(process.env.PYTHON ?? "python3", args, { stdio: ["ignore", "pipe", logRequests ? "pipe" : "inherit"] });
  // With logRequests, every request line the server logs ("GET /models/x.slm HTTP/1.1"), in order.
  const requests = [];
  if (logRequests) createInterface({ input: child.stderr }).on("line", (line) => {
    const request = line.match(/"([A-Z]+ \S+) HTTP/)?.[1];
    if (request) requests.push(request);
  });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("web/serve.py did not start in 10 s")), 10_000);
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`web/serve.py exited with ${code}`)));
    createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(timer);
      const url = line.match(/http:\/\/\S+/)?.[0];
      if (!url) return reject(new Error(`unexpected first line from serve.py: ${line}`));
      resolve({ url, requests, stop: () => child.kill() });
    });
  });
}

/** Launches headless Chromium with a fresh profile; resolves to { context, page, close }. */
export async function launch({ viewport = { width: 1280, height: 900 } } = {}) {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM`);
  const profile = mkdtempSync(join(tmpdir(), "trl-chromium-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport,
    // --disable-dev-shm-usage: containers often have a small /dev/shm, which crashes large pages.
    args: ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  return {
    context,
    page,
    problems,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
