"""The documentation site's own checks, run by ``mkdocs build`` as a hook (``mkdocs.yml``: ``hooks``).

Each finding is logged as a warning, so ``mkdocs build --strict`` (``make docs``, ``tests/test_docs.py``) fails on
it, naming the page and what to fix:

- a list that rendered as a paragraph (Python-Markdown needs a blank line before a list);
- a line of a code block longer than :data:`MAX_CODE_LINE` characters (it scrolls sideways);
- a link, or a name, that leaves the repository (the folder beside the clone that a reader does not have);
- a reference a reader cannot look up (:data:`UNREACHABLE`): a numbered section of a specification that is not in
  the repository, or a tracker's issue number; the method and its decisions are in docs/method.md, the history in
  the commit messages and in the run notes of docs/FINDINGS.md (a ``Run notes`` section may name issues);
- a hand-written page that does not open with what it is for (a paragraph of at most :data:`MAX_OPENING_WORDS`
  words right under its title), or a long page without section headings.

The same checks read README.md, which is not a page of the site.
"""

from __future__ import annotations

import logging
import re
from html.parser import HTMLParser
from pathlib import Path

log = logging.getLogger("mkdocs.plugins.glai_docs_checks")

#: characters: a longer code line scrolls sideways on a laptop screen
MAX_CODE_LINE = 100
#: words of the paragraph that opens a page (what the page is for, in a sentence or two)
MAX_OPENING_WORDS = 80
#: words of text above which a page needs at least two section headings (a table of contents)
LONG_PAGE_WORDS = 300
#: pages generated from run records (tables with a caption): no title or opening paragraph of their own
GENERATED = ("findings/",)

#: a reference outside the repository: the folder beside the clone, a specification's section, an issue number
UNREACHABLE = re.compile(r"\.\./shared|\bSPEC [0-9]+|\bissue [0-9]+", re.IGNORECASE)
# a list item glued to the line above: "text\n- item", "text\n1. item", or an inline " - **Term**" run-on
LIST_AS_TEXT = re.compile(r"\n\s*(?:[-*+]|\d+\.)\s+\S|\s-\s\*\*\S")
#: a link into the folder beside the clone
LEAVES = re.compile(r"\.\./shared")
RUN_NOTES = re.compile(r"^(#+)\s.*run notes", re.IGNORECASE)


class _Blocks(HTMLParser):
    """The page's paragraphs, code blocks, links, headings and the block that follows its title."""

    BLOCK = {"p", "pre", "ul", "ol", "table", "div", "h2", "h3", "h4", "blockquote", "details"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.paragraphs: list[str] = []
        self.code: list[str] = []
        self.links: list[str] = []
        self.h2 = 0
        self.after_title: tuple[str, str] | None = None  # (tag, text) of the first block under the h1
        self.seen_h1 = False
        self._stack: list[tuple[str, list[str]]] = []
        self._opening_p = False  # the first block under the title is a paragraph, still open

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])
        if tag in ("strong", "b") and self._stack and self._stack[-1][0] == "p":
            self._stack[-1][1].append("**")  # the Markdown it came from: " - **Term**" glued to the text above
        if tag in ("p", "pre", "h1"):
            self._stack.append((tag, []))
        if tag == "h2":
            self.h2 += 1
        if self.seen_h1 and self.after_title is None and not self._opening_p and tag in self.BLOCK:
            if tag == "p":
                self._opening_p = True
            else:
                self.after_title = (tag, "")

    def handle_endtag(self, tag):
        if tag not in ("p", "pre", "h1") or not self._stack or self._stack[-1][0] != tag:
            return
        _, parts = self._stack.pop()
        text = "".join(parts)
        if tag == "h1":
            self.seen_h1 = True
        elif tag == "p":
            self.paragraphs.append(text)
            if self._opening_p and self.after_title is None:
                self.after_title = ("p", text.replace("**", ""))
        else:
            self.code.append(text)

    def handle_data(self, data):
        for _, parts in self._stack:
            parts.append(data)


def reference_findings(markdown: str, where: str) -> list[str]:
    """Names a reader of the repository cannot look up, one message per line; a ``Run notes`` section of
    docs/FINDINGS.md is left out (its notes keep the issue numbers of the runs)."""
    out, notes_level, fenced = [], 0, False
    for number, line in enumerate(markdown.splitlines(), 1):
        fenced = fenced != line.lstrip().startswith("```")
        heading = None if fenced else re.match(r"^(#+)\s", line)
        if heading:
            level = len(heading.group(1))
            if notes_level and level <= notes_level:
                notes_level = 0
            if where.endswith("FINDINGS.md") and RUN_NOTES.match(line):
                notes_level = level
        if notes_level:
            continue
        for match in UNREACHABLE.finditer(line):
            out.append(f"{where}:{number}: {match.group(0)!r} names something outside the repository. Fix: link "
                       "docs/method.md (the method and its decisions) or say it in the page's words; history "
                       "goes in the commit message or FINDINGS' run notes")
    return out


def html_findings(html: str, where: str, generated: bool = False) -> list[str]:
    """What renders badly or leaves the repository in a built page's HTML; ``generated``: no opening checks."""
    blocks = _Blocks()
    blocks.feed(html)
    out = []
    for text in blocks.paragraphs:
        match = LIST_AS_TEXT.search(text)
        if match:
            out.append(f"{where}: a list rendered as a paragraph near {text[max(0, match.start() - 40):][:90]!r}. "
                       "Fix: a blank line before the list")
    for text in blocks.code:
        for line in text.splitlines():
            if len(line) > MAX_CODE_LINE:
                out.append(f"{where}: a code line of {len(line)} characters (at most {MAX_CODE_LINE}): "
                           f"{line[:60]!r}... Fix: break it (a trailing backslash in shell) or shorten it")
    for href in blocks.links:
        if LEAVES.search(href) or href.startswith("file:"):
            out.append(f"{where}: the link {href!r} leaves the repository. Fix: link a page of docs/")
    if generated:
        return out
    tag, text = blocks.after_title or (None, "")
    words = len(text.split())
    if tag != "p" or words > MAX_OPENING_WORDS:
        what = (f"an opening paragraph of {words} words" if tag == "p" else f"a {tag} under its title" if tag
                else "no title and paragraph")
        out.append(f"{where}: the page opens with {what}. Fix: a '# Title', then what the page is for in one or two "
                   f"sentences (at most {MAX_OPENING_WORDS} words), then sections")
    body_words = sum(len(p.replace("**", "").split()) for p in blocks.paragraphs)
    if body_words > LONG_PAGE_WORDS and blocks.h2 < 2:
        out.append(f"{where}: {body_words} words under {blocks.h2} section heading(s). Fix: '## ' headings, one a "
                   "section, so the table of contents shows the page's parts")
    return out


def _warn(findings: list[str]) -> None:
    for finding in findings:
        log.warning(finding)


def on_page_markdown(markdown, page, config, files):  # noqa: ARG001 - mkdocs' hook signature
    _warn(reference_findings(markdown, f"docs/{page.file.src_uri}"))
    return markdown


def on_page_content(html, page, config, files):  # noqa: ARG001 - mkdocs' hook signature
    src = page.file.src_uri
    _warn(html_findings(html, f"docs/{src}", generated=src.startswith(GENERATED)))
    return html


def markdown_code_findings(markdown: str, where: str) -> list[str]:
    """Lines of fenced code blocks longer than :data:`MAX_CODE_LINE` (for Markdown that the site does not render)."""
    out, fenced = [], False
    for number, line in enumerate(markdown.splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced and len(line) > MAX_CODE_LINE:
            out.append(f"{where}:{number}: a code line of {len(line)} characters (at most {MAX_CODE_LINE}). Fix: "
                       "break it (a trailing backslash in shell) or shorten it")
    return out


def on_post_build(config):
    readme = Path(config["config_file_path"]).parent / "README.md"
    if readme.is_file():
        text = readme.read_text(encoding="utf-8")
        _warn(reference_findings(text, "README.md") + markdown_code_findings(text, "README.md"))
