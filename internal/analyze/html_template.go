package analyze

// The page template of the HTML view; html.go builds the pageView it is
// executed on.

import "html/template"

var pageTemplate = template.Must(template.New("page").Parse(pageHTML))

// pageHTML is the page. Styles are inline so that the file can be mailed
// or attached to an issue and still render; there is no script.
const pageHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{{.Title}}</title>
<style>
:root { --fg:#1d2330; --muted:#5f6b7a; --line:#d9dee5; --bg:#f5f7fa; --ok:#1f8a4c; --fail:#c62828; }
* { box-sizing: border-box; }
body { margin:0; font:13px/1.45 -apple-system, "Segoe UI", Roboto, "DejaVu Sans", Arial, sans-serif; color:var(--fg); background:var(--bg); }
header { background:#1f2a3c; color:#fff; padding:10px 20px; display:flex; align-items:baseline; gap:16px; }
header h1 { font-size:17px; margin:0; font-weight:600; }
header .sub { color:#b8c4d6; }
header .sel { margin-left:auto; color:#ffd479; }
main { padding:12px 20px 30px; }
section.card { background:#fff; border:1px solid var(--line); border-radius:6px; margin:0 0 14px; padding:10px 14px; }
h2 { font-size:14px; margin:0 0 8px; }
table { border-collapse:collapse; }
th, td { text-align:left; padding:3px 10px 3px 0; vertical-align:top; }
th { color:var(--muted); font-weight:600; font-size:11px; text-transform:uppercase; letter-spacing:.03em; border-bottom:1px solid var(--line); }
td.n { text-align:right; font-variant-numeric:tabular-nums; }
.mono, td.v, .ev td { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.badge { display:inline-block; padding:1px 8px; border-radius:10px; font-weight:600; font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.badge.m-ok { background:#e3f4e9; color:var(--ok); }
.badge.m-fail { background:#fde7e7; color:var(--fail); }
.badge.m-none { background:#eceff3; color:var(--muted); }
.summary { display:flex; column-gap:40px; row-gap:12px; flex-wrap:wrap; align-items:flex-start; }
.summary > table:nth-child(2) { flex:1 1 420px; }
.note { color:var(--muted); margin-top:6px; }
.sent-nothing { margin:0 0 10px; padding:5px 10px; border-left:4px solid #9aa5b1; background:#f4f6f8; }
.warn { background:#fff6db; border:1px solid #f0d78c; padding:6px 10px; border-radius:4px; margin-bottom:12px; }
.trace-head { display:flex; align-items:baseline; gap:12px; flex-wrap:wrap; }
.trace-head h2 { margin:0; }
.trace-head .meta { color:var(--muted); }
.detail-box { margin:8px 0 10px; padding:7px 10px; border-left:4px solid var(--fail); background:#fff4f4; font-size:13.5px; word-break:break-word; }
.detail-box.m-ok { border-color:var(--ok); background:#f1faf4; }
.detail-box.m-none { border-color:#9aa5b1; background:#f4f6f8; }
.wf { border:1px solid var(--line); border-radius:4px; margin-bottom:12px; }
.wf-row { display:flex; min-height:30px; border-top:1px solid #eef1f4; }
.wf-row:first-child { border-top:0; }
.wf-name { flex:0 0 270px; padding:6px 8px; border-right:1px solid var(--line); white-space:nowrap; overflow:hidden; text-overflow:ellipsis; font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.wf-name .svc { color:var(--muted); }
.wf-name .err { display:inline-block; width:15px; height:15px; border-radius:50%; background:var(--fail); color:#fff; font:700 11px/15px sans-serif; text-align:center; margin-left:4px; }
.wf-name .name-dur { float:right; color:var(--muted); font-size:11px; }
.wf-track { position:relative; flex:1; margin:0 70px 0 10px; }
.wf-head { background:#f0f3f7; min-height:24px; }
.wf-head .wf-name { color:var(--muted); font-family:inherit; font-size:11px; text-transform:uppercase; font-weight:600; padding-top:4px; }
.axis-label { position:absolute; top:4px; font-size:11px; color:var(--muted); transform:translateX(-50%); white-space:nowrap; }
.axis-label.first { transform:none; }
.axis-label.last { transform:translateX(-100%); }
.grid { position:absolute; top:0; bottom:0; width:1px; background:#eef1f4; }
.bar { position:absolute; top:8px; height:14px; border-radius:2px; min-width:2px; }
.bar.err { box-shadow: inset 0 0 0 2px var(--fail); }
.dur { position:absolute; top:7px; font-size:11px; color:var(--muted); white-space:nowrap; padding:0 4px; }
.dur.inside { color:#fff; font-weight:600; top:8px; line-height:14px; }
.tick { position:absolute; top:3px; height:24px; width:2px; margin-left:-1px; opacity:.95; }
.sub-attrs { display:block; color:var(--muted); font-size:10.5px; overflow:hidden; text-overflow:ellipsis; }
.s-conn { background:#7f9fc4; } .s-dial { background:#59a14f; } .s-tls { background:#b07aa1; }
.s-attest { background:#f28e2b; } .s-probe { background:#9c755f; } .s-relay { background:#76b7b2; } .s-other { background:#9aa5b1; }
.dot { display:inline-block; width:9px; height:9px; border-radius:2px; margin-right:6px; vertical-align:0; }
.d-c2s { background:#1f5fbf; } .d-s2c { background:#d9480f; } .d-none { background:#555; }
.legend { color:var(--muted); font-size:11.5px; margin:-6px 0 10px; }
.legend .dot { margin-left:10px; }
.cols { display:grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap:22px; }
table.attrs td.k { font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; color:#39465a; white-space:nowrap; padding-right:14px; }
table.attrs td.v { overflow-wrap:anywhere; }
table.attrs tr.key td.k { font-weight:600; }
table.attrs tr.hl td { background:#fde7e7; font-weight:700; }
table.attrs tr.hl.m-ok td { background:#e3f4e9; }
table.attrs tr.detail td { background:#fff4f4; }
table.attrs tr.differs td.v { color:var(--fail); font-weight:600; }
table.attrs tr.differs td.k::after { content:" ≠"; color:var(--fail); }
table.ev td { padding:2px 10px 2px 0; white-space:nowrap; }
table.ev td.what { white-space:normal; }
details { margin-top:8px; } summary { cursor:pointer; color:var(--muted); }
.run { border-top:1px solid var(--line); padding:8px 0 4px; }
.run:first-of-type { border-top:0; }
.run-head { font-weight:600; }
.run-steps { margin:4px 0; }
.run-steps .then { color:var(--muted); margin:0 4px; }
.run-cli { margin:4px 0 8px; padding:5px 10px; border-left:4px solid var(--fail); background:#fff4f4; font-family:"DejaVu Sans Mono", Menlo, Consolas, monospace; font-size:12px; }
.run-cli.m-ok { border-color:var(--ok); background:#f1faf4; font-family:inherit; }
.wf-row.gap .wf-name { color:var(--muted); font-style:italic; }
.bar.m-ok { background:#7cc59a; } .bar.m-fail { background:#e57373; } .bar.m-none { background:#9aa5b1; }
</style>
</head>
<body>
<header><h1>{{.Title}}</h1><span class="sub">{{.Subtitle}}</span>{{if .Selection}}<span class="sel">selected: {{.Selection}}</span>{{end}}</header>
<main>
{{if .Problems}}<div class="warn"><b>Skipped input</b>{{range .Problems}}<div class="mono">{{.}}</div>{{end}}{{if gt .MoreProbs 0}}<div>… and {{.MoreProbs}} more</div>{{end}}</div>{{end}}
{{if .RunCounts}}<section class="card runs">
<h2>Runs</h2>
<p class="note">A run is one CLI invocation: a client's connections to one upstream while the CLI retried. {{.RunCounts}}.</p>
{{range .Runs}}<div class="run">
<div class="run-head">{{.Head}}</div>
<div class="run-steps">{{range .Steps}}{{if .Then}}<span class="then">→</span>{{end}}<span class="badge {{.Class}}">{{.Text}}</span>{{end}}</div>
{{if eq .Outcome "ok"}}<div class="run-cli m-ok">the CLI succeeded</div>{{else if .CLIText}}<div class="run-cli">the CLI printed: {{.CLIText}}</div>{{end}}
<div class="wf">
<div class="wf-row wf-head"><div class="wf-name">attempt</div><div class="wf-track">{{range .Axis}}<span class="axis-label {{.Class}}" style="left:{{.Left}}">{{.Label}}</span>{{end}}</div></div>
{{$axis := .Axis}}{{range .Attempts}}{{if .Gap}}<div class="wf-row gap"><div class="wf-name">{{.Name}}</div><div class="wf-track"></div></div>
{{else}}<div class="wf-row"><div class="wf-name">{{if .Href}}<a href="{{.Href}}">{{.Name}}</a>{{else}}{{.Name}}{{end}} <span class="badge {{.Class}}">{{.Mode}}</span>{{if .Note}} <span class="svc">{{.Note}}</span>{{end}}</div><div class="wf-track">{{range $axis}}<span class="grid" style="left:{{.Left}}"></span>{{end}}<div class="bar {{.Class}}" style="left:{{.Left}};width:{{.Width}}" title="{{.Name}}: {{.Mode}}, {{.Dur}}"></div></div></div>
{{end}}{{end}}</div>
</div>
{{end}}{{range .RunNotes}}<p class="note">{{.}}</p>
{{end}}</section>
{{end}}<section class="card">
<h2>Connections by failure mode</h2>
{{if .SentNothing}}<div class="sent-nothing">{{.SentNothing}}</div>{{end}}
<div class="summary">
<table>
<tr><th>mode</th><th>count</th><th>%</th><th>first (UTC)</th><th>last (UTC)</th></tr>
{{range .Summary.Modes}}<tr><td><span class="badge {{call $.ModeClass .Mode}}">{{.Mode}}</span></td><td class="n">{{.Count}}</td><td class="n">{{printf "%.1f" .Percent}}</td><td>{{call $.FormatTime .First}}</td><td>{{call $.FormatTime .Last}}</td></tr>
{{else}}<tr><td colspan="5">{{if .SentNothing}}none that sent something{{else}}no connections{{end}}</td></tr>
{{end}}</table>
{{if .Summary.Details}}<table>
<tr><th>count</th><th>mode</th><th>most frequent details</th></tr>
{{range .Summary.Details}}<tr><td class="n">{{.Count}}</td><td><span class="badge {{call $.ModeClass .Mode}}">{{.Mode}}</span></td><td>{{.Detail}}</td></tr>
{{end}}</table>{{end}}
</div>
{{if .Latency}}<div class="note">Issuer latency ({{.FirstByteAttr}}): {{.Latency}}</div>{{end}}
</section>
{{if .Traces}}{{if lt .Shown .Matched}}<p class="note">Showing the {{.Shown}} latest of {{.Matched}} matching connections.</p>{{end}}
{{else}}<p class="note">No connection trace matched the selection.</p>{{end}}
{{range .Traces}}
<section class="card trace" id="t-{{.ID}}">
<div class="trace-head"><h2>{{$.ConnSpan}}</h2><span class="badge {{.ModeClass}}">{{.Mode}}</span><span class="meta">trace <span class="mono">{{.ID}}</span> · {{.Start}} UTC · {{.Duration}}{{if .Upstream}} · upstream <span class="mono">{{.Upstream}}</span>{{end}}</span></div>
{{if .Detail}}<div class="detail-box {{.ModeClass}}">{{.Detail}}</div>{{end}}
<div class="wf">
<div class="wf-row wf-head"><div class="wf-name">span</div><div class="wf-track">{{range .Axis}}<span class="axis-label {{.Class}}" style="left:{{.Left}}">{{.Label}}</span>{{end}}</div></div>
{{$axis := .Axis}}{{range .Rows}}<div class="wf-row"><div class="wf-name" style="padding-left:{{.Indent}}px"><span class="dot {{.Class}}"></span><span class="svc">ccproxy</span> <span class="op">{{.Name}}</span>{{if .Error}} <span class="err" title="{{.Status}}">!</span>{{end}}{{if .DurInName}}<span class="name-dur">{{.Dur}}</span>{{end}}{{if .AttrsLine}}<span class="sub-attrs" title="{{.AttrsLine}}">{{.AttrsLine}}</span>{{end}}</div><div class="wf-track">{{range $axis}}<span class="grid" style="left:{{.Left}}"></span>{{end}}<div class="bar {{.Class}}{{if .Error}} err{{end}}" style="left:{{.Left}};width:{{.Width}}" title="{{.Name}} {{.Dur}}{{if .Status}} — {{.Status}}{{end}}"></div>{{if not .DurInName}}<span class="dur{{if .DurInside}} inside{{end}}" style="{{if .DurRight}}right{{else}}left{{end}}:{{.DurAt}}">{{.Dur}}</span>{{end}}{{range .Ticks}}<span class="tick {{.Class}}" style="left:{{.Left}}" title="{{.Title}}"></span>{{end}}</div></div>
{{end}}</div>
{{if .Events}}<div class="legend">span events (TLS records and relay ends) as ticks:<span class="dot d-c2s"></span>client → upstream<span class="dot d-s2c"></span>upstream → client</div>{{end}}
<div class="cols">
<div>
<h2>Attributes of {{$.ConnSpan}}</h2>
<table class="attrs conn-attrs">
{{range .Attrs}}<tr class="{{.Class}}"><td class="k">{{.Key}}</td><td class="v">{{.Value}}</td></tr>
{{end}}</table>
{{if .Children}}<details><summary>attributes of the child spans</summary>
{{range .Children}}<h2 class="mono">{{.Name}}</h2><table class="attrs">
{{range .Attrs}}<tr class="{{.Class}}"><td class="k">{{.Key}}</td><td class="v">{{.Value}}</td></tr>
{{end}}</table>
{{end}}</details>{{end}}
</div>
<div>
<h2>Span events</h2>
{{if .Events}}<table class="ev">
<tr><th>+ms</th><th>event</th><th>direction</th><th>message</th><th>bytes</th><th>offset</th></tr>
{{range .Events}}<tr><td class="n">{{.At}}</td><td>{{.Name}}</td><td><span class="dot {{.DirClass}}"></span>{{.Dir}}</td><td class="what">{{.What}}</td><td class="n">{{.Length}}</td><td class="n">{{.Offset}}</td></tr>
{{end}}</table>{{else}}<p class="note">none recorded</p>{{end}}
</div>
</div>
</section>
{{end}}
</main>
</body>
</html>
`
