"""A document as plain blocks (headings, paragraphs, tables, figures, code) and its two renderers:
Markdown (``summary.md``, ``report.md``) and self-contained HTML (``report.html``, images embedded)."""
from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Para:
    text: str  # may hold **bold** and `code`, rendered in both formats


@dataclass
class Bullets:
    items: list[str]  # each may hold **bold** and `code`


@dataclass
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass
class Figure:
    path: Path  # inside the output folder
    caption: str


@dataclass
class Code:
    text: str


def _markdown_lines(b: Any, root: Path | None) -> list[str]:
    if isinstance(b, Heading):
        return ["#" * b.level + " " + b.text, ""]
    if isinstance(b, Para):
        return [b.text, ""]
    if isinstance(b, Bullets):
        return [f"- {item}" for item in b.items] + [""]
    if isinstance(b, Table):
        return (["| " + " | ".join(b.header) + " |", "|" + "---|" * len(b.header)]
                + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in b.rows] + [""])
    if isinstance(b, Figure):
        where = b.path.relative_to(root).as_posix() if root is not None else b.path.as_posix()
        return [f"![{b.caption}]({where})", "", f"*{b.caption}*", ""]
    if isinstance(b, Code):
        return ["```", b.text.rstrip(), "```", ""]
    raise TypeError(f"not a document block: {b!r}")


def render_markdown(blocks: list[Any], root: Path | None = None) -> str:
    """Markdown; figures are linked relative to ``root`` (the folder the Markdown file is written to)."""
    return "\n".join(line for b in blocks for line in _markdown_lines(b, root))


def _inline_html(text: str) -> str:
    out, parts = [], html.escape(text).split("`")
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{part}</code>")
        else:
            bold = part.split("**")
            out.append("".join(f"<strong>{b}</strong>" if j % 2 else b for j, b in enumerate(bold)))
    return "".join(out)


def _html(b: Any) -> str:
    if isinstance(b, Heading):
        return f"<h{b.level}>{html.escape(b.text)}</h{b.level}>"
    if isinstance(b, Para):
        return f"<p>{_inline_html(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{_inline_html(item)}</li>" for item in b.items) + "</ul>"
    if isinstance(b, Table):
        head = "".join(f"<th>{_inline_html(h)}</th>" for h in b.header)
        rows = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in b.rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"
    if isinstance(b, Figure):
        data = base64.b64encode(b.path.read_bytes()).decode()
        return (f'<figure><img alt="{html.escape(b.caption)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{_inline_html(b.caption)}</figcaption></figure>")
    if isinstance(b, Code):
        return f"<pre>{html.escape(b.text)}</pre>"
    raise TypeError(f"not a document block: {b!r}")


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222;line-height:1.45}table{border-collapse:collapse;margin:.6em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f1f3f5}tr:nth-child(even) td{background:#fafafa}
figure{margin:1em 0 1.6em}figure img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.85em;color:#555}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.8em}code{background:#f1f3f5;padding:0 .2em}"""


def render_html(blocks: list[Any], title: str) -> str:
    """One self-contained HTML page: every figure embedded as base64, nothing fetched."""
    body = [_html(b) for b in blocks]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body>\n" + "\n".join(body) + "\n</body></html>\n")
