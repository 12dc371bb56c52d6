// tests/report_dom.js PAGE.html [SCREENSHOT.png]: open a zdm report page
// (zdm report RUN --html FILE) from file:// in a real Chromium, driven by
// playwright-core (NODE_PATH: scripts/deps.sh's npm cache), and print what
// a person would see as one JSON object: the header's fields, the timeline's
// rows and boxes, each gate chart's points and threshold lines (read from
// the uPlot instances the page keeps), the decisions table, and every
// request that was not to a file: or data: URL (blocked, and listed), every
// console error (a Content-Security-Policy refusal is one) and page error.
// tests/report.bats asserts on it.  CHROMIUM names the browser (default
// /usr/bin/chromium).
"use strict";

const path = require("path");
const { chromium } = require("playwright-core");

async function main() {
	const [page_path, shot] = process.argv.slice(2);
	if (!page_path) {
		console.error("usage: node tests/report_dom.js PAGE.html [SCREENSHOT.png]");
		process.exit(2);
	}
	const browser = await chromium.launch({
		executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
		args: ["--no-sandbox"],
	});
	const out = { requests: [], console_errors: [], page_errors: [] };
	try {
		const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
		const page = await context.newPage();
		// every request leaves through here: only the page itself and data: may go
		await page.route("**/*", (route) => {
			const url = route.request().url();
			if (url.startsWith("file:") || url.startsWith("data:")) return route.continue();
			out.requests.push(url);
			return route.abort();
		});
		page.on("request", (req) => {
			const url = req.url();
			if (!url.startsWith("file:") && !url.startsWith("data:") && !out.requests.includes(url))
				out.requests.push(url);
		});
		page.on("console", (m) => {
			if (m.type() === "error" || m.type() === "warning") out.console_errors.push(m.text());
		});
		page.on("pageerror", (e) => out.page_errors.push(String(e)));
		await page.goto("file://" + path.resolve(page_path), { waitUntil: "load" });
		await page.waitForFunction(() => window.zdmReport && window.zdmReport.done, null,
			{ timeout: 10000 });
		Object.assign(out, await page.evaluate(() => {
			const q = (s) => document.querySelector(s);
			const text = (s) => (q(s) ? q(s).textContent : null);
			const meta = (attr) => {
				const m = document.querySelector(`meta[http-equiv="${attr}"]`);
				return m ? m.getAttribute("content") : null;
			};
			const r = window.zdmReport;
			return {
				title: document.title,
				refresh: meta("refresh"),
				csp: meta("Content-Security-Policy"),
				header: {
					run: text("#run-id"),
					runbook_name: text("#runbook-name"),
					outcome: text("#outcome"),
					status: q("#outcome") && q("#outcome").getAttribute("data-status"),
					live: text("#live"),
					runbook: text("#runbook"),
					sha256: text("#sha256"),
					actor: text("#actor"),
					host: text("#host"),
					version: text("#zdm-version"),
					started: text("#started"),
					duration: text("#duration"),
					failed_step: text("#failed-step"),
					chain: text("#chain"),
					verified: q("#chain") && q("#chain").getAttribute("data-verified"),
					journal: text("#journal"),
					text: q("header").innerText,
				},
				timeline_rows: document.querySelectorAll("#timeline .tl-step").length,
				rows: [...document.querySelectorAll("#timeline .tl-step")].map((row) => ({
					step: row.getAttribute("data-step"),
					state: row.getAttribute("data-state"),
					bars: [...row.querySelectorAll(".tl-bar")].map((b) => ({
						kind: b.getAttribute("data-kind"),
						how: b.getAttribute("data-how"),
						attempt: Number(b.getAttribute("data-attempt")),
						width: b.getBoundingClientRect().width,
					})),
				})),
				marks: [...document.querySelectorAll("#timeline .tl-mark")].map((m) =>
					m.getAttribute("data-event")),
				charts: r.charts.map((u) => {
					const series = u.series.slice(1).map((s, i) => ({
						label: s.label,
						threshold: !!s.threshold,
						values: u.data[i + 1],
					}));
					const measured = series.filter((s) => !s.threshold);
					let points = 0;
					for (let k = 0; k < u.data[0].length; k++)
						if (measured.some((s) => s.values[k] !== null && s.values[k] !== undefined))
							points++;
					// the canvas has something drawn on it
					const cv = u.root.querySelector("canvas");
					const px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
					let inked = 0;
					for (let k = 3; k < px.length; k += 4) if (px[k] !== 0) inked++;
					return {
						step: u.zdmGate.step,
						uses: u.zdmGate.uses,
						points,
						xs: u.data[0].length,
						measured: measured.map((s) => s.label),
						thresholds: series.filter((s) => s.threshold).map((s) => ({
							label: s.label,
							values: [...new Set(s.values)],
						})),
						inked,
						width: u.width,
					};
				}),
				chart_figures: document.querySelectorAll("#gates figure.gate").length,
				decisions: [...document.querySelectorAll("#decisions tr.mark")].map((tr) => ({
					event: tr.getAttribute("data-event"),
					when: tr.querySelector(".when").textContent,
					what: tr.querySelector(".what").textContent,
					step: tr.querySelector(".step").textContent,
					who: tr.querySelector(".who").textContent,
					detail: tr.querySelector(".detail").textContent,
				})),
				steps_rows: document.querySelectorAll("#steps tbody tr").length,
				body_text: document.body.innerText,
				data: r.data,
			};
		}));
		if (shot) await page.screenshot({ path: shot, fullPage: true });
	} finally {
		await browser.close();
	}
	process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
	console.error("report_dom: " + (e && e.stack ? e.stack : e));
	process.exit(1);
});
