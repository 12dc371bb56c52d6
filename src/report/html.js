/*
 * html.js - the script of a zdm report page (src/report/html.c inlines it,
 * after uPlot): draws the timeline and one chart per gate from the data in
 * <script id="zdm-data">.  Text from the journal goes in with textContent
 * and attributes only, never as HTML.  window.zdmReport keeps the data and
 * the charts, and says done once everything is drawn.
 */
(function () {
	"use strict";

	var data = JSON.parse(document.getElementById("zdm-data").textContent);
	var report = { data: data, charts: [], done: false };
	window.zdmReport = report;

	function el(tag, cls, text) {
		var e = document.createElement(tag);
		if (cls) e.className = cls;
		if (text !== undefined && text !== null) e.textContent = String(text);
		return e;
	}

	function dur(ms) {
		if (ms < 1000) return Math.round(ms) + "ms";
		if (ms < 60000) return (ms / 1000).toFixed(ms < 10000 ? 1 : 0) + "s";
		var m = Math.floor(ms / 60000), s = Math.round((ms % 60000) / 1000);
		if (m < 60) return m + "m" + (s ? s + "s" : "");
		return Math.floor(m / 60) + "h" + (m % 60 ? (m % 60) + "m" : "");
	}

	function clock(ms) {
		return new Date(ms).toISOString().slice(11, 23);
	}

	var words = {
		succeeded: "succeeded", failed: "failed", retried: "failed, retried",
		waiting: "waiting for a decision", interrupted: "interrupted", skipped: "skipped",
		running: "running", in_doubt: "in doubt (no end recorded)", undone: "undone",
		nothing_to_undo: "nothing to undo", left_in_place: "left in place",
		undo_failed: "undo failed", ended: "ended"
	};

	/* ---- the timeline: one row per step, a box per attempt and undo ---- */

	function ticks(span) {
		var steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
			7200, 14400, 28800, 86400];
		for (var i = 0; i < steps.length; i++)
			if (span / 1000 / steps[i] <= 8) return steps[i] * 1000;
		return 86400000;
	}

	function timeline() {
		var box = document.getElementById("timeline");
		var t0 = data.start, t1 = Math.max(data.end, data.start + 1);
		var span = t1 - t0;
		var pct = function (t) { return Math.max(0, Math.min(100, (t - t0) / span * 100)); };

		var head = el("div", "tl-row tl-head");
		head.appendChild(el("div", "tl-label", "step"));
		var axis = el("div", "tl-track tl-axis");
		var step = ticks(span);
		for (var t = 0; t <= span + 1e-6; t += step) {
			var tk = el("div", "tl-tick", "+" + dur(t));
			tk.style.left = pct(t0 + t) + "%";
			axis.appendChild(tk);
		}
		head.appendChild(axis);
		box.appendChild(head);

		var body = el("div", "tl-body");
		data.steps.forEach(function (s) {
			var r = el("div", "tl-row tl-step");
			r.setAttribute("data-step", s.id);
			r.setAttribute("data-state", s.state);
			var label = el("div", "tl-label");
			label.appendChild(el("span", "tl-id", s.id));
			if (s.uses) label.appendChild(el("span", "tl-uses", s.uses));
			label.title = s.id + (s.uses ? " (" + s.uses + ")" : "") + ": " +
				(words[s.state] || s.state) + (s.undo ? "; undo: " + (words[s.undo] || s.undo) : "");
			r.appendChild(label);
			var track = el("div", "tl-track");
			s.spans.forEach(function (p) {
				var b = el("div", "tl-bar " + p.kind + " how-" + p.how + (p.open ? " open" : ""));
				b.setAttribute("data-kind", p.kind);
				b.setAttribute("data-how", p.how);
				b.setAttribute("data-attempt", p.attempt);
				b.style.left = pct(p.start) + "%";
				b.style.width = Math.max(0, pct(p.end) - pct(p.start)) + "%";
				b.title = (p.kind === "undo" ? "undo" : "attempt " + p.attempt) + ": " +
					(words[p.how] || p.how) + ", " + dur(p.end - p.start) + " from " +
					clock(p.start) + " UTC" + (p.message ? "\n" + p.message : "");
				track.appendChild(b);
			});
			r.appendChild(track);
			body.appendChild(r);
		});

		/* the pauses and the marks, over every row */
		var over = el("div", "tl-over");
		data.pauses.forEach(function (p) {
			var b = el("div", "tl-pause");
			b.style.left = pct(p.start) + "%";
			b.style.width = Math.max(0, pct(p.end) - pct(p.start)) + "%";
			b.title = "stood still " + dur(p.end - p.start);
			over.appendChild(b);
		});
		data.marks.forEach(function (m) {
			var l = el("div", "tl-mark ev-" + m.event.replace(/[^a-z]/g, "-"));
			l.setAttribute("data-event", m.event);
			l.style.left = pct(m.t) + "%";
			l.title = clock(m.t) + " UTC: " + m.what + (m.step ? " (" + m.step + ")" : "") +
				(m.by ? " by " + m.by : "") + (m.detail ? "\n" + m.detail : "");
			over.appendChild(l);
		});
		body.appendChild(over);
		box.appendChild(body);

		var legend = el("div", "tl-legend");
		[["how-succeeded", "succeeded"], ["how-retried", "failed, retried"], ["how-failed", "failed"],
		 ["how-waiting", "waiting for a decision"], ["how-running", "running"],
		 ["how-in_doubt", "in doubt"], ["undo how-undone", "undone"],
		 ["undo how-nothing_to_undo", "nothing to undo"], ["undo how-left_in_place", "left in place"],
		 ["undo how-undo_failed", "undo failed"]].forEach(function (k) {
			var i = el("span", "tl-key");
			i.appendChild(el("span", "tl-swatch tl-bar " + k[0]));
			i.appendChild(document.createTextNode(k[1]));
			legend.appendChild(i);
		});
		var pk = el("span", "tl-key");
		pk.appendChild(el("span", "tl-swatch tl-pause-key"));
		pk.appendChild(document.createTextNode("paused"));
		legend.appendChild(pk);
		var mk = el("span", "tl-key");
		mk.appendChild(el("span", "tl-swatch tl-mark-key"));
		mk.appendChild(document.createTextNode("approval, control, resumption, rollback (hover)"));
		legend.appendChild(mk);
		box.appendChild(legend);
	}

	/* ---- the gates: measurements against thresholds, time on x ---- */

	/* the x axis' labels: UTC clock times, with milliseconds when the ticks need them */
	function utcTicks(u, splits) {
		var ms = splits.some(function (s) { return Math.abs(s - Math.round(s)) > 1e-6; });
		return splits.map(function (s) {
			var t = new Date(Math.round(s * 1000)).toISOString();
			return ms ? t.slice(11, 23) : t.slice(11, 19);
		});
	}

	function gates() {
		var box = document.getElementById("gates");
		if (data.gates.length === 0) {
			box.appendChild(el("p", "none", "none: no step of this run journaled a measurement"));
			return;
		}
		data.gates.forEach(function (g) {
			var fig = el("figure", "gate");
			fig.setAttribute("data-step", g.step);
			fig.setAttribute("data-points", g.points);
			var cap = el("figcaption");
			cap.appendChild(el("span", "gate-id", g.step));
			cap.appendChild(document.createTextNode(" " + (g.uses || "") + " — " +
				g.points + " measurement" + (g.points === 1 ? "" : "s") + ", "));
			cap.appendChild(el("span", "state s-" + g.state, words[g.state] || g.state));
			fig.appendChild(cap);
			var holder = el("div", "chart");
			fig.appendChild(holder);
			if (g.caption) fig.appendChild(el("p", "caption", g.caption));
			box.appendChild(fig);

			var xs = g.x.map(function (ms) { return ms / 1000; });
			var series = [{
				label: "time",
				value: function (u, v) {
					return v == null ? "--" : new Date(Math.round(v * 1000)).toISOString().slice(11, 23) + " UTC";
				}
			}];
			var cols = [xs];
			g.series.forEach(function (s) {
				series.push({
					label: s.label, stroke: "#2563eb", width: 2, spanGaps: false,
					points: { show: true, size: 7, fill: "#2563eb", stroke: "#2563eb" }
				});
				cols.push(s.values);
			});
			g.thresholds.forEach(function (t) {
				series.push({
					label: t.label, stroke: t.kind === "fail" ? "#dc2626" : "#16a34a",
					width: 1.5, dash: [6, 4], points: { show: false }, threshold: true
				});
				cols.push(g.x.map(function () { return t.value; }));
			});
			var width = Math.max(320, Math.min(1100, (box.clientWidth || 900) - 24));
			var u = new uPlot({
				width: width, height: 240,
				scales: { x: { time: true } },
				series: series,
				axes: [{ values: utcTicks, space: 110 }, { label: g.series[0].label }],
				legend: { live: true }
			}, cols, holder);
			u.zdmGate = g;
			report.charts.push(u);
		});
	}

	timeline();
	gates();
	report.done = true;
})();
