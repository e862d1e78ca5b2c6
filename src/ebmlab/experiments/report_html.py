"""``report.html``: the model-quality table as one page that needs no network and no JavaScript.

Images are embedded as base64 ``data:`` URIs, so the page is a single file that
can be mailed or archived; one larger than :data:`MAX_EMBEDDED_BYTES` is linked
by its path relative to the report folder instead (the report wrote it there).
The table is grouped as in the lecture: hybrid, discriminative, generative
(:data:`~ebmlab.experiments.report_rows.GROUPS`). Each number carries its note;
a thumbnail grows to the window when clicked (CSS ``:focus``, no script).
"""

from __future__ import annotations

import base64
import datetime
import html
from pathlib import Path
from typing import Any

from ebmlab.experiments.report_probe import MAX_TRAIN
from ebmlab.experiments.report_rows import GROUPS

MAX_EMBEDDED_BYTES = 2_000_000
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ALWAYS_SHOWN = ("hybrid", "discriminative", "generative")  # "other" only when it has runs
# No class column: the group heading rows above each block say the class.
HEADINGS = ("Model", "Accuracy", "IS", "FID", "Test log-likelihood (nats)",
            "Key settings", "Samples", "Training curves and reliability")  # fmt: skip

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d2433;
       margin: 24px; background: #fafbfc; }
h1 { font-size: 22px; margin: 0 0 4px; }
p.meta { color: #555; margin: 0 0 16px; }
table { border-collapse: collapse; background: #fff; width: 100%; }
th, td { border: 1px solid #d8dce3; padding: 6px 8px; vertical-align: top; text-align: left; }
thead th { background: #eef1f6; position: sticky; top: 0; }
tr.group th { background: #dde6f3; font-size: 15px; }
tr.group.discriminative th { background: #f3e6dd; }
tr.group.generative th { background: #e0f0e2; }
td.number { min-width: 100px; max-width: 160px; }
td.figures img.thumb + img.thumb, td.figures .note + img.thumb { margin-top: 6px; }
td.number b { font-size: 15px; }
.note { color: #5b6270; font-size: 12px; max-width: 150px; white-space: normal; }
td.settings { font-size: 11px; max-width: 170px; overflow-wrap: break-word; }
a.mark { text-decoration: none; color: #2a5db0; }
.empty { color: #9aa1ad; }
img.thumb { width: 160px; display: block; cursor: zoom-in; background: #fff; }
img.thumb:focus { position: fixed; top: 50%; left: 50%; transform: translate(-50%, -50%);
                  width: auto; max-width: 92vw; max-height: 92vh; z-index: 10; cursor: zoom-out;
                  box-shadow: 0 0 0 100vmax rgba(0, 0, 0, .55); outline: none; }
ul.notes li { margin-bottom: 4px; }
"""


def _text(value: Any) -> str:
    return html.escape(str(value), quote=True)


def image_html(path: Path, folder: Path, alt: str) -> str:
    """An ``<img>`` of the PNG at ``path``: embedded, or by its path relative to ``folder``."""
    data = path.read_bytes()
    if data.startswith(PNG_SIGNATURE) and len(data) <= MAX_EMBEDDED_BYTES:
        source = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
    else:
        source = path.relative_to(folder).as_posix()
    return f'<img class="thumb" tabindex="0" src="{source}" alt="{_text(alt)}" title="click to enlarge">'


def _number(value: float | None, shown: str, note: str, mark: str = "") -> str:
    main = f"<b>{_text(shown)}</b>" if value is not None else '<span class="empty">&mdash;</span>'
    return f'<td class="number">{main}{mark}<div class="note">{_text(note)}</div></td>'


def _anchor(name: str) -> str:
    return "net-" + "".join(c if c.isalnum() else "-" for c in name)


def _comparability_mark(row: Any) -> str:
    """A link to the note on what numbers in this feature network compare with."""
    if not row.feature_net:
        return ""
    return f' <a class="mark" href="#{_anchor(row.feature_net)}" title="{_text(row.comparability)}">&dagger;</a>'


def _loglik_text(row: Any) -> str:
    text = f"{row.test_loglik:.4g}"
    if row.loglik_lower is not None and row.loglik_upper is not None:
        text += f" [{row.loglik_lower:.4g}, {row.loglik_upper:.4g}]"
    return text + (f" ({row.loglik_kind})" if row.loglik_kind else "")


def _figure_cell(row: Any, key: str, folder: Path, missing: str, caption: str = "") -> str:
    relative = getattr(row, f"{key}_figure")
    if not relative:
        return f'<td><span class="empty">{_text(missing)}</span></td>'
    below = f'<div class="note">{_text(caption)}</div>' if caption else ""
    return f"<td>{image_html(folder / relative, folder, f'{row.name} {key}')}{below}</td>"


def _figures_cell(row: Any, folder: Path) -> str:
    """Training curves above the reliability diagram (one column keeps the table on a screen)."""
    parts = []
    for key, missing in (("curves", "no training curves in the run"),
                         ("reliability", "no reliability diagram for this model (the report draws one for JEM runs)")):  # fmt: skip
        relative = getattr(row, f"{key}_figure")
        if relative:
            parts.append(image_html(folder / relative, folder, f"{row.name} {key}"))
        else:
            parts.append(f'<div class="note empty">{_text(missing)}</div>')
    return '<td class="figures">' + "".join(parts) + "</td>"


def _model_cell(row: Any) -> str:
    timing = []
    if row.evaluation_seconds is not None:
        timing.append(f"evaluated in {row.evaluation_seconds:.1f} s")
    if row.seconds is not None:
        estimate = row.estimated_seconds
        estimate = "" if estimate is None else f" (estimated {estimate:.1f} s)"
        timing.append(f"samples and scores in {row.seconds:.1f} s{estimate}")
    return (
        f"<td><b>{_text(row.model_class)}</b> {_text(row.model)}"
        f'<div class="note">{_text(row.run)}</div><div class="note">{_text("; ".join(timing))}</div></td>'
    )


def _settings_cell(row: Any) -> str:
    lines = "<br>".join(_text(part) for part in row.key_settings.split(", ") if part)
    return f'<td class="settings">{lines}</td>'


def row_html(row: Any, folder: Path) -> str:
    """One ``<tr>``: numbers with their notes, settings, and the three figures."""
    accuracy = None if row.test_accuracy is None else f"{row.test_accuracy:.2%}"
    if accuracy is not None and getattr(row, "accuracy_kind", ""):
        accuracy += f" ({row.accuracy_kind})"  # a probe of features, not the model's classifier
    score = None
    if row.inception_score is not None:
        score = f"{row.inception_score:.3g} ± {row.inception_score_std:.2g}"
    fid = None if row.fid is None else f"{row.fid:.4g}"
    loglik = None if row.test_loglik is None else _loglik_text(row)
    mark = _comparability_mark(row)
    cells = [
        _model_cell(row),
        _number(row.test_accuracy, accuracy, row.accuracy_note),
        _number(row.inception_score, score, row.is_note, mark),
        _number(row.fid, fid, row.fid_note, mark),
        _number(row.test_loglik, loglik, row.loglik_note),
        _settings_cell(row),
        _figure_cell(row, "samples", folder, "no samples", row.sampling),
        _figures_cell(row, folder),
    ]
    return "<tr>" + "".join(cells) + "</tr>"


def table_html(rows: list[Any], folder: Path) -> str:
    """The table: a heading row per group (hybrid, discriminative, generative), then its runs."""
    head = "".join(f"<th>{_text(h)}</th>" for h in HEADINGS)
    bodies = []
    for group, title in GROUPS.items():
        members = [r for r in rows if r.group == group]
        if not members and group not in ALWAYS_SHOWN:
            continue
        lines = [
            f'<tr class="group {group}"><th colspan="{len(HEADINGS)}">{_text(title)}</th></tr>'
        ]
        lines += [row_html(r, folder) for r in members]
        if not members:
            lines.append(
                f'<tr><td colspan="{len(HEADINGS)}" class="empty">no run of this class</td></tr>'
            )
        bodies.append(f'<tbody class="{group}">' + "\n".join(lines) + "</tbody>")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n" + "\n".join(bodies) + "\n</table>"


def _reading_notes(settings: dict[str, Any], networks: list[Any]) -> str:
    steps = (
        settings["n_steps"] or "100 for chains from a replay buffer, 1,000 Gibbs sweeps from noise"
    )
    if settings.get("probe", True):
        probes = (
            "A generative model without a classifier gets the accuracy of a linear probe the "
            "report fits: logistic regression on its frozen, standardised hidden means "
            f"(at most {MAX_TRAIN:,} training images), marked (linear probe)."
        )
    else:
        probes = (
            "The report fitted no probe (--no-probe), so a generative model without a "
            "classifier has no accuracy."
        )
    items = [
        f"Accuracy: on the run's test split; a linear probe is marked as one. {probes}",
        f"IS and FID: {settings['n_samples']} samples per model, sampler steps: {steps}. "
        "IS lies in [1, number of classes], higher is better; FID is a squared distance between "
        "Gaussians fitted to features of samples and test images, lower is better.",
        *((_anchor(net.name), f"† {net.name}: {net.comparability}.") for net in networks),
        "Log-likelihood: nats per example on the test split (bm: its training patterns); "
        "AIS values carry the interval of their log Z estimate, bounds say so.",
        "Click a figure to enlarge it; click beside it to close.",
    ]
    lines = []
    for item in items:
        anchor, text = item if isinstance(item, tuple) else ("", item)
        where = f' id="{anchor}"' if anchor else ""
        lines.append(f"<li{where}>{_text(text)}</li>")
    return '<h2>Reading the numbers</h2>\n<ul class="notes">' + "".join(lines) + "</ul>"


def render_page(
    rows: list[Any], folder: Path, *, settings: dict[str, Any], networks: list[Any]
) -> str:
    """The whole page as a string (no external URL anywhere)."""
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    total = sum((r.seconds or 0.0) + (r.evaluation_seconds or 0.0) for r in rows)
    meta = (
        f"{len(rows)} runs; {settings['n_samples']} samples per model; seed {settings['seed']}; "
        f"written {when} in {total:.0f} s by ebmlab report"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        "<title>ebmlab model-quality report</title>\n"
        f"<style>{STYLE}</style>\n</head>\n<body>\n<h1>Model-quality report</h1>\n"
        f'<p class="meta">{_text(meta)}</p>\n{table_html(rows, folder)}\n'
        f"{_reading_notes(settings, networks)}\n</body>\n</html>\n"
    )


def write_html(rows: list[Any], folder: Path, *, settings: dict[str, Any], spaces: Any) -> Path:
    """Write ``folder/report.html`` for ``rows`` (in display order); returns its path."""
    path = Path(folder) / "report.html"
    page = render_page(rows, Path(folder), settings=settings, networks=spaces.loaded())
    path.write_text(page, encoding="utf-8")
    return path
