"""A real corpus that ships with Python: the standard library's own documentation.

:func:`documents` yields the pydoc topics (the language reference pages ``help("FOR")`` shows)
and the docstrings of stdlib modules (the private ``_name`` ones too: they document the C and
pure-Python halves of public modules), their classes, functions, methods and attributes — and
then those of Django, the other library every site of this kind has installed, which takes the
demo past 20,000 passages (the stdlib alone gives about 16,500 once repeated texts are dropped).
:func:`passages` cuts them into paragraphs, long ones at sentence ends: a search result then
points at the paragraph that answers rather than at a 5,000-word page. Each passage carries its
module and the kind of object it documents, to filter on.
"""

from __future__ import annotations

import importlib
import inspect
import io
import itertools
import pkgutil
import re
import sys
import warnings
from collections.abc import Iterable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass

# Modules whose import has side effects (opening a browser or a window, printing, starting a
# console) or that are platform-specific or deprecated stubs.
SKIP = {
    "antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "ensurepip", "venv",
    "lib2to3", "pydoc_data", "msilib", "winreg", "winsound", "_msi", "nt", "msvcrt", "_winapi",
    "__hello__", "__phello__", "_testcapi", "_testinternalcapi", "_testbuffer",
    "_testimportmultiple", "_testmultiphase", "_xxtestfuzz", "xxsubtype", "_ctypes_test",
    "_tkinter", "curses", "_curses", "_curses_panel", "readline", "crypt", "spwd", "nis",
    "ossaudiodev", "sre_compile", "sre_constants", "sre_parse", "tabnanny", "pty", "tty",
    "sunau", "xxlimited", "xxlimited_35",
}  # fmt: skip
MIN_LENGTH = 40  # characters: shorter docstrings say too little to search
# A paragraph shorter than this ("Example:", a lone signature) joins the next one.
PASSAGE_WORDS = 4
# A paragraph longer than this is cut at sentence ends into parts of about half of it.
MAX_PASSAGE_WORDS = 30
KINDS = ("topic", "module", "class", "function", "method", "attribute")
TOPICS_MODULE = "(language reference)"


@dataclass(frozen=True)
class Doc:
    """One documented object: ``json.dumps`` (a function of ``json``), or a pydoc topic."""

    title: str  # "json.dumps"
    module: str  # "json"; TOPICS_MODULE for pydoc topics
    kind: str  # one of KINDS
    body: str


@dataclass(frozen=True)
class Passage:
    """A part of a :class:`Doc`: ``section`` counts from 1; ``heading`` names it when known."""

    title: str
    module: str
    kind: str
    section: int
    heading: str
    body: str


def topics() -> Iterator[Doc]:
    from pydoc_data.topics import topics as pages

    # Shortest first: some pages gather others ("compound" holds "for", "while", "try"...), and
    # passages() keeps the first copy of a paragraph, which should be the specific page's.
    for name, text in sorted(pages.items(), key=lambda item: (len(item[1]), item[0])):
        yield Doc(title=name, module=TOPICS_MODULE, kind="topic", body=text.strip())


def _import(name: str) -> object | None:
    try:
        with (
            warnings.catch_warnings(),
            redirect_stdout(io.StringIO()),
            redirect_stderr(io.StringIO()),
        ):
            warnings.simplefilter("ignore")
            return importlib.import_module(name)
    except BaseException:  # some modules raise SystemExit or odd errors on import
        return None


def _doc(obj: object) -> str:
    text = (inspect.getdoc(obj) or "").strip()
    return text if len(text) >= MIN_LENGTH else ""


def _members(owner: object, prefix: str, module: str) -> Iterator[Doc]:
    """A class's own methods and attributes (properties, slots, C getsets) that have docs."""
    seen: set[str] = set()
    for name, member in sorted(vars(owner).items()):
        if name.startswith("__"):  # dunders repeat the data model's generic texts
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if callable(member):
            kind = "method"
        elif inspect.isdatadescriptor(member) or isinstance(member, property):
            kind = "attribute"
        else:
            continue
        text = _doc(member)
        # A C type's undocumented getset repeats its type's docstring; skip those copies.
        if text and text not in seen and text != _doc(type(member)):
            seen.add(text)
            yield Doc(title=f"{prefix}.{name}", module=module, kind=kind, body=text)


def module_docs(name: str) -> Iterator[Doc]:
    module = _import(name)
    if module is None:
        return
    if text := _doc(module):
        yield Doc(title=name, module=name, kind="module", body=text)
    for attr, obj in sorted(vars(module).items()):
        if attr.startswith("__") or getattr(obj, "__module__", None) != name:
            continue
        if inspect.isclass(obj):
            if text := _doc(obj):
                yield Doc(title=f"{name}.{attr}", module=name, kind="class", body=text)
            yield from _members(obj, f"{name}.{attr}", name)
        elif (inspect.isfunction(obj) or inspect.isbuiltin(obj)) and (text := _doc(obj)):
            yield Doc(title=f"{name}.{attr}", module=name, kind="function", body=text)


# Django subpackages that only hold code run by the framework, not documented API.
SKIP_PARTS = {"test", "tests", "migrations", "management", "locale", "templates"}


def module_names(tops: Iterable[str]) -> list[str]:
    """The modules ``tops`` and the submodules of those that are packages (email.mime.text)."""
    names: set[str] = set()
    for top in tops:
        if top in SKIP or top.startswith("_test") or "xx" in top:
            continue
        names.add(top)
        module = _import(top)
        path = getattr(module, "__path__", None)
        if path is None:
            continue
        for info in pkgutil.walk_packages(path, prefix=f"{top}.", onerror=lambda _: None):
            parts = info.name.split(".")
            if not any(p.startswith("_") or p in SKIP_PARTS for p in parts[1:]):
                names.add(info.name)
    return sorted(names)


def _module_documents(django: bool) -> Iterator[Doc]:
    # A generator, so a --limit met by the topics never imports a module.
    names = module_names(sorted(sys.stdlib_module_names))
    if django:
        names += module_names(["django"])
    for name in names:
        yield from module_docs(name)


def documents(*, django: bool = True) -> Iterator[Doc]:
    """Every document, in a stable order; titles and bodies are unique (subclasses repeating
    their base's method docs, or a hundred codec modules, would fill results with copies).

    Django's modules are imported only with ``django``; call it after ``django.setup()``.
    """
    seen: set[str] = set()
    for doc in itertools.chain(topics(), _module_documents(django)):
        if doc.title not in seen and doc.body not in seen:
            seen.add(doc.title)
            seen.add(doc.body)
            yield doc


# A pydoc topic's section heading: a line underlined with *, = or -.
_HEADING = re.compile(r"^(?P<title>\S[^\n]*)\n(?P<rule>[*=\-~^]{3,})\s*$", re.MULTILINE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _paragraphs(text: str) -> list[str]:
    out: list[str] = []
    for paragraph in re.split(r"\n[ \t]*\n", text):
        paragraph = paragraph.strip("\n")
        if not paragraph.strip():
            continue
        words = paragraph.split()
        if len(words) <= MAX_PASSAGE_WORDS:
            out.append(paragraph)
            continue
        chunk: list[str] = []
        for sentence in _SENTENCE_END.split(paragraph):
            chunk.append(sentence)
            if sum(len(s.split()) for s in chunk) >= MAX_PASSAGE_WORDS // 2:
                out.append(" ".join(chunk))
                chunk = []
        if chunk:
            out.append(" ".join(chunk))
    return out


def _sections(doc: Doc) -> Iterator[tuple[str, str]]:
    """(heading, text) parts of a document: a topic's headed sections, else the whole."""
    if doc.kind != "topic":
        yield "", doc.body
        return
    start, heading = 0, ""
    for match in _HEADING.finditer(doc.body):
        if len(match["rule"]) >= len(match["title"].rstrip()) - 1:
            yield heading, doc.body[start : match.start()]
            start, heading = match.end(), match["title"].strip()
    yield heading, doc.body[start:]


def split(doc: Doc) -> Iterator[Passage]:
    """``doc`` cut at paragraph breaks into passages of at least PASSAGE_WORDS words."""
    section = 0
    for heading, text in _sections(doc):
        buffer: list[str] = []
        for paragraph in _paragraphs(text):
            buffer.append(paragraph)
            if sum(len(p.split()) for p in buffer) >= PASSAGE_WORDS:
                section += 1
                yield Passage(
                    doc.title, doc.module, doc.kind, section, heading, "\n\n".join(buffer)
                )
                buffer = []
        if buffer:
            section += 1
            yield Passage(doc.title, doc.module, doc.kind, section, heading, "\n\n".join(buffer))


def passages(limit: int | None = None, *, django: bool = True) -> Iterator[Passage]:
    """Every passage of every document, in a stable order; at most ``limit`` of them."""
    count = 0
    seen_topics: set[str] = set()
    for doc in documents(django=django):
        for passage in split(doc):
            if passage.kind == "topic":
                # A paragraph of a gathering page the specific page gave already.
                key = " ".join(passage.body.split())
                if key in seen_topics:
                    continue
                seen_topics.add(key)
            yield passage
            count += 1
            if limit is not None and count >= limit:
                return
