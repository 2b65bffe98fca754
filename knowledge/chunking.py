"""Heading-aware Markdown chunker that keeps every chunk inside the embedding model's window.

Sections come from Markdown headings (ATX and setext); each chunk carries the heading
path and the page/sheet/slide location taken from the markers conversion.py writes.
Within a section, blocks (paragraphs, tables, code) are packed whole when they fit,
and only blocks that do not fit are cut: prose on sentence boundaries (words as a
last resort), tables between rows with the header row repeated, code between lines.

count_tokens is the caller's real tokenizer, so it is called per block or per
sentence and cached, never per word unless a sentence alone is too long.

Pure module: no Django imports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial

MAX_HEADING_PATH_CHARS = 200
PATH_SEPARATOR = " > "

_PAGE = re.compile(r"<!--\s*page:\s*(\d+)\s*-->", re.IGNORECASE)
_SLIDE = re.compile(r"<!--\s*slide number:\s*(\d+)\s*-->", re.IGNORECASE)
_SHEET = re.compile(r"<!--\s*sheet:\s*(.*?)\s*-->", re.IGNORECASE)
_COMMENT_LINE = re.compile(r"\s*<!--.*-->\s*")
_ATX = re.compile(r" {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_THEMATIC = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_TABLE_SEPARATOR = re.compile(r"\s*\|?\s*:?-+:?\s*(?:\|\s*:?-+:?\s*)*\|?\s*")
_EMPHASIS = re.compile(r"(\*\*|__)(.+)\1")
_LIST_ITEM = re.compile(r"\s*(?:[-*+•]|\d{1,3}[.)])\s+")
# A sentence ends at . ! ? (plus closing quotes, brackets or emphasis) before whitespace,
# unless a lowercase letter follows ("e.g. this" is one sentence).
_SENTENCE_END = re.compile(r"[.!?…。！？][\"'”’)\]*_]*(\s+)(?![a-z\s])")


@dataclass(frozen=True)
class ChunkDraft:
    ordinal: int
    text: str
    heading_path: str
    location: str
    token_count: int


@dataclass
class _Block:
    kind: str  # "prose", "table" or "code"
    lines: list[str]
    location: str
    header: str = ""  # table header rows or code fence opener, repeated when the block is cut

    def render(self) -> str:
        body = "\n".join(self.lines)
        return f"{self.header}\n{body}" if self.header else body


@dataclass
class _Section:
    path: tuple[str, ...]
    level: int
    blocks: list[_Block]


@dataclass(frozen=True)
class _Piece:
    text: str
    tokens: int
    sep: str  # joins this piece to the one before it in the same chunk
    location: str
    prose: bool
    header: str = ""  # repeated at the top of a chunk that starts with this piece
    header_tokens: int = 0


class _Counter:
    """count_tokens with a per-call cache: the real tokenizer is the slow part."""

    def __init__(self, count_tokens: Callable[[str], int]) -> None:
        self._count = count_tokens
        self._cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        cached = self._cache.get(text)
        if cached is None:
            cached = self._cache[text] = int(self._count(text))
        return cached


def chunk_markdown(
    markdown: str,
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int = 200,
    overlap_tokens: int = 40,
    title: str = "",
) -> list[ChunkDraft]:
    """Split Markdown into chunks of at most max_tokens (by count_tokens) with heading paths.

    `title` stands in as the heading path of text that sits under no heading.
    Consecutive chunks of one section share about overlap_tokens of trailing sentences.
    """
    if max_tokens < 1:
        raise ValueError("max_tokens must be positive")
    counter = _Counter(count_tokens)
    overlap = max(0, min(overlap_tokens, max_tokens // 2))  # keep room for new text
    drafts: list[ChunkDraft] = []
    for path, blocks in _groups(_parse(markdown), counter, max_tokens):
        packer = _Packer(counter, max_tokens, overlap)
        for text, location, tokens in packer.pack(blocks):
            drafts.append(ChunkDraft(len(drafts), text, _heading_path(path, title), location, tokens))
    return drafts


def _heading_path(path: tuple[str, ...], title: str) -> str:
    parts = list(path) or ([title.strip()] if title.strip() else [])
    joined = PATH_SEPARATOR.join(parts)
    # The path is embedded with every chunk; keep the most specific headings if it is long.
    while len(joined) > MAX_HEADING_PATH_CHARS and len(parts) > 1:
        parts.pop(0)
        joined = "…" + PATH_SEPARATOR + PATH_SEPARATOR.join(parts)
    return joined[:MAX_HEADING_PATH_CHARS]


# --------------------------------------------------------------------------- parsing


class _Parser:
    """Line-by-line state machine turning Markdown into flat sections of blocks."""

    def __init__(self) -> None:
        self.location = ""
        self.stack: list[tuple[int, str]] = []
        self.sections = [_Section((), 0, [])]
        self.paragraph: list[str] = []
        self.table: list[str] = []
        self.fence: list[str] = []
        self.fence_marker = ""
        self.block_location = ""

    def feed(self, line: str) -> None:
        """Consume one line of input."""
        if self.fence_marker:
            self._feed_fence(line)
        elif not line.strip():
            self.flush()
        elif self._is_marker(line) or self._is_heading(line) or self._opens_fence(line):
            pass
        elif line.lstrip().startswith("|"):
            self._feed_table(line)
        else:
            self._feed_text(line)

    def _is_marker(self, line: str) -> bool:
        if "<!--" not in line or not _COMMENT_LINE.fullmatch(line):
            return False
        for pattern, name in ((_PAGE, "page"), (_SLIDE, "slide"), (_SHEET, "sheet")):
            found = pattern.search(line)
            if found:
                self.flush()
                self.location = f"{name} {found.group(1)}"
        return True  # other comment lines are dropped as noise

    def _is_heading(self, line: str) -> bool:
        first = line.lstrip()[:1]
        if first == "#":
            found = _ATX.fullmatch(line)
            if found:
                self.flush()
                self._open_section(len(found.group(1)), found.group(2) or "")
            return bool(found)
        if first in "=-*_":
            return self._is_underline(line)
        return False

    def _is_underline(self, line: str) -> bool:
        setext = _SETEXT.fullmatch(line)
        if setext and len(self.paragraph) == 1 and not _LIST_ITEM.match(self.paragraph[0]):
            heading = self.paragraph.pop()
            self._open_section(1 if setext.group(1)[0] == "=" else 2, heading)
            return True
        if _THEMATIC.fullmatch(line):
            self.flush()  # a thematic break only separates blocks
            return True
        return False

    def _open_section(self, level: int, raw_title: str) -> None:
        title = _clean_heading(raw_title)
        if not title:
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, title))
        self.sections.append(_Section(tuple(t for _, t in self.stack), level, []))

    def _opens_fence(self, line: str) -> bool:
        found = _FENCE.match(line)
        if not found:
            return False
        self.flush()
        self.fence_marker = found.group(1)
        self.fence = [line.rstrip()]
        self.block_location = self.location
        return True

    def _feed_fence(self, line: str) -> None:
        stripped = line.strip()
        marker = self.fence_marker
        closes = stripped.startswith(marker[0] * len(marker)) and not stripped.strip(marker[0])
        self.fence.append(line.rstrip())
        if closes:
            self._close_fence()

    def _close_fence(self) -> None:
        opener, body = self.fence[0], self.fence[1:]
        closed = bool(body) and _FENCE.match(body[-1]) is not None
        if any(line.strip() for line in (body[:-1] if closed else body)):
            self._add("code", body, header=opener)
        self.fence, self.fence_marker = [], ""

    def _feed_table(self, line: str) -> None:
        if self.paragraph:
            self._flush_paragraph()
        if not self.table:
            self.block_location = self.location
        self.table.append(" ".join(line.split()))

    def _feed_text(self, line: str) -> None:
        if self.table:
            self._flush_table()
        if not self.paragraph:
            self.block_location = self.location
        self.paragraph.append(" ".join(line.split()))

    def flush(self) -> None:
        """End the open paragraph, table or (unclosed, at end of input) code block."""
        self._flush_paragraph()
        self._flush_table()
        if self.fence:
            self._close_fence()

    def _flush_paragraph(self) -> None:
        if self.paragraph:
            self._add("prose", self.paragraph)
            self.paragraph = []

    def _flush_table(self) -> None:
        rows, self.table = self.table, []
        if len(rows) >= 2 and _TABLE_SEPARATOR.fullmatch(rows[1]):
            self._add("table", rows[2:], header=f"{rows[0]}\n{rows[1]}")
        elif rows:
            self._add("table", rows)

    def _add(self, kind: str, lines: list[str], header: str = "") -> None:
        if any(line.strip() for line in lines) or (header and kind == "table"):
            self.sections[-1].blocks.append(_Block(kind, lines, self.block_location, header))


def _clean_heading(raw: str) -> str:
    title = " ".join(raw.split())
    emphasised = _EMPHASIS.fullmatch(title)
    return emphasised.group(2).strip() if emphasised else title


def _parse(markdown: str) -> list[_Section]:
    parser = _Parser()
    text = markdown.replace("\r\n", "\n").replace("\r", "\n").replace("\f", "\n")
    for line in _skip_front_matter(text.split("\n")):
        parser.feed(line)
    parser.flush()
    return [section for section in parser.sections if section.blocks]


def _skip_front_matter(lines: list[str]) -> list[str]:
    # YAML front matter would otherwise read as a thematic break plus a setext heading.
    if lines and lines[0].strip() == "---":
        for index in range(1, min(len(lines), 60)):
            if lines[index].strip() in ("---", "..."):
                return [*lines[1:index], "", *lines[index + 1 :]]
    return lines


# --------------------------------------------------------------------------- merging tiny sections


def _groups(sections: list[_Section], counter: _Counter, budget: int) -> Iterator[tuple[tuple[str, ...], list[_Block]]]:
    """Yield (heading path, blocks), merging runs of tiny sibling sections into one."""
    index = 0
    while index < len(sections):
        group = _tiny_group(sections, index, counter, budget)
        index += len(group)
        if len(group) == 1:
            yield group[0].path, group[0].blocks
        else:
            yield group[0].path[:-1], [block for section in group for block in _titled(section)]


def _tiny_group(sections: list[_Section], start: int, counter: _Counter, budget: int) -> list[_Section]:
    first = sections[start]
    tiny = max(1, budget // 4)
    total = _section_tokens(first, counter)
    if first.level == 0 or total > tiny:
        return [first]
    group = [first]
    for candidate in sections[start + 1 :]:
        size = _section_tokens(candidate, counter)
        if not _is_mergeable_sibling(first, candidate) or total + size > budget:
            break
        group.append(candidate)
        total += size
        if size > tiny:
            break  # a tiny section may join a bigger sibling, but the run ends there
    return group


def _is_mergeable_sibling(first: _Section, candidate: _Section) -> bool:
    same_place = first.level == candidate.level and first.path[:-1] == candidate.path[:-1]
    # Never merge across a page/slide/sheet boundary: the chunk could only keep one location.
    locations = {block.location for block in first.blocks + candidate.blocks}
    return same_place and len(locations) == 1


def _section_tokens(section: _Section, counter: _Counter) -> int:
    return counter(section.path[-1] if section.path else "") + sum(counter(b.render()) for b in section.blocks)


def _titled(section: _Section) -> list[_Block]:
    # Inside a merged chunk the heading path is the parent's, so each title moves into the text.
    title = section.path[-1]
    first, rest = section.blocks[0], section.blocks[1:]
    if first.kind == "prose":
        return [_Block("prose", [title, *first.lines], first.location), *rest]
    return [_Block("prose", [title], first.location), *section.blocks]


# --------------------------------------------------------------------------- cutting blocks into pieces


def _block_pieces(block: _Block, counter: _Counter, budget: int, overlap: int) -> list[_Piece]:
    text = block.render()
    tokens = counter(text)
    if tokens <= budget:
        return [_Piece(text, tokens, "\n\n", block.location, block.kind == "prose")]
    if block.kind == "prose":
        return _prose_pieces(block, counter, budget, overlap)
    return _row_pieces(block, counter, budget)


def _prose_pieces(block: _Block, counter: _Counter, budget: int, overlap: int) -> list[_Piece]:
    pieces: list[_Piece] = []
    for sep, unit in _prose_units(block.lines):
        # Word windows of a run-on sentence leave room for the overlap carried into the next one.
        for index, part in enumerate(_fit(unit, counter, budget, window=budget - overlap)):
            part_sep = sep if index == 0 else " "
            pieces.append(_Piece(part, counter(part), part_sep, block.location, True))
    return _first_sep(pieces, "\n\n")


def _prose_units(lines: list[str]) -> list[tuple[str, str]]:
    """(separator, sentence) pairs; list items always start a new unit."""
    units: list[tuple[str, str]] = []
    for item_index, item in enumerate(_list_items(lines)):
        for sentence_index, (sep, sentence) in enumerate(split_sentences(item)):
            units.append(("\n" if sentence_index == 0 and item_index else sep, sentence))
    return units


def _list_items(lines: list[str]) -> list[str]:
    items: list[list[str]] = []
    for line in lines:
        if not items or _LIST_ITEM.match(line):
            items.append([line])
        else:
            items[-1].append(line)
    return ["\n".join(item) for item in items]


def split_sentences(text: str) -> list[tuple[str, str]]:
    """Split text into (whitespace before, sentence) pairs; the first separator is ""."""
    parts: list[tuple[str, str]] = []
    start, sep = 0, ""
    for found in _SENTENCE_END.finditer(text):
        parts.append((sep, text[start : found.start(1)]))
        start, sep = found.end(1), ("\n" if "\n" in found.group(1) else " ")
    parts.append((sep, text[start:]))
    return [(s, part) for s, part in parts if part.strip()]


def _row_pieces(block: _Block, counter: _Counter, budget: int) -> list[_Piece]:
    header = block.header
    header_tokens = counter(header) if header else 0
    # A header that eats most of the budget is not worth repeating.
    repeat = header if header and header_tokens <= budget // 2 else ""
    pieces: list[_Piece] = []
    for bundle in _bundles(block.lines, counter, budget):
        for index, part in enumerate(_fit(bundle, counter, budget)):
            sep = "\n" if index == 0 else " "
            tokens = counter(part)
            pieces.append(_Piece(part, tokens, sep, block.location, False, repeat, header_tokens if repeat else 0))
    if header:
        pieces.insert(0, _Piece(header, header_tokens, "\n\n", block.location, False))
        return _join_header(pieces, budget)
    return _first_sep(pieces, "\n\n")


def _bundles(lines: list[str], counter: _Counter, budget: int) -> list[str]:
    """Group short rows/lines so the tokenizer is called per handful of rows, not per row."""
    bundles: list[list[str]] = [[]]
    size = 0
    for line in lines:
        if bundles[-1] and size + len(line) > budget:
            bundles.append([])
            size = 0
        bundles[-1].append(line)
        size += len(line) + 1
    out: list[str] = []
    for bundle in bundles:
        joined = "\n".join(bundle)
        # A bundle over budget is unbundled again: rows must stay whole.
        out.extend([joined] if len(bundle) == 1 or counter(joined) <= budget else bundle)
    return [text for text in out if text.strip()]


def _join_header(pieces: list[_Piece], budget: int) -> list[_Piece]:
    # Glue the header to the first row so a chunk never ends on a bare header.
    header, first = pieces[0], pieces[1] if len(pieces) > 1 else None
    if first is None or header.tokens + first.tokens > budget:
        return pieces
    glued = _Piece(f"{header.text}\n{first.text}", header.tokens + first.tokens, "\n\n", first.location, False)
    return [glued, *pieces[2:]]


def _first_sep(pieces: list[_Piece], sep: str) -> list[_Piece]:
    if pieces:
        head = pieces[0]
        pieces[0] = _Piece(head.text, head.tokens, sep, head.location, head.prose, head.header, head.header_tokens)
    return pieces


def _fit(text: str, counter: _Counter, budget: int, window: int | None = None) -> list[str]:
    """The text itself if it fits budget, else windows of at most `window` tokens.

    Windows are cut on words, or on characters for a word too long on its own.
    """
    if counter(text) <= budget:
        return [text]
    budget = window or budget
    words = text.split()
    parts: list[str] = []
    start = 0
    while start < len(words):
        size = _longest_fit(len(words) - start, partial(_join_words, words, start), counter, budget)
        if size == 0:
            parts.extend(_char_windows(words[start], counter, budget))
            size = 1
        else:
            parts.append(_join_words(words, start, size))
        start += size
    return parts


def _join_words(words: list[str], start: int, size: int) -> str:
    return " ".join(words[start : start + size])


def _slice(text: str, start: int, size: int) -> str:
    return text[start : start + size]


def _longest_fit(
    available: int, text_of: Callable[[int], str], counter: _Counter, budget: int, cap: int | None = None
) -> int:
    """Largest n <= available with counter(text_of(n)) <= budget, by binary search.

    Every word is at least one token, so no window needs more than `budget` words:
    that cap keeps a 100,000-word run-on "sentence" linear instead of quadratic.
    """
    low, high = 0, min(available, budget if cap is None else cap)
    if counter(text_of(high)) <= budget:
        return high
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if counter(text_of(middle)) <= budget else (low, middle)
    return low


def _char_windows(word: str, counter: _Counter, budget: int) -> list[str]:
    windows: list[str] = []
    start = 0
    while start < len(word):
        # A token is rarely longer than 16 characters, which bounds the search.
        available = min(len(word) - start, budget * 16)
        size = _longest_fit(available, partial(_slice, word, start), counter, budget, cap=available)
        size = max(1, size)  # one character is always emitted, so the loop ends
        windows.append(word[start : start + size])
        start += size
    return windows


# --------------------------------------------------------------------------- packing


class _Packer:
    """Greedy packing of one section's pieces into chunks, with overlap between them."""

    def __init__(self, counter: _Counter, budget: int, overlap: int) -> None:
        self.counter, self.budget, self.overlap = counter, budget, overlap
        self.out: list[tuple[str, str, int]] = []
        self.pieces: list[_Piece] = []
        self.used = 0
        self.location: str | None = None

    def pack(self, blocks: list[_Block]) -> list[tuple[str, str, int]]:
        """(text, location, token_count) for each chunk of the section."""
        for block in blocks:
            for piece in _block_pieces(block, self.counter, self.budget, self.overlap):
                self._place(piece)
        self._flush()
        return self.out

    def _place(self, piece: _Piece) -> None:
        if self.location is not None and self.used + piece.tokens > self.budget:
            lead = self._lead_for(piece)
            self._flush()
            self.pieces, self.used = lead, sum(p.tokens for p in lead)
        if self.location is None:
            self.location = piece.location  # the first new text decides, not the carried overlap
        self.pieces.append(piece)
        self.used += piece.tokens

    def _lead_for(self, piece: _Piece) -> list[_Piece]:
        room = self.budget - piece.tokens
        if piece.header and piece.header_tokens <= room:
            return [_Piece(piece.header, piece.header_tokens, "", piece.location, False)]
        if piece.prose and self.overlap and room > 0:
            return self._overlap(min(self.overlap, room))
        return []

    def _overlap(self, limit: int) -> list[_Piece]:
        carried: list[tuple[str, str]] = []
        used = 0
        for piece in reversed(self.pieces):
            if not piece.prose:
                break
            sentences = split_sentences(piece.text)
            if sentences:
                sentences[0] = (piece.sep, sentences[0][1])
            for sep, sentence in reversed(sentences):
                tokens = self.counter(sentence)
                if used + tokens > limit:
                    return self._overlap_piece(carried, used, limit)
                carried.insert(0, (sep, sentence))
                used += tokens
        return self._overlap_piece(carried, used, limit)

    def _overlap_piece(self, carried: list[tuple[str, str]], used: int, limit: int) -> list[_Piece]:
        if not carried:
            return self._tail_words(limit)
        text = carried[0][1] + "".join(sep + sentence for sep, sentence in carried[1:])
        return [_Piece(text, used, "", "", True)]

    def _tail_words(self, limit: int) -> list[_Piece]:
        # The last sentence alone is longer than the overlap: carry its last words instead.
        last = self.pieces[-1] if self.pieces and self.pieces[-1].prose else None
        if last is None:
            return []
        words = last.text.split()
        size = _longest_fit(len(words), partial(_tail, words), self.counter, limit)
        if size == 0 or size >= len(words):
            return []
        text = " ".join(words[-size:])
        return [_Piece(text, self.counter(text), "", "", True)]

    def _flush(self) -> None:
        fresh = self.location is not None
        if fresh and self.pieces:
            text = self.pieces[0].text + "".join(p.sep + p.text for p in self.pieces[1:])
            self._emit(text.strip(), self.location or "")
        self.pieces, self.used, self.location = [], 0, None

    def _emit(self, text: str, location: str) -> None:
        if not text:
            return
        tokens = self.counter(text)
        if tokens <= self.budget:
            self.out.append((text, location, tokens))
            return
        # Summed piece counts undershot (a tokenizer that is not additive): re-cut by words.
        for part in _fit(text, self.counter, self.budget):
            self.out.append((part, location, self.counter(part)))


def _tail(words: list[str], size: int) -> str:
    return " ".join(words[len(words) - size :])
